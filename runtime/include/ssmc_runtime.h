/* ssmc_runtime.h: the C ABI of ssmc-runtime.
 *
 * Loads a layer built by `ssmc build` (its artifact directory: manifest.json and the
 * shared library) and runs it on tensor views. Every call checks the tensors against the
 * manifest first: a wrong name, dtype, rank or shape, a short buffer, or a null or
 * misaligned pointer returns an error code and a message naming the tensor; the kernel
 * does not run and no output is written.
 *
 * Link target/<profile>/libssmc_runtime.a (built by `cargo build -p ssmc-runtime`) with
 *   cc ... libssmc_runtime.a -lpthread -ldl -lm
 * or libssmc_runtime.so. */
#ifndef SSMC_RUNTIME_H
#define SSMC_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types (ssmc_tensor.dtype). */
#define SSMC_F32 0
#define SSMC_F64 1
#define SSMC_BF16 2
#define SSMC_F16 3

/* Return codes of ssmc_layer_run and ssmc_gpu_layer_run. */
#define SSMC_OK 0
/* A null argument, a tensor name that is not UTF-8, a negative size, a thread count that
 * is negative or above SSMC_MAX_THREADS, a rank outside 0..16 or an unknown dtype code. */
#define SSMC_ERR_ARGS 1
/* The tensors do not fit the manifest (missing, extra or repeated tensor, dtype, rank,
 * shape, byte length, null or misaligned data, groups that do not divide heads), or an
 * output overlaps another tensor in memory: no layer runs in place, so every output's
 * bytes must be disjoint from those of every input and every other output. */
#define SSMC_ERR_TENSORS 2
/* The artifact could not be read or loaded. */
#define SSMC_ERR_IO 3
/* The artifact's manifest is malformed or does not fit its library. */
#define SSMC_ERR_MANIFEST 4
/* A bug in ssmc-runtime, caught before it reached the caller. */
#define SSMC_ERR_INTERNAL 5
/* ssmc_gpu_layer_run: no CUDA driver or GPU, the driver refused the PTX or the launch, or
 * ssmc-runtime was built without its `cuda` feature. Nothing was enqueued. */
#define SSMC_ERR_GPU 6

/* Most threads ssmc_layer_run takes; more is SSMC_ERR_ARGS. Fewer are started when the
 * layer has fewer sequences. */
#define SSMC_MAX_THREADS 1024

/* A loaded layer. Runs on one layer may proceed concurrently from several threads. */
typedef struct ssmc_layer ssmc_layer;

/* A view of one tensor: row-major and contiguous. Tensors are matched to the manifest
 * by name, in any order; outputs are written through `data`. */
typedef struct {
    const char* name;     /* its name in the layer, NUL-terminated UTF-8 */
    int32_t dtype;        /* SSMC_F32, SSMC_F64, SSMC_BF16 or SSMC_F16 */
    int32_t rank;         /* number of axes, 0 to 16 */
    const int64_t* shape; /* `rank` sizes, outermost first */
    void* data;           /* first element, aligned to the element size */
    size_t bytes;         /* length of `data`: the product of `shape` times the element size */
} ssmc_tensor;

/* Loads the artifact in directory `dir`. Returns NULL on failure, with the reason in
 * `err` (NUL-terminated, truncated to `err_len` bytes; `err` may be NULL). */
ssmc_layer* ssmc_layer_open(const char* dir, char* err, size_t err_len);

/* Checks `count` tensors against the manifest, then runs every sequence of the layer on
 * `threads` threads (0: all cores; at most SSMC_MAX_THREADS). Returns SSMC_OK, or an SSMC_ERR_* code with the
 * reason in `err` (one line per problem, NUL-terminated, truncated to `err_len` bytes;
 * `err` may be NULL; on success it is set to ""). On an error nothing has run and no
 * output was written. */
int ssmc_layer_run(const ssmc_layer* layer, const ssmc_tensor* tensors, size_t count,
                   int threads, char* err, size_t err_len);

/* Unloads a layer from ssmc_layer_open. NULL is ignored. */
void ssmc_layer_close(ssmc_layer* layer);

/* A loaded PTX artifact (`ssmc build --target cuda`). Runs may be enqueued from several
 * threads. */
typedef struct ssmc_gpu_layer ssmc_gpu_layer;

/* Loads the PTX artifact in directory `dir` (no GPU is needed until the first run, which
 * loads the module on GPU 0). Returns NULL on failure, with the reason in `err`. */
ssmc_gpu_layer* ssmc_gpu_layer_open(const char* dir, char* err, size_t err_len);

/* Runs the layer on tensors already in GPU memory: each `data` is a device address
 * (CUdeviceptr) of GPU 0's primary context (the one PyTorch and the runtime API use) and
 * `bytes` its length. Checks the tensors against the manifest, then that each lies inside
 * one allocation of GPU memory (a host pointer is SSMC_ERR_TENSORS, naming the tensor),
 * then enqueues the kernel on `stream` (a CUstream; NULL is the legacy default stream) and
 * returns without waiting: no copies, no synchronization; the outputs are ready when the
 * stream reaches this point. Codes and `err` as ssmc_layer_run, plus SSMC_ERR_GPU; on an
 * error nothing was enqueued. */
int ssmc_gpu_layer_run(const ssmc_gpu_layer* layer, const ssmc_tensor* tensors, size_t count,
                       void* stream, char* err, size_t err_len);

/* Unloads a layer from ssmc_gpu_layer_open (its enqueued work must have finished). NULL is
 * ignored. */
void ssmc_gpu_layer_close(ssmc_gpu_layer* layer);

/* The version of ssmc-runtime, e.g. "0.1.0" (a static string). */
const char* ssmc_version(void);

/* Host routine of the conv form: y[t] = sum over s <= t of k[t - s] x[s] for t < len, by
 * FFT. ssmc_layer_run passes it to the kernels that need it (their manifest's "host" list
 * names "causal_conv_f32"); a program calling such a kernel directly passes its address in
 * bufs after the tensors, as the generated header says. */
void ssmc_causal_conv_f32(const float* k, const float* x, float* y, int64_t len);

#ifdef __cplusplus
}
#endif

#endif /* SSMC_RUNTIME_H */
