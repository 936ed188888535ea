/* gguf.c — GGUF reader.  Layout (little-endian, version 2 or 3):
 *   "GGUF", u32 version, u64 n_tensors, u64 n_kv,
 *   n_kv x { string key, u32 type, value },
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset },
 *   padding to general.alignment (default 32), tensor data.
 * A string is a u64 length and that many bytes; an array value is a u32
 * element type, a u64 count and the elements (arrays may nest).  Version 1
 * used 32-bit counts and lengths and is refused.
 *
 * Everything is checked at open: counts and lengths against the bytes left,
 * value and tensor types, dims, alignment, and that tensor data lie inside
 * the data section without overlapping; so the getters need no further
 * bounds checks against the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gguf.h"

#define GGUF_MAX_DEPTH 8          /* nesting of arrays in arrays */
#define GGUF_MAX_KEY 65535        /* the format's limit on key length */

typedef struct gguf_kv {
    const char *key;
    size_t key_len;
    int type;                /* ENG_GGUF_* */
    const uint8_t *val;      /* scalar, string (length first) or first array element */
    int arr_type;            /* arrays: element type */
    uint64_t arr_len;
    const uint8_t **strs;    /* string arrays: each element (length first) */
} gguf_kv;

struct eng_gguf {
    char *path;
    const uint8_t *map;
    size_t size;
    gguf_kv *kv;
    int n_kv;
    const gguf_kv **kv_sorted;   /* kv by key, for eng_gguf_find */
    eng_tensor *t;
    int n_t;
    const eng_tensor **by_name;
};

/* Bytes of one scalar value type; 0 for strings, arrays and unknown types. */
static int scalar_size(int ty) {
    static const int sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return ty >= 0 && ty <= ENG_GGUF_F64 ? sz[ty] : 0;
}

static const char *type_name(int ty) {
    static const char *const n[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                    "string", "array", "u64", "i64", "f64"};
    return ty >= 0 && ty <= ENG_GGUF_F64 ? n[ty] : "unknown";
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* ggml tensor type numbers: those brisk dequantizes, and the names of the
 * others for messages. */
static int ggml_dtype(uint32_t t) {
    switch (t) {
    case 0: return ENG_DT_F32;
    case 1: return ENG_DT_F16;
    case 2: return ENG_DT_Q4_0;
    case 3: return ENG_DT_Q4_1;
    case 6: return ENG_DT_Q5_0;
    case 7: return ENG_DT_Q5_1;
    case 8: return ENG_DT_Q8_0;
    case 12: return ENG_DT_Q4_K;
    case 13: return ENG_DT_Q5_K;
    case 14: return ENG_DT_Q6_K;
    case 30: return ENG_DT_BF16;
    default: return -1;
    }
}

static const char *ggml_other_name(uint32_t t) {
    static const char *const n[] = {
        [9] = "Q8_1", [10] = "Q2_K", [11] = "Q3_K", [15] = "Q8_K", [16] = "IQ2_XXS",
        [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S",
        [22] = "IQ2_S", [23] = "IQ4_XS", [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64",
        [28] = "F64", [29] = "IQ1_M", [34] = "TQ1_0", [35] = "TQ2_0", [39] = "MXFP4"};
    return t < sizeof n / sizeof *n ? n[t] : NULL;
}

/* ---------------------------------------------------------------- cursor */

/* Reading position; ctx names what is being read, for messages. */
typedef struct rd {
    eng_gguf *g;
    size_t o;
    char ctx[200];
    eng_err *err;
} rd;

static size_t left(const rd *r) { return r->g->size - r->o; }

static int need(rd *r, uint64_t n, const char *what) {
    if (n <= left(r)) return ENG_OK;
    return eng_seterr(r->err, ENG_EFORMAT, "%s: truncated: %s%s%s at byte %zu needs %llu bytes, "
                      "%zu left", r->g->path, r->ctx, *r->ctx ? ": " : "", what, r->o,
                      (unsigned long long)n, left(r));
}

static int rd_u32(rd *r, uint32_t *v, const char *what) {
    int rc = need(r, 4, what);
    if (rc) return rc;
    *v = (uint32_t)le(r->g->map + r->o, 4);
    r->o += 4;
    return ENG_OK;
}

static int rd_u64(rd *r, uint64_t *v, const char *what) {
    int rc = need(r, 8, what);
    if (rc) return rc;
    *v = le(r->g->map + r->o, 8);
    r->o += 8;
    return ENG_OK;
}

/* A string: *s points at its bytes in the mapping. */
static int rd_str(rd *r, const char **s, uint64_t *len, const char *what) {
    int rc = rd_u64(r, len, what);
    if (rc) return rc;
    if (*len > left(r))
        return eng_seterr(r->err, ENG_EFORMAT, "%s: %s%s%s: string length %llu at byte %zu runs "
                          "past the end of the file (%zu bytes left)", r->g->path, r->ctx,
                          *r->ctx ? ": " : "", what, (unsigned long long)*len, r->o - 8, left(r));
    *s = (const char *)r->g->map + r->o;
    r->o += (size_t)*len;
    return ENG_OK;
}

/* A count of elements of at least min_size bytes each, checked against the
 * bytes left so that no allocation or loop can be larger than the file. */
static int check_count(rd *r, uint64_t n, uint64_t min_size, const char *what) {
    if (n <= left(r) / min_size) return ENG_OK;
    return eng_seterr(r->err, ENG_EFORMAT, "%s: %s%s%s count %llu is too large for the file "
                      "(%zu bytes left; truncated or corrupt)", r->g->path, r->ctx, *r->ctx ? ": " : "", what,
                      (unsigned long long)n, left(r));
}

/* A table's entry count (metadata pairs, tensors): it fits the file as
 * check_count says, and an int. */
static int check_entries(rd *r, uint64_t n, uint64_t min_size, const char *what,
                         const char *entries) {
    int rc = check_count(r, n, min_size, what);
    if (rc) return rc;
    if (n > (uint64_t)INT32_MAX)
        return eng_seterr(r->err, ENG_EFORMAT, "%s: %llu %s (too many)", r->g->path,
                          (unsigned long long)n, entries);
    return ENG_OK;
}

/* -------------------------------------------------------------- metadata */

static int check_type(rd *r, uint32_t ty, const char *what) {
    if (ty <= ENG_GGUF_F64) return ENG_OK;
    return eng_seterr(r->err, ENG_EFORMAT, "%s: %s: unknown %s type %u", r->g->path, r->ctx,
                      what, ty);
}

/* Skips over one value of type ty, checking it; kv (top level only) gets the
 * value's position and, for string arrays, the index of its elements. */
static int skip_value(rd *r, uint32_t ty, int depth, gguf_kv *kv) {
    int rc, sz = scalar_size((int)ty);
    if (kv) kv->val = r->g->map + r->o;
    if (sz) {
        if ((rc = need(r, (uint64_t)sz, type_name((int)ty)))) return rc;
        if (ty == ENG_GGUF_BOOL && r->g->map[r->o] > 1)
            return eng_seterr(r->err, ENG_EFORMAT, "%s: %s: bool value %u is neither 0 nor 1",
                              r->g->path, r->ctx, r->g->map[r->o]);
        r->o += (size_t)sz;
        return ENG_OK;
    }
    const char *s;
    uint64_t len;
    if (ty == ENG_GGUF_STR) return rd_str(r, &s, &len, "string");
    if (depth >= GGUF_MAX_DEPTH)
        return eng_seterr(r->err, ENG_EFORMAT, "%s: %s: arrays nested deeper than %d", r->g->path,
                          r->ctx, GGUF_MAX_DEPTH);
    uint32_t et;
    uint64_t n;
    if ((rc = rd_u32(r, &et, "array type")) || (rc = check_type(r, et, "array element")) ||
        (rc = rd_u64(r, &n, "array length")))
        return rc;
    if (kv) {
        kv->arr_type = (int)et;
        kv->arr_len = n;
        kv->val = r->g->map + r->o;
    }
    int esz = scalar_size((int)et);
    if (esz) {
        if ((rc = check_count(r, n, (uint64_t)esz, "array element"))) return rc;
        if (et == ENG_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (r->g->map[r->o + i] > 1)
                    return eng_seterr(r->err, ENG_EFORMAT, "%s: %s: bool element %llu is %u, "
                                      "neither 0 nor 1", r->g->path, r->ctx,
                                      (unsigned long long)i, r->g->map[r->o + i]);
        r->o += (size_t)(n * (uint64_t)esz);
        return ENG_OK;
    }
    /* strings take at least 8 bytes each, arrays 12 */
    if ((rc = check_count(r, n, et == ENG_GGUF_STR ? 8 : 12, "array element"))) return rc;
    if (kv && et == ENG_GGUF_STR && !(kv->strs = malloc(sizeof *kv->strs * (n ? n : 1))))
        return eng_seterr(r->err, ENG_ENOMEM, "%s: out of memory", r->g->path);
    for (uint64_t i = 0; i < n; i++) {
        if (kv && kv->strs) kv->strs[i] = r->g->map + r->o;
        if ((rc = skip_value(r, et, depth + 1, NULL))) return rc;
    }
    return ENG_OK;
}

/* Compares key (len bytes) with kv's key, for sorting and search. */
static int key_cmp(const char *key, size_t len, const gguf_kv *kv) {
    size_t n = len < kv->key_len ? len : kv->key_len;
    int c = memcmp(key, kv->key, n);
    return c ? c : len < kv->key_len ? -1 : len > kv->key_len;
}

static int cmp_kv(const void *a, const void *b) {
    const gguf_kv *x = *(const gguf_kv *const *)a, *y = *(const gguf_kv *const *)b;
    return key_cmp(x->key, x->key_len, y);
}

static int read_kvs(rd *r, uint64_t n_kv) {
    eng_gguf *g = r->g;
    int rc;
    /* a pair takes at least 8 (key length) + 1 (key) + 4 (type) + 1 (value) bytes */
    if ((rc = check_entries(r, n_kv, 14, "metadata", "metadata pairs"))) return rc;
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->kv_sorted = malloc(sizeof *g->kv_sorted * (n_kv ? n_kv : 1));
    if (!g->kv || !g->kv_sorted) return eng_seterr(r->err, ENG_ENOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &g->kv[g->n_kv++];
        uint64_t len;
        uint32_t ty;
        snprintf(r->ctx, sizeof r->ctx, "metadata pair %llu", (unsigned long long)i);
        if ((rc = rd_str(r, &kv->key, &len, "key"))) return rc;
        if (len == 0 || len > GGUF_MAX_KEY || memchr(kv->key, 0, (size_t)len))
            return eng_seterr(r->err, ENG_EFORMAT, "%s: metadata pair %llu: key of %llu bytes is "
                              "empty, too long or holds a NUL byte", g->path,
                              (unsigned long long)i, (unsigned long long)len);
        kv->key_len = (size_t)len;
        snprintf(r->ctx, sizeof r->ctx, "metadata %.*s", len > 120 ? 120 : (int)len, kv->key);
        if ((rc = rd_u32(r, &ty, "value type")) || (rc = check_type(r, ty, "value")))
            return rc;
        kv->type = (int)ty;
        kv->arr_type = -1;
        if ((rc = skip_value(r, ty, 0, kv))) return rc;
    }
    *r->ctx = 0;
    for (int i = 0; i < g->n_kv; i++) g->kv_sorted[i] = &g->kv[i];
    qsort(g->kv_sorted, g->n_kv, sizeof *g->kv_sorted, cmp_kv);
    for (int i = 1; i < g->n_kv; i++) {
        const gguf_kv *a = g->kv_sorted[i - 1], *b = g->kv_sorted[i];
        if (!key_cmp(a->key, a->key_len, b))
            return eng_seterr(r->err, ENG_EFORMAT, "%s: metadata key %.*s appears twice", g->path,
                              (int)(b->key_len > 120 ? 120 : b->key_len), b->key);
    }
    return ENG_OK;
}

/* --------------------------------------------------------------- tensors */

static int read_tensor_info(rd *r, eng_tensor *t, uint64_t *offset) {
    const char *p = r->g->path, *name;
    uint64_t len, ne[4], n_el = 1;
    uint32_t nd, ty;
    int rc = rd_str(r, &name, &len, "name");
    if (rc) return rc;
    if (len == 0 || len >= sizeof t->name || memchr(name, 0, (size_t)len))
        return eng_seterr(r->err, ENG_EFORMAT, "%s: %s: name of %llu bytes is empty, longer than "
                          "%zu bytes or holds a NUL byte", p, r->ctx, (unsigned long long)len,
                          sizeof t->name - 1);
    memcpy(t->name, name, (size_t)len);
    t->name[len] = 0;
    snprintf(r->ctx, sizeof r->ctx, "tensor %s", t->name);
    if ((rc = rd_u32(r, &nd, "n_dims"))) return rc;
    if (nd < 1 || nd > 4)
        return eng_seterr(r->err, ENG_EFORMAT, "%s: tensor %s: %u dims (1 to 4 allowed)", p,
                          t->name, nd);
    for (uint32_t i = 0; i < nd; i++) {
        if ((rc = rd_u64(r, &ne[i], "dim"))) return rc;
        if (ne[i] == 0 || ne[i] > ((uint64_t)1 << 62) / n_el)
            return eng_seterr(r->err, ENG_EFORMAT, "%s: tensor %s: dim %u is %llu (zero, or the "
                              "element count overflows)", p, t->name, i,
                              (unsigned long long)ne[i]);
        n_el *= ne[i];
    }
    if ((rc = rd_u32(r, &ty, "type")) || (rc = rd_u64(r, offset, "offset"))) return rc;
    t->dtype = ggml_dtype(ty);
    if (t->dtype < 0) {
        const char *other = ggml_other_name(ty);
        if (other)
            return eng_seterr(r->err, ENG_EUNSUPPORTED, "%s: tensor %s: type %s not supported "
                              "(F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)",
                              p, t->name, other);
        return eng_seterr(r->err, ENG_EFORMAT, "%s: tensor %s: unknown tensor type %u", p,
                          t->name, ty);
    }
    int blk = eng_dt_block(t->dtype);
    if (ne[0] % (uint64_t)blk)
        return eng_seterr(r->err, ENG_EFORMAT, "%s: tensor %s: row length %llu is not a multiple "
                          "of the %s block size %d", p, t->name, (unsigned long long)ne[0],
                          eng_dt_name(t->dtype), blk);
    t->ndim = (int)nd;
    for (int i = 0; i < 4; i++) t->shape[i] = i < (int)nd ? (int64_t)ne[nd - 1 - i] : 1;
    uint64_t nbytes = n_el / (uint64_t)blk * (uint64_t)eng_dt_block_bytes(t->dtype);
    if (nbytes > r->g->size)
        return eng_seterr(r->err, ENG_EFORMAT, "%s: tensor %s: %llu bytes of data, more than the "
                          "file holds (truncated or corrupt)", p, t->name, (unsigned long long)nbytes);
    t->nbytes = (size_t)nbytes;
    return ENG_OK;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const eng_tensor *const *)a)->name, (*(const eng_tensor *const *)b)->name);
}

static int cmp_data(const void *a, const void *b) {
    const uint8_t *x = (*(const eng_tensor *const *)a)->data;
    const uint8_t *y = (*(const eng_tensor *const *)b)->data;
    return x < y ? -1 : x > y;
}

/* Rejects duplicate names and overlapping data, then leaves by_name sorted
 * by name for eng_gguf_find_tensor. */
static int index_tensors(eng_gguf *g, eng_err *err) {
    g->by_name = malloc(sizeof *g->by_name * (g->n_t ? g->n_t : 1));
    if (!g->by_name) return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", g->path);
    for (int i = 0; i < g->n_t; i++) g->by_name[i] = &g->t[i];
    qsort(g->by_name, g->n_t, sizeof *g->by_name, cmp_data);
    for (int i = 1; i < g->n_t; i++) {
        const eng_tensor *a = g->by_name[i - 1], *b = g->by_name[i];
        if ((const uint8_t *)a->data + a->nbytes > (const uint8_t *)b->data)
            return eng_seterr(err, ENG_EFORMAT, "%s: tensor %s: data overlaps tensor %s", g->path,
                              b->name, a->name);
    }
    qsort(g->by_name, g->n_t, sizeof *g->by_name, cmp_name);
    for (int i = 1; i < g->n_t; i++)
        if (!strcmp(g->by_name[i]->name, g->by_name[i - 1]->name))
            return eng_seterr(err, ENG_EFORMAT, "%s: duplicate tensor name %s", g->path,
                              g->by_name[i]->name);
    return ENG_OK;
}

static int read_tensors(rd *r, uint64_t n_t) {
    eng_gguf *g = r->g;
    int rc;
    /* an info takes at least 8 + 1 (name) + 4 + 8 (one dim) + 4 + 8 bytes */
    if ((rc = check_entries(r, n_t, 33, "tensor", "tensors"))) return rc;
    uint64_t *off = malloc(sizeof *off * (n_t ? n_t : 1));
    g->t = calloc(n_t ? n_t : 1, sizeof *g->t);
    if (!off || !g->t) {
        free(off);
        return eng_seterr(r->err, ENG_ENOMEM, "%s: out of memory", g->path);
    }
    for (uint64_t i = 0; i < n_t && !rc; i++) {
        snprintf(r->ctx, sizeof r->ctx, "tensor info %llu", (unsigned long long)i);
        rc = read_tensor_info(r, &g->t[i], &off[i]);
        g->n_t = (int)i + 1;
    }
    *r->ctx = 0;
    int64_t align = 32;
    if (!rc) rc = eng_gguf_get_int(g, "general.alignment", 0, &align, r->err);
    if (!rc && (align < 1 || align > (1 << 30) || (align & (align - 1))))
        rc = eng_seterr(r->err, ENG_EFORMAT, "%s: general.alignment %lld is not a power of two "
                        "(up to 2^30)", g->path, (long long)align);
    /* the data section starts at the first aligned byte after the infos */
    size_t start = rc ? 0 : (r->o + (size_t)align - 1) / (size_t)align * (size_t)align;
    size_t data_size = start < g->size ? g->size - start : 0;
    for (int i = 0; i < g->n_t && !rc; i++) {
        eng_tensor *t = &g->t[i];
        if (off[i] % (uint64_t)align)
            rc = eng_seterr(r->err, ENG_EFORMAT, "%s: tensor %s: offset %llu is not a multiple of "
                            "the alignment %lld", g->path, t->name, (unsigned long long)off[i],
                            (long long)align);
        else if (off[i] > data_size || t->nbytes > data_size - off[i])
            rc = eng_seterr(r->err, ENG_EFORMAT, "%s: tensor %s: data [%llu, +%zu) runs past the "
                            "end of the file (truncated? data section from byte %zu holds %zu "
                            "bytes)", g->path, t->name, (unsigned long long)off[i], t->nbytes,
                            start, data_size);
        else t->data = g->map + start + off[i];
    }
    free(off);
    return rc ? rc : index_tensors(g, r->err);
}

/* ------------------------------------------------------------------ open */

static int parse(eng_gguf *g, eng_err *err) {
    rd r = {.g = g, .err = err};
    uint32_t version;
    uint64_t n_t, n_kv;
    int rc;
    if (g->size < 4 || memcmp(g->map, "GGUF", 4))
        return eng_seterr(err, ENG_EFORMAT, "%s: not a GGUF file (bad magic)", g->path);
    r.o = 4;
    if ((rc = rd_u32(&r, &version, "version"))) return rc;
    if (version == 1)
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: GGUF version 1 is not supported (2 or 3; "
                          "convert the file with a newer llama.cpp)", g->path);
    if (version != 2 && version != 3)
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: GGUF version %u is not supported (2 or 3%s)",
                          g->path, version, (version & 0xffff) ? "" : "; a big-endian file?");
    if ((rc = rd_u64(&r, &n_t, "tensor count")) || (rc = rd_u64(&r, &n_kv, "metadata count")))
        return rc;
    if ((rc = read_kvs(&r, n_kv))) return rc;
    return read_tensors(&r, n_t);
}

int eng_gguf_open(const char *path, eng_gguf **out, eng_err *err) {
    *out = NULL;
    eng_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", path);
    }
    const void *map;
    int rc = eng_map_file(path, &map, &g->size, err);
    g->map = map;
    if (!rc) rc = parse(g, err);
    if (rc) {
        eng_gguf_close(g);
        return rc;
    }
    *out = g;
    return ENG_OK;
}

void eng_gguf_close(eng_gguf *g) {
    if (!g) return;
    eng_unmap_file(g->map, g->size);
    for (int i = 0; i < g->n_kv; i++) free(g->kv[i].strs);
    free(g->kv);
    free(g->kv_sorted);
    free(g->t);
    free(g->by_name);
    free(g->path);
    free(g);
}

const char *eng_gguf_path(const eng_gguf *g) { return g->path; }

/* -------------------------------------------------------------- metadata */

int eng_gguf_find(const eng_gguf *g, const char *key) {
    size_t len = strlen(key);
    int lo = 0, hi = g->n_kv - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = key_cmp(key, len, g->kv_sorted[mid]);
        if (!c) return (int)(g->kv_sorted[mid] - g->kv);
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return -1;
}

static const gguf_kv *kv_at(const eng_gguf *g, int kv) {
    return kv >= 0 && kv < g->n_kv ? &g->kv[kv] : NULL;
}

int eng_gguf_type(const eng_gguf *g, int kv) {
    const gguf_kv *k = kv_at(g, kv);
    return k ? k->type : -1;
}

int eng_gguf_arr_type(const eng_gguf *g, int kv) {
    const gguf_kv *k = kv_at(g, kv);
    return k && k->type == ENG_GGUF_ARR ? k->arr_type : -1;
}

uint64_t eng_gguf_arr_len(const eng_gguf *g, int kv) {
    const gguf_kv *k = kv_at(g, kv);
    return k && k->type == ENG_GGUF_ARR ? k->arr_len : 0;
}

/* One number of type ty at p.  Returns 1 for an integer or bool (*iv), 2
 * for a float (*fv), 0 for a non-number, -1 for a u64 above INT64_MAX. */
static int num_at(int ty, const uint8_t *p, int64_t *iv, double *fv) {
    if (!scalar_size(ty)) return 0;
    uint64_t u = le(p, scalar_size(ty));
    switch (ty) {
    case ENG_GGUF_U8: case ENG_GGUF_U16: case ENG_GGUF_U32: case ENG_GGUF_BOOL:
        *iv = (int64_t)u; return 1;
    case ENG_GGUF_I8: *iv = (int8_t)u; return 1;
    case ENG_GGUF_I16: *iv = (int16_t)u; return 1;
    case ENG_GGUF_I32: *iv = (int32_t)u; return 1;
    case ENG_GGUF_I64: *iv = (int64_t)u; return 1;
    case ENG_GGUF_U64:
        if (u > INT64_MAX) return -1;
        *iv = (int64_t)u;
        return 1;
    case ENG_GGUF_F32: {
        uint32_t b = (uint32_t)u;
        float f;
        memcpy(&f, &b, 4);
        *fv = f;
        return 2;
    }
    case ENG_GGUF_F64: memcpy(fv, &u, 8); return 2;
    default: return 0;
    }
}

/* Looks up key: *k NULL when absent (an error when required). */
static int get_kv(const eng_gguf *g, const char *key, int required, const gguf_kv **k,
                  eng_err *err) {
    *k = kv_at(g, eng_gguf_find(g, key));
    if (!*k && required)
        return eng_seterr(err, ENG_EFORMAT, "%s: missing metadata %s", g->path, key);
    return ENG_OK;
}

static int wrong_type(const eng_gguf *g, const char *key, const gguf_kv *k, const char *want,
                      eng_err *err) {
    return eng_seterr(err, ENG_EFORMAT, "%s: metadata %s is a %s, expected %s", g->path, key,
                      type_name(k->type), want);
}

/* Looks up key and reads it as a number: with want_int only an integer will
 * do (into *iv), else any number but a bool (into *fv, an integer converted).
 * Nothing is written when the key is absent and not required. */
static int get_num(const eng_gguf *g, const char *key, int required, int want_int,
                   int64_t *iv, double *fv, eng_err *err) {
    const gguf_kv *k;
    int rc = get_kv(g, key, required, &k, err);
    if (rc || !k) return rc;
    int64_t v;
    double f;
    int kind = num_at(k->type, k->val, &v, &f);
    if (kind == -1)
        return eng_seterr(err, ENG_EFORMAT, "%s: metadata %s is out of range", g->path, key);
    if (want_int) {
        if (kind != 1) return wrong_type(g, key, k, "an integer", err);
        *iv = v;
    } else {
        if (kind == 0 || k->type == ENG_GGUF_BOOL) return wrong_type(g, key, k, "a number", err);
        *fv = kind == 1 ? (double)v : f;
    }
    return ENG_OK;
}

int eng_gguf_get_int(const eng_gguf *g, const char *key, int required, int64_t *out,
                     eng_err *err) {
    return get_num(g, key, required, 1, out, NULL, err);
}

int eng_gguf_get_float(const eng_gguf *g, const char *key, int required, double *out,
                       eng_err *err) {
    return get_num(g, key, required, 0, NULL, out, err);
}

int eng_gguf_get_str(const eng_gguf *g, const char *key, int required, const char **s,
                     size_t *len, eng_err *err) {
    const gguf_kv *k;
    int rc = get_kv(g, key, required, &k, err);
    if (rc || !k) return rc;
    if (k->type != ENG_GGUF_STR) return wrong_type(g, key, k, "a string", err);
    *len = (size_t)le(k->val, 8);
    *s = (const char *)k->val + 8;
    return ENG_OK;
}

/* Element i of array kv, which must be of a scalar type: its address. */
static int scalar_elem(const eng_gguf *g, int kv, uint64_t i, const uint8_t **p, int *ty) {
    const gguf_kv *k = kv_at(g, kv);
    if (!k || k->type != ENG_GGUF_ARR || i >= k->arr_len) return ENG_EINVAL;
    if (!scalar_size(k->arr_type)) return ENG_EFORMAT;
    *ty = k->arr_type;
    *p = k->val + i * (uint64_t)scalar_size(k->arr_type);
    return ENG_OK;
}

int eng_gguf_arr_str(const eng_gguf *g, int kv, uint64_t i, const char **s, size_t *len) {
    const gguf_kv *k = kv_at(g, kv);
    if (!k || k->type != ENG_GGUF_ARR || i >= k->arr_len) return ENG_EINVAL;
    if (k->arr_type != ENG_GGUF_STR) return ENG_EFORMAT;
    *len = (size_t)le(k->strs[i], 8);
    *s = (const char *)k->strs[i] + 8;
    return ENG_OK;
}

int eng_gguf_arr_int(const eng_gguf *g, int kv, uint64_t i, int64_t *out) {
    const uint8_t *p;
    int ty, rc = scalar_elem(g, kv, i, &p, &ty);
    double f;
    if (rc) return rc;
    return num_at(ty, p, out, &f) == 1 ? ENG_OK : ENG_EFORMAT;
}

int eng_gguf_arr_float(const eng_gguf *g, int kv, uint64_t i, double *out) {
    const uint8_t *p;
    int ty, rc = scalar_elem(g, kv, i, &p, &ty);
    int64_t v;
    if (rc) return rc;
    if (ty == ENG_GGUF_BOOL) return ENG_EFORMAT;
    int kind = num_at(ty, p, &v, out);
    if (kind == 1) *out = (double)v;
    return kind > 0 ? ENG_OK : ENG_EFORMAT;
}

/* --------------------------------------------------------------- tensors */

int eng_gguf_n_tensors(const eng_gguf *g) { return g->n_t; }

const eng_tensor *eng_gguf_tensor(const eng_gguf *g, int i) {
    return i >= 0 && i < g->n_t ? &g->t[i] : NULL;
}

const eng_tensor *eng_gguf_find_tensor(const eng_gguf *g, const char *name) {
    int lo = 0, hi = g->n_t - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(name, g->by_name[mid]->name);
        if (!c) return g->by_name[mid];
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return NULL;
}
