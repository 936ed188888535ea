/* kv.c — free list, reference counts and block tables of the paged KV cache.
 * The free list is a stack, so a block just released is the next one handed
 * out: its memory is likely still in cache, and a pool larger than what is
 * in use never has its untouched tail paged in. */
#include <stdlib.h>
#include <string.h>
#include "kv.h"

struct eng_kv {
    int n_blocks, block_size;
    int *refs;      /* [n_blocks] */
    int *free;      /* stack of free block ids */
    int n_free;
};

int eng_kv_create(int n_blocks, int block_size, eng_kv **out, eng_err *err) {
    *out = NULL;
    if (n_blocks <= 0 || block_size <= 0)
        return eng_seterr(err, ENG_EINVAL, "kv: need n_blocks > 0 and block_size > 0 (got %d, %d)",
                          n_blocks, block_size);
    eng_kv *kv = calloc(1, sizeof *kv);
    if (kv) {
        kv->refs = calloc((size_t)n_blocks, sizeof *kv->refs);
        kv->free = malloc((size_t)n_blocks * sizeof *kv->free);
    }
    if (!kv || !kv->refs || !kv->free) {
        eng_kv_destroy(kv);
        return eng_seterr(err, ENG_ENOMEM, "kv: out of memory for %d blocks", n_blocks);
    }
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    for (int i = 0; i < n_blocks; i++) kv->free[i] = n_blocks - 1 - i;  /* block 0 on top */
    kv->n_free = n_blocks;
    *out = kv;
    return ENG_OK;
}

void eng_kv_destroy(eng_kv *kv) {
    if (!kv) return;
    free(kv->refs);
    free(kv->free);
    free(kv);
}

int eng_kv_n_blocks(const eng_kv *kv) { return kv->n_blocks; }
int eng_kv_n_free(const eng_kv *kv) { return kv->n_free; }

/* Takes a block off the free list with one reference, or returns -1. */
static int kv_alloc(eng_kv *kv) {
    if (!kv->n_free) return -1;
    int b = kv->free[--kv->n_free];
    kv->refs[b] = 1;
    return b;
}

static void kv_release(eng_kv *kv, int b) {
    if (--kv->refs[b] == 0) kv->free[kv->n_free++] = b;
}

int eng_kv_table_reserve(eng_kv_table *t, int block_size, int to, eng_err *err) {
    int need = (int)(((int64_t)to + block_size - 1) / block_size);
    if (need <= t->cap) return ENG_OK;
    int cap = t->cap ? t->cap : 4;
    while (cap < need) cap *= 2;
    int *ids = realloc(t->ids, (size_t)cap * sizeof *ids);
    if (!ids) return eng_seterr(err, ENG_ENOMEM, "kv: out of memory for a block table of %d", cap);
    t->ids = ids;
    t->cap = cap;
    return ENG_OK;
}

int eng_kv_table_fork(eng_kv *kv, const eng_kv_table *src, eng_kv_table *dst, eng_err *err) {
    int rc = eng_kv_table_reserve(dst, 1, src->n, err);
    if (rc) return rc;
    for (int i = 0; i < src->n; i++) {
        dst->ids[i] = src->ids[i];
        kv->refs[src->ids[i]]++;
    }
    dst->n = src->n;
    return ENG_OK;
}

void eng_kv_table_free(eng_kv *kv, eng_kv_table *t) {
    for (int i = 0; i < t->n; i++) kv_release(kv, t->ids[i]);
    free(t->ids);
    memset(t, 0, sizeof *t);
}

void eng_kv_table_truncate(eng_kv *kv, eng_kv_table *t, int n) {
    int keep = n <= 0 ? 0 : (int)(((int64_t)n + kv->block_size - 1) / kv->block_size);
    while (t->n > keep) kv_release(kv, t->ids[--t->n]);
}

int eng_kv_table_need(const eng_kv *kv, const eng_kv_table *t, int from, int to) {
    if (to <= from) return 0;
    int bs = kv->block_size, first = from / bs, last = (to - 1) / bs, need = 0;
    for (int i = first; i <= last; i++)
        if (i >= t->n || kv->refs[t->ids[i]] > 1) need++;
    return need;
}

int eng_kv_table_prepare(eng_kv *kv, eng_kv_table *t, int from, int to,
                         eng_kv_copy_fn copy, void *ctx, eng_err *err) {
    if (to <= from) return ENG_OK;
    int bs = kv->block_size, first = from / bs, last = (to - 1) / bs;
    if (first > t->n)
        return eng_seterr(err, ENG_EINVAL, "kv: write at position %d leaves a gap after %d blocks",
                          from, t->n);
    int rc = eng_kv_table_reserve(t, bs, to, err);
    if (rc) return rc;
    for (int i = first; i <= last; i++) {
        if (i < t->n && kv->refs[t->ids[i]] == 1) continue;   /* already private */
        int b = kv_alloc(kv);
        if (b < 0)
            return eng_seterr(err, ENG_EFULL, "kv: no free block (pool of %d blocks)", kv->n_blocks);
        if (i < t->n) {   /* shared: copy what the others wrote, then let go of it */
            rc = copy(ctx, t->ids[i], b, err);
            if (rc) { kv_release(kv, b); return rc; }
            kv_release(kv, t->ids[i]);
            t->ids[i] = b;
        } else {
            t->ids[t->n++] = b;   /* i == t->n: blocks are appended in order */
        }
    }
    return ENG_OK;
}

int eng_kv_format_parse(const char *name) {
    if (name && !strcmp(name, "f32")) return ENG_KV_F32;
    if (name && !strcmp(name, "bf16")) return ENG_KV_BF16;
    return -1;
}

const char *eng_kv_format_name(int format) {
    return format == ENG_KV_F32 ? "f32" : format == ENG_KV_BF16 ? "bf16" : "?";
}
