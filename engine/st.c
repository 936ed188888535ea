/* st.c — safetensors reader.  A file is an 8-byte little-endian header
 * length N, N bytes of JSON {name: {dtype, shape, data_offsets}}, then the
 * data area.  The file stays mmap'd read-only; tensors point into it.  Every
 * field is checked, so a damaged file gives an error, never a bad read. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cJSON.h>
#include "internal.h"

#define ST_MAX_HEADER (100u << 20)   /* real headers are well under 1 MB */
#define ST_MAX_TENSORS (1 << 20)

struct eng_st {
    char *path;
    const void *map;
    size_t size;
    eng_tensor *t;    /* in header order */
    int n;
    const eng_tensor **by_name;  /* t sorted by name, for eng_st_find */
};

/* Reads a JSON number that must be a non-negative integer below 2^53. */
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int parse_dtype(const char *s, int *dt) {
    if (!strcmp(s, "F32")) *dt = ENG_DT_F32;
    else if (!strcmp(s, "F16")) *dt = ENG_DT_F16;
    else if (!strcmp(s, "BF16")) *dt = ENG_DT_BF16;
    else return 0;
    return 1;
}

/* Fills t from one header entry; data_size is the size of the data area. */
static int parse_entry(const eng_st *f, const cJSON *e, const uint8_t *data, size_t data_size,
                       eng_tensor *t, eng_err *err) {
    const char *p = f->path, *name = e->string;
    if (strlen(name) >= sizeof t->name)
        return eng_seterr(err, ENG_EFORMAT, "%s: tensor name too long (%zu bytes): %.60s...",
                          p, strlen(name), name);
    strcpy(t->name, name);
    if (!cJSON_IsObject(e))
        return eng_seterr(err, ENG_EFORMAT, "%s: tensor %s: entry is not an object", p, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return eng_seterr(err, ENG_EFORMAT, "%s: tensor %s: missing or non-string dtype", p, name);
    if (!parse_dtype(dt->valuestring, &t->dtype))
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: tensor %s: dtype %s not supported "
                          "(F32, F16, BF16 only)", p, name, dt->valuestring);
    if (!cJSON_IsArray(sh))
        return eng_seterr(err, ENG_EFORMAT, "%s: tensor %s: missing or non-array shape", p, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > 4)
        return eng_seterr(err, ENG_EUNSUPPORTED, "%s: tensor %s: %d dims (at most 4)", p, name, nd);
    t->ndim = nd;
    uint64_t count = 1;
    int i = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_u64(d, &v))
            return eng_seterr(err, ENG_EFORMAT, "%s: tensor %s: shape[%d] is not a "
                              "non-negative integer", p, name, i);
        t->shape[i] = (int64_t)v;
        if (v && count > UINT64_MAX / 8 / v)
            return eng_seterr(err, ENG_EFORMAT, "%s: tensor %s: shape overflows", p, name);
        count *= v;
    }
    for (; i < 4; i++) t->shape[i] = 1;
    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        !json_u64(off->child, &b) || !json_u64(off->child->next, &en))
        return eng_seterr(err, ENG_EFORMAT, "%s: tensor %s: data_offsets must be "
                          "[begin, end] integers", p, name);
    if (b > en || en > data_size)
        return eng_seterr(err, ENG_EFORMAT, "%s: tensor %s: data_offsets [%llu, %llu] reversed "
                          "or outside the data area (%zu bytes)", p, name, (unsigned long long)b,
                          (unsigned long long)en, data_size);
    uint64_t want = count * (uint64_t)eng_dt_block_bytes(t->dtype);
    if (en - b != want)
        return eng_seterr(err, ENG_EFORMAT, "%s: tensor %s: %llu bytes but shape x dtype "
                          "needs %llu", p, name, (unsigned long long)(en - b),
                          (unsigned long long)want);
    t->nbytes = (size_t)want;
    t->data = data + b;
    return ENG_OK;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const eng_tensor *const *)a)->name, (*(const eng_tensor *const *)b)->name);
}

/* Sorts the name index and rejects duplicate names. */
static int index_names(eng_st *f, eng_err *err) {
    f->by_name = malloc(sizeof *f->by_name * (f->n ? f->n : 1));
    if (!f->by_name) return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", f->path);
    for (int i = 0; i < f->n; i++) f->by_name[i] = &f->t[i];
    qsort(f->by_name, f->n, sizeof *f->by_name, cmp_name);
    for (int i = 1; i < f->n; i++)
        if (!strcmp(f->by_name[i]->name, f->by_name[i - 1]->name))
            return eng_seterr(err, ENG_EFORMAT, "%s: duplicate tensor name %s", f->path,
                              f->by_name[i]->name);
    return ENG_OK;
}

static int parse_header(eng_st *f, eng_err *err) {
    const uint8_t *base = f->map;
    if (f->size < 8)
        return eng_seterr(err, ENG_EFORMAT, "%s: file is %zu bytes, shorter than the 8-byte "
                          "header length", f->path, f->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | base[i];
    if (n > ST_MAX_HEADER)
        return eng_seterr(err, ENG_EFORMAT, "%s: header length %llu is absurd (limit %u)",
                          f->path, (unsigned long long)n, ST_MAX_HEADER);
    if (n > f->size - 8)
        return eng_seterr(err, ENG_EFORMAT, "%s: header length %llu exceeds the file (%zu "
                          "bytes)", f->path, (unsigned long long)n, f->size);
    cJSON *h = cJSON_ParseWithLength((const char *)base + 8, (size_t)n);
    if (!h || !cJSON_IsObject(h)) {
        cJSON_Delete(h);
        return eng_seterr(err, ENG_EFORMAT, "%s: header is not a JSON object", f->path);
    }
    const uint8_t *data = base + 8 + n;
    size_t data_size = f->size - 8 - (size_t)n;
    int cnt = 0, rc = ENG_OK;
    for (const cJSON *e = h->child; e; e = e->next) cnt++;
    if (cnt > ST_MAX_TENSORS) {
        cJSON_Delete(h);
        return eng_seterr(err, ENG_EFORMAT, "%s: %d header entries (too many)", f->path, cnt);
    }
    f->t = calloc(cnt ? cnt : 1, sizeof *f->t);
    if (!f->t) {
        cJSON_Delete(h);
        return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", f->path);
    }
    for (const cJSON *e = h->child; e && rc == ENG_OK; e = e->next) {
        if (!e->string)
            rc = eng_seterr(err, ENG_EFORMAT, "%s: header entry without a name", f->path);
        else if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e) && !cJSON_IsNull(e))
                rc = eng_seterr(err, ENG_EFORMAT, "%s: __metadata__ is not an object", f->path);
        } else rc = parse_entry(f, e, data, data_size, &f->t[f->n++], err);
    }
    cJSON_Delete(h);
    return rc ? rc : index_names(f, err);
}

int eng_st_open(const char *path, eng_st **out, eng_err *err) {
    *out = NULL;
    eng_st *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", path);
    }
    int rc = eng_map_file(path, &f->map, &f->size, err);
    if (rc == ENG_OK) rc = parse_header(f, err);
    if (rc != ENG_OK) {
        eng_st_close(f);
        return rc;
    }
    *out = f;
    return ENG_OK;
}

void eng_st_close(eng_st *f) {
    if (!f) return;
    eng_unmap_file(f->map, f->size);
    free(f->t);
    free(f->by_name);
    free(f->path);
    free(f);
}

int eng_st_count(const eng_st *f) { return f->n; }

const eng_tensor *eng_st_get(const eng_st *f, int i) {
    return i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const eng_tensor *eng_st_find(const eng_st *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const eng_tensor *t = f->by_name[mid];
        int c = strcmp(name, t->name);
        if (!c) return t;
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return NULL;
}
