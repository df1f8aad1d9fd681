/* Runs the Mamba-1 layer through its generated header and static library, with no
 * runtime in between, and checks the output against a reference.
 *
 *   main IN.safetensors REF.safetensors
 *
 * IN holds the inputs (F32 or F64, by name), REF the expected `out` (see README.md for how
 * `ssmc run` writes both). The entry point checks nothing, so this program checks every
 * shape itself before calling it; ssmc-runtime (checked.c) does that from manifest.json. */
#include "mamba1.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>

#define TOLERANCE 1e-5

/* Tensor names by their index in bufs, from the macros of mamba1.h. */
static const char* const NAMES[MAMBA1_NUM_TENSORS] = {
    [MAMBA1_TENSOR_U] = "u", [MAMBA1_TENSOR_DELTA] = "delta", [MAMBA1_TENSOR_A] = "A",
    [MAMBA1_TENSOR_B] = "B", [MAMBA1_TENSOR_C] = "C",         [MAMBA1_TENSOR_D] = "D",
    [MAMBA1_TENSOR_Z] = "z", [MAMBA1_TENSOR_DELTA_BIAS] = "delta_bias",
    [MAMBA1_TENSOR_OUT] = "out",
};

typedef struct {
    int32_t rank;
    int64_t shape[4];
} shape;

static int same_shape(const st_tensor* t, const shape* s) {
    if (t->rank != s->rank) return 0;
    for (int i = 0; i < s->rank; i++)
        if (t->shape[i] != s->shape[i]) return 0;
    return 1;
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s IN.safetensors REF.safetensors\n", argv[0]);
        return 2;
    }
    char err[512];
    int rc = 1;
    float* out = NULL;
    st_file in = {0}, ref = {0};
    if (st_read(argv[1], &in, err, sizeof err) || st_read(argv[2], &ref, err, sizeof err)) {
        fprintf(stderr, "error: %s\n", err);
        goto done;
    }
    /* The dims, read off u [B, D, L] and B [B, G, N, L]; N = 16 is compiled in. */
    const st_tensor* u = st_find(&in, "u");
    const st_tensor* b = st_find(&in, "B");
    if (!u || u->rank != 3 || !b || b->rank != 4) {
        fprintf(stderr, "error: %s needs u [B, D, L] and B [B, G, 16, L]\n", argv[1]);
        goto done;
    }
    int64_t dims[MAMBA1_NUM_DIMS];
    dims[MAMBA1_DIM_B] = u->shape[0];
    dims[MAMBA1_DIM_D] = u->shape[1];
    dims[MAMBA1_DIM_L] = u->shape[2];
    dims[MAMBA1_DIM_G] = b->shape[1];
    int64_t B = dims[MAMBA1_DIM_B], D = dims[MAMBA1_DIM_D], L = dims[MAMBA1_DIM_L], G = dims[MAMBA1_DIM_G];
    /* The shapes the header documents, at these dims. */
    const shape want[MAMBA1_NUM_TENSORS] = {
        [MAMBA1_TENSOR_U] = {3, {B, D, L}},     [MAMBA1_TENSOR_DELTA] = {3, {B, D, L}},
        [MAMBA1_TENSOR_A] = {2, {D, 16}},       [MAMBA1_TENSOR_B] = {4, {B, G, 16, L}},
        [MAMBA1_TENSOR_C] = {4, {B, G, 16, L}}, [MAMBA1_TENSOR_D] = {1, {D}},
        [MAMBA1_TENSOR_Z] = {3, {B, D, L}},     [MAMBA1_TENSOR_DELTA_BIAS] = {1, {D}},
        [MAMBA1_TENSOR_OUT] = {3, {B, D, L}},
    };
    const void* bufs[MAMBA1_NUM_TENSORS];
    for (int i = 0; i < MAMBA1_NUM_TENSORS; i++) {
        const st_tensor* t = st_find(i == MAMBA1_TENSOR_OUT ? &ref : &in, NAMES[i]);
        if (!t || !same_shape(t, &want[i])) {
            fprintf(stderr, "error: tensor `%s` is missing or does not have the shape mamba1.h gives\n", NAMES[i]);
            goto done;
        }
        bufs[i] = t->data;
    }
    const st_tensor* expected = st_find(&ref, "out");
    out = malloc((expected->count ? expected->count : 1) * sizeof *out);
    if (!out) goto done;
    bufs[MAMBA1_TENSOR_OUT] = out;

    ssmc_mamba1(bufs, dims, 0, ssmc_mamba1_work_items(dims));

    double e = st_max_rel_error(expected, out);
    rc = e < TOLERANCE ? 0 : 1;
    printf("mamba1 direct: out [%lld, %lld, %lld] max relative error %.2e (tolerance %.0e): %s\n",
           (long long)B, (long long)D, (long long)L, e, TOLERANCE, rc == 0 ? "ok" : "FAILED");
done:
    free(out);
    st_free(&in);
    st_free(&ref);
    return rc;
}
