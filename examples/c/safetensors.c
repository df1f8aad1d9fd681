/* safetensors.c: see safetensors.h. Every offset and size read from the file is checked
 * before it is used. */
#include "safetensors.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char* p;
    const char* end;
    char* err;
    size_t err_len;
} json;

static int fail(json* j, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err, j->err_len, fmt, ap);
    va_end(ap);
    return -1;
}

static void skip_ws(json* j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++;
}

/* Consumes `c` (after blanks) if it is next; returns whether it was. */
static int accept(json* j, char c) {
    skip_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return 1;
    }
    return 0;
}

static int expect(json* j, char c) {
    return accept(j, c) ? 0 : fail(j, "malformed header: expected '%c'", c);
}

/* A string without escapes (tensor names and dtypes have none), into out[cap]. */
static int parse_string(json* j, char* out, size_t cap) {
    if (expect(j, '"')) return -1;
    size_t n = 0;
    while (j->p < j->end && *j->p != '"') {
        if (*j->p == '\\') return fail(j, "escaped characters in header strings are not supported");
        if (n + 1 >= cap) return fail(j, "header string longer than %zu bytes", cap - 1);
        out[n++] = *j->p++;
    }
    if (j->p == j->end) return fail(j, "malformed header: unterminated string");
    j->p++;
    out[n] = 0;
    return 0;
}

static int parse_uint(json* j, uint64_t* out) {
    skip_ws(j);
    uint64_t v = 0;
    const char* start = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        if (v > (UINT64_MAX - 9) / 10) return fail(j, "number too large in header");
        v = v * 10 + (uint64_t)(*j->p++ - '0');
    }
    if (j->p == start) return fail(j, "malformed header: expected a whole number");
    *out = v;
    return 0;
}

/* [n, n, ...] into out[cap]; *len gets the count. */
static int parse_uints(json* j, uint64_t* out, int cap, int* len) {
    *len = 0;
    if (expect(j, '[')) return -1;
    if (accept(j, ']')) return 0;
    do {
        if (*len == cap) return fail(j, "more than %d numbers in a header array", cap);
        if (parse_uint(j, &out[(*len)++])) return -1;
    } while (accept(j, ','));
    return expect(j, ']');
}

/* The "__metadata__" object: string keys and string values. */
static int skip_metadata(json* j) {
    char s[256];
    if (expect(j, '{')) return -1;
    if (accept(j, '}')) return 0;
    do {
        if (parse_string(j, s, sizeof s) || expect(j, ':') || parse_string(j, s, sizeof s)) return -1;
    } while (accept(j, ','));
    return expect(j, '}');
}

/* One tensor's entry; converts its data from data[0..data_len) into t. */
static int parse_tensor(json* j, st_tensor* t, const unsigned char* data, size_t data_len) {
    char key[32], dtype[16] = "";
    uint64_t shape[ST_MAX_RANK], offsets[2];
    int rank = -1, n_offsets = 0;
    if (expect(j, '{')) return -1;
    do {
        if (parse_string(j, key, sizeof key) || expect(j, ':')) return -1;
        if (strcmp(key, "dtype") == 0) {
            if (parse_string(j, dtype, sizeof dtype)) return -1;
        } else if (strcmp(key, "shape") == 0) {
            if (parse_uints(j, shape, ST_MAX_RANK, &rank)) return -1;
        } else if (strcmp(key, "data_offsets") == 0) {
            if (parse_uints(j, offsets, 2, &n_offsets)) return -1;
        } else {
            return fail(j, "tensor `%s`: unknown key `%s`", t->name, key);
        }
    } while (accept(j, ','));
    if (expect(j, '}')) return -1;
    size_t size = strcmp(dtype, "F32") == 0 ? 4 : strcmp(dtype, "F64") == 0 ? 8 : 0;
    if (size == 0) return fail(j, "tensor `%s`: dtype `%s` (this reader takes F32 and F64)", t->name, dtype);
    if (rank < 0 || n_offsets != 2) return fail(j, "tensor `%s`: no shape or data_offsets", t->name);
    uint64_t count = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] != 0 && count > data_len / shape[i]) return fail(j, "tensor `%s`: shape larger than the file", t->name);
        count *= shape[i];
        t->shape[i] = (int64_t)shape[i];
    }
    t->rank = rank;
    t->count = (size_t)count;
    if (offsets[0] > offsets[1] || offsets[1] > data_len || offsets[1] - offsets[0] != count * size)
        return fail(j, "tensor `%s`: data_offsets [%llu, %llu] do not hold %llu %s values", t->name,
                    (unsigned long long)offsets[0], (unsigned long long)offsets[1], (unsigned long long)count, dtype);
    t->data = malloc(count ? count * sizeof(float) : 1);
    if (!t->data) return fail(j, "out of memory");
    const unsigned char* src = data + offsets[0];
    for (size_t i = 0; i < count; i++) {
        if (size == 4) {
            memcpy(&t->data[i], src + 4 * i, 4);
        } else {
            double d;
            memcpy(&d, src + 8 * i, 8);
            t->data[i] = (float)d;
        }
    }
    return 0;
}

static int parse_header(json* j, st_file* file, const unsigned char* data, size_t data_len) {
    if (expect(j, '{')) return -1;
    if (accept(j, '}')) return 0;
    do {
        char name[ST_MAX_NAME];
        if (parse_string(j, name, sizeof name) || expect(j, ':')) return -1;
        if (strcmp(name, "__metadata__") == 0) {
            if (skip_metadata(j)) return -1;
            continue;
        }
        st_tensor* grown = realloc(file->tensors, (file->count + 1) * sizeof *grown);
        if (!grown) return fail(j, "out of memory");
        file->tensors = grown;
        st_tensor* t = &file->tensors[file->count++];
        memset(t, 0, sizeof *t);
        memcpy(t->name, name, sizeof name);
        if (parse_tensor(j, t, data, data_len)) return -1;
    } while (accept(j, ','));
    if (expect(j, '}')) return -1;
    skip_ws(j);
    return j->p == j->end ? 0 : fail(j, "malformed header: text after the closing brace");
}

static unsigned char* read_all(const char* path, size_t* len) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char* buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        unsigned char* grown = realloc(buf, cap *= 2);
        if (!grown) free(buf);
        buf = grown;
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

int st_read(const char* path, st_file* file, char* err, size_t err_len) {
    file->count = 0;
    file->tensors = NULL;
    const uint16_t one = 1;
    if (*(const unsigned char*)&one != 1) {
        snprintf(err, err_len, "%s: this reader needs a little-endian machine", path);
        return -1;
    }
    size_t len;
    unsigned char* bytes = read_all(path, &len);
    if (!bytes) {
        snprintf(err, err_len, "%s: cannot read the file", path);
        return -1;
    }
    uint64_t n = 0;
    for (int i = 7; len >= 8 && i >= 0; i--) n = n << 8 | bytes[i];
    int rc = -1;
    if (len < 8 || n > len - 8) {
        snprintf(err, err_len, "%s: not a safetensors file (header length out of range)", path);
    } else {
        char msg[256];
        json j = {(const char*)bytes + 8, (const char*)bytes + 8 + n, msg, sizeof msg};
        rc = parse_header(&j, file, bytes + 8 + n, len - 8 - n);
        if (rc) snprintf(err, err_len, "%s: %s", path, msg);
    }
    free(bytes);
    if (rc) st_free(file);
    return rc;
}

const st_tensor* st_find(const st_file* file, const char* name) {
    for (size_t i = 0; i < file->count; i++)
        if (strcmp(file->tensors[i].name, name) == 0) return &file->tensors[i];
    return NULL;
}

double st_max_rel_error(const st_tensor* want, const float* got) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < want->count; i++) {
        double d = fabs((double)got[i] - (double)want->data[i]);
        if (isnan(d)) return INFINITY;
        if (d > diff) diff = d;
        if (fabs((double)want->data[i]) > scale) scale = fabs((double)want->data[i]);
    }
    return scale > 0 ? diff / scale : diff;
}

void st_free(st_file* file) {
    for (size_t i = 0; i < file->count; i++) free(file->tensors[i].data);
    free(file->tensors);
    file->count = 0;
    file->tensors = NULL;
}
