/* Runs a layer through ssmc-runtime's C ABI, which checks every tensor against the
 * artifact's manifest.json before the kernel runs, and checks its outputs against a
 * reference. Then makes a deliberate mistake (an output one step too short) to show that
 * it is refused with a code and a message, and that nothing is written.
 *
 *   checked ARTIFACT_DIR IN.safetensors REF.safetensors
 *
 * Nothing here is specific to one layer: tensor names and shapes come from the files. */
#include "safetensors.h"
#include "ssmc_runtime.h"

#include <stdio.h>
#include <stdlib.h>

#define TOLERANCE 1e-5
#define SENTINEL 12345.0f

static ssmc_tensor view(const char* name, int32_t rank, const int64_t* shape, float* data, size_t count) {
    ssmc_tensor t = {name, SSMC_F32, rank, shape, data, count * sizeof(float)};
    return t;
}

int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s ARTIFACT_DIR IN.safetensors REF.safetensors\n", argv[0]);
        return 2;
    }
    char err[1024];
    int ok = 0;
    st_file in = {0}, ref = {0};
    ssmc_layer* layer = NULL;
    ssmc_tensor* tensors = NULL;
    float** outs = NULL;
    float* wrong = NULL;
    if (st_read(argv[2], &in, err, sizeof err) || st_read(argv[3], &ref, err, sizeof err)) {
        fprintf(stderr, "error: %s\n", err);
        goto done;
    }
    if (ref.count == 0) {
        fprintf(stderr, "error: %s holds no tensor\n", argv[3]);
        goto done;
    }
    layer = ssmc_layer_open(argv[1], err, sizeof err);
    if (!layer) {
        fprintf(stderr, "error: %s\n", err);
        goto done;
    }
    /* Every input, then one output buffer per reference tensor. */
    size_t n = in.count + ref.count;
    tensors = malloc(n * sizeof *tensors);
    outs = calloc(ref.count, sizeof *outs);
    if (!tensors || !outs) goto done;
    for (size_t i = 0; i < in.count; i++) {
        st_tensor* t = &in.tensors[i];
        tensors[i] = view(t->name, t->rank, t->shape, t->data, t->count);
    }
    for (size_t i = 0; i < ref.count; i++) {
        st_tensor* t = &ref.tensors[i];
        outs[i] = malloc((t->count ? t->count : 1) * sizeof(float));
        if (!outs[i]) goto done;
        tensors[in.count + i] = view(t->name, t->rank, t->shape, outs[i], t->count);
    }

    int code = ssmc_layer_run(layer, tensors, n, 0, err, sizeof err);
    if (code != SSMC_OK) {
        fprintf(stderr, "error (code %d): %s\n", code, err);
        goto done;
    }
    ok = 1;
    for (size_t i = 0; i < ref.count; i++) {
        double e = st_max_rel_error(&ref.tensors[i], outs[i]);
        ok &= e < TOLERANCE;
        printf("checked (ssmc-runtime %s): %s max relative error %.2e (tolerance %.0e): %s\n", ssmc_version(),
               ref.tensors[i].name, e, TOLERANCE, e < TOLERANCE ? "ok" : "FAILED");
    }

    /* The deliberate mistake: the first output, its last axis one shorter. */
    st_tensor* first = &ref.tensors[0];
    int64_t shorter[ST_MAX_RANK];
    size_t count = 1;
    for (int a = 0; a < first->rank; a++) {
        shorter[a] = first->shape[a] - (a == first->rank - 1);
        count *= (size_t)shorter[a];
    }
    wrong = malloc((count ? count : 1) * sizeof *wrong);
    if (!wrong) goto done;
    for (size_t i = 0; i < count; i++) wrong[i] = SENTINEL;
    tensors[in.count] = view(first->name, first->rank, shorter, wrong, count);
    code = ssmc_layer_run(layer, tensors, n, 0, err, sizeof err);
    int untouched = 1;
    for (size_t i = 0; i < count; i++) untouched &= wrong[i] == SENTINEL;
    printf("wrong shape: code %d, output %s: %s\n", code, untouched ? "untouched" : "WRITTEN", err);
    ok &= code == SSMC_ERR_TENSORS && untouched;
done:
    ssmc_layer_close(layer);
    for (size_t i = 0; outs && i < ref.count; i++) free(outs[i]);
    free(outs);
    free(wrong);
    free(tensors);
    st_free(&in);
    st_free(&ref);
    return ok ? 0 : 1;
}
