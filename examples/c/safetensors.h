/* safetensors.h: a small reader of safetensors files with F32 or F64 tensors, enough for
 * the ssmc examples. The format: an 8-byte little-endian header length, a JSON header
 * {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}, then
 * the data. Every tensor is converted to f32 on reading. */
#ifndef SSMC_EXAMPLE_SAFETENSORS_H
#define SSMC_EXAMPLE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_RANK 8
#define ST_MAX_NAME 64

typedef struct {
    char name[ST_MAX_NAME];
    int32_t rank;
    int64_t shape[ST_MAX_RANK];
    size_t count; /* number of elements: the product of shape */
    float* data;  /* count values */
} st_tensor;

typedef struct {
    size_t count;
    st_tensor* tensors;
} st_file;

/* Reads every tensor of `path`. Returns 0, or -1 with the reason in `err`. */
int st_read(const char* path, st_file* file, char* err, size_t err_len);

/* The tensor called `name`, or NULL. */
const st_tensor* st_find(const st_file* file, const char* name);

/* How far `got` (want->count values) is from `want`: the largest absolute difference over
 * the largest |want|; infinite when `got` holds a NaN. */
double st_max_rel_error(const st_tensor* want, const float* got);

/* Frees what st_read allocated. */
void st_free(st_file* file);

#endif
