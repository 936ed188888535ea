/* gguf_write.h — a small GGUF v2/v3 writer for tests: metadata of any
 * type, tensor infos and data, the whole file image, and writing / opening
 * it (test_gguf.c, test_tok.c).  Header-only: every test binary is one
 * file. */
#ifndef GGUF_WRITE_H
#define GGUF_WRITE_H
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "eng.h"
#include "gguf.h"

/* ggml type numbers used here */
enum { G_F32 = 0, G_F16 = 1, G_Q4_0 = 2, G_Q4_1 = 3, G_Q5_0 = 6, G_Q5_1 = 7, G_Q8_0 = 8,
       G_Q2_K = 10, G_Q4_K = 12, G_Q5_K = 13, G_Q6_K = 14, G_BF16 = 30 };

#define MAX_FIELDS 256
typedef struct gw {
    eng_buf kv, ti, data;
    uint64_t n_kv, n_t;
    uint32_t version, align;
    /* positions of the u64 counts and lengths, in kv / ti, for the fuzz pass */
    size_t kv_fields[MAX_FIELDS], ti_fields[MAX_FIELDS];
    int n_kv_fields, n_ti_fields;
} gw;

static inline void gw_init(gw *w) {
    memset(w, 0, sizeof *w);
    w->version = 3;
    w->align = 32;
}

static inline void gw_free(gw *w) {
    eng_buf_free(&w->kv);
    eng_buf_free(&w->ti);
    eng_buf_free(&w->data);
}

static inline void put_le(eng_buf *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) eng_buf_addc(b, (char)(v >> (8 * i)));
}

static inline void put_len(gw *w, eng_buf *b, uint64_t v) {
    if (b == &w->kv && w->n_kv_fields < MAX_FIELDS) w->kv_fields[w->n_kv_fields++] = b->n;
    if (b == &w->ti && w->n_ti_fields < MAX_FIELDS) w->ti_fields[w->n_ti_fields++] = b->n;
    put_le(b, v, 8);
}

static inline void put_str(gw *w, eng_buf *b, const char *s) {
    put_len(w, b, strlen(s));
    eng_buf_add(b, s, strlen(s));
}

static inline void kv_head(gw *w, const char *key, uint32_t ty) {
    put_str(w, &w->kv, key);
    put_le(&w->kv, ty, 4);
    w->n_kv++;
}

/* A scalar of n bytes (bit pattern v). */
static inline void gw_scalar(gw *w, const char *key, uint32_t ty, uint64_t v, int n) {
    kv_head(w, key, ty);
    put_le(&w->kv, v, n);
}

static inline void gw_u32(gw *w, const char *key, uint32_t v) { gw_scalar(w, key, ENG_GGUF_U32, v, 4); }

static inline void gw_f32(gw *w, const char *key, float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    gw_scalar(w, key, ENG_GGUF_F32, b, 4);
}

static inline void gw_f64(gw *w, const char *key, double f) {
    uint64_t b;
    memcpy(&b, &f, 8);
    gw_scalar(w, key, ENG_GGUF_F64, b, 8);
}

static inline void gw_str(gw *w, const char *key, const char *s) {
    kv_head(w, key, ENG_GGUF_STR);
    put_str(w, &w->kv, s);
}

static inline void gw_arr_str(gw *w, const char *key, const char *const *s, int n) {
    kv_head(w, key, ENG_GGUF_ARR);
    put_le(&w->kv, ENG_GGUF_STR, 4);
    put_len(w, &w->kv, (uint64_t)n);
    for (int i = 0; i < n; i++) put_str(w, &w->kv, s[i]);
}

static inline void gw_arr_i32(gw *w, const char *key, const int32_t *v, int n) {
    kv_head(w, key, ENG_GGUF_ARR);
    put_le(&w->kv, ENG_GGUF_I32, 4);
    put_len(w, &w->kv, (uint64_t)n);
    for (int i = 0; i < n; i++) put_le(&w->kv, (uint32_t)v[i], 4);
}

static inline void gw_arr_f32(gw *w, const char *key, const float *v, int n) {
    kv_head(w, key, ENG_GGUF_ARR);
    put_le(&w->kv, ENG_GGUF_F32, 4);
    put_len(w, &w->kv, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &v[i], 4);
        put_le(&w->kv, b, 4);
    }
}

/* [[1, 2], [3]] as an array of u16 arrays. */
static inline void gw_arr_nested(gw *w, const char *key) {
    kv_head(w, key, ENG_GGUF_ARR);
    put_le(&w->kv, ENG_GGUF_ARR, 4);
    put_len(w, &w->kv, 2);
    put_le(&w->kv, ENG_GGUF_U16, 4);
    put_len(w, &w->kv, 2);
    put_le(&w->kv, 1, 2);
    put_le(&w->kv, 2, 2);
    put_le(&w->kv, ENG_GGUF_U16, 4);
    put_len(w, &w->kv, 1);
    put_le(&w->kv, 3, 2);
}

/* A tensor info with an explicit offset (ne innermost first, as in GGUF). */
static inline void gw_tinfo(gw *w, const char *name, uint32_t type, int nd, const uint64_t *ne,
                     uint64_t offset) {
    put_str(w, &w->ti, name);
    put_le(&w->ti, (uint32_t)nd, 4);
    for (int i = 0; i < nd; i++) put_len(w, &w->ti, ne[i]);
    put_le(&w->ti, type, 4);
    put_len(w, &w->ti, offset);
    w->n_t++;
}

/* A tensor whose bytes follow the previous one's at the next aligned offset. */
static inline void gw_tensor(gw *w, const char *name, uint32_t type, int nd, const uint64_t *ne,
                      const void *bytes, size_t n) {
    while (w->data.n % w->align) eng_buf_addc(&w->data, 0);
    gw_tinfo(w, name, type, nd, ne, w->data.n);
    eng_buf_add(&w->data, bytes, n);
}

/* The whole file, malloc'd. */
static inline uint8_t *gw_image(const gw *w, size_t *len) {
    eng_buf b = {0};
    eng_buf_add(&b, "GGUF", 4);
    put_le(&b, w->version, 4);
    put_le(&b, w->n_t, 8);
    put_le(&b, w->n_kv, 8);
    eng_buf_add(&b, w->kv.p ? w->kv.p : "", w->kv.n);
    eng_buf_add(&b, w->ti.p ? w->ti.p : "", w->ti.n);
    while (b.n % w->align) eng_buf_addc(&b, 0);
    eng_buf_add(&b, w->data.p ? w->data.p : "", w->data.n);
    *len = b.n;
    return (uint8_t *)eng_buf_take(&b);
}

static char tmp_path[256];

static inline const char *path_for(const char *what) {
    snprintf(tmp_path, sizeof tmp_path, "/tmp/brisk_test_gguf_%d_%s.gguf", (int)getpid(), what);
    return tmp_path;
}

static inline int write_bytes(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t k = fwrite(p, 1, n, f);
    return fclose(f) || k != n ? -1 : 0;
}

/* Writes the image and opens it; the file is removed again. */
static inline int open_image(const uint8_t *p, size_t n, eng_gguf **g, eng_err *err) {
    const char *path = path_for("img");
    if (write_bytes(path, p, n)) return -100;
    int rc = eng_gguf_open(path, g, err);
    unlink(path);
    return rc;
}

static inline int open_gw(const gw *w, eng_gguf **g, eng_err *err) {
    size_t n;
    uint8_t *p = gw_image(w, &n);
    int rc = open_image(p, n, g, err);
    free(p);
    return rc;
}

#endif
