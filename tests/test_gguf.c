/* test_gguf.c — the GGUF reader (engine/gguf.c) and dequantization
 * (engine/quant.c).  A small GGUF writer (gguf_write.h) builds valid files; then each
 * kind of damage the reader must name (bad magic, versions, counts, lengths,
 * types, dims, names, offsets, alignment) is checked on its own, and a fuzz
 * pass (fixed seed) truncates a small file at every byte, flips bits and
 * writes random values into every count and length: the reader must never
 * crash or read outside the file (run once under -fsanitize=address) and
 * must either load or fail with ENG_EFORMAT / ENG_EUNSUPPORTED naming the
 * file.  Dequantization is checked per type against blocks packed here from
 * known values (an independent double computation) and, bit for bit,
 * against the gguf Python package (tests/fixtures/gguf_quants.json, made by
 * scripts/record_gguf_quants.py). */
#include "t.h"
#include <stdint.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "gguf.h"
#include "gguf_write.h"
#include "internal.h"
#include "quant_block.h"

/* --------------------------------------------------------- a valid file */

static const char *const toks[] = {"<s>", "hello", "", "w\xc3\xb6rld"};
static const int32_t ints[] = {-5, 0, 7, 2147483647};
static const float floats[] = {0.5f, -2.0f, 3.25f};

/* Fills w with metadata of every type and three tensors (F32, Q4_0, Q8_0). */
static void build_valid(gw *w, float *f32_vals) {
    gw_str(w, "general.architecture", "llama");
    gw_scalar(w, "t.u8", ENG_GGUF_U8, 200, 1);
    gw_scalar(w, "t.i8", ENG_GGUF_I8, (uint8_t)-100, 1);
    gw_scalar(w, "t.u16", ENG_GGUF_U16, 60000, 2);
    gw_scalar(w, "t.i16", ENG_GGUF_I16, (uint16_t)-30000, 2);
    gw_u32(w, "t.u32", 4000000000u);
    gw_scalar(w, "t.i32", ENG_GGUF_I32, (uint32_t)-2000000000, 4);
    gw_f32(w, "t.f32", 1e-5f);
    gw_scalar(w, "t.bool", ENG_GGUF_BOOL, 1, 1);
    gw_scalar(w, "t.u64", ENG_GGUF_U64, (uint64_t)1 << 40, 8);
    gw_scalar(w, "t.u64big", ENG_GGUF_U64, UINT64_MAX, 8);
    gw_scalar(w, "t.i64", ENG_GGUF_I64, (uint64_t)-(int64_t)1 << 50, 8);
    gw_f64(w, "t.f64", 100000.0);
    gw_arr_str(w, "t.toks", toks, 4);
    gw_arr_i32(w, "t.ints", ints, 4);
    gw_arr_f32(w, "t.floats", floats, 3);
    gw_arr_nested(w, "t.nested");
    for (int i = 0; i < 6; i++) f32_vals[i] = (float)i - 2.5f;
    uint64_t ne_f[2] = {3, 2};   /* 2 rows of 3 */
    gw_tensor(w, "norm.weight", G_F32, 2, ne_f, f32_vals, 24);
    uint8_t q4[2 * 18] = {0};
    q4[0] = 0x00, q4[1] = 0x3c;     /* d = 1.0 */
    for (int j = 0; j < 16; j++) q4[2 + j] = (uint8_t)(j | (15 - j) << 4);
    q4[18] = 0x00, q4[19] = 0xb8;   /* d = -0.5 */
    uint64_t ne_q4[2] = {32, 2};
    gw_tensor(w, "blk.0.attn_q.weight", G_Q4_0, 2, ne_q4, q4, sizeof q4);
    uint8_t q8[34] = {0x00, 0x40};  /* d = 2.0 */
    for (int j = 0; j < 32; j++) q8[2 + j] = (uint8_t)(j - 16);
    uint64_t ne_q8[1] = {32};
    gw_tensor(w, "token_embd.weight", G_Q8_0, 1, ne_q8, q8, sizeof q8);
}

static void test_valid_file(void) {
    gw w;
    float fv[6];
    gw_init(&w);
    build_valid(&w, fv);
    eng_gguf *g = NULL;
    eng_err err = {0};
    int rc = open_gw(&w, &g, &err);
    gw_free(&w);
    if (rc) T_FAIL("open: %d %s", rc, err.msg);
    T_CHECK(strstr(eng_gguf_path(g), "brisk_test_gguf"));
    int64_t v = 0;
    double f = 0;
    const char *s;
    size_t n;
    struct { const char *key; int64_t want; } iv[] = {
        {"t.u8", 200}, {"t.i8", -100}, {"t.u16", 60000}, {"t.i16", -30000},
        {"t.u32", 4000000000LL}, {"t.i32", -2000000000}, {"t.bool", 1},
        {"t.u64", (int64_t)1 << 40}, {"t.i64", -((int64_t)1 << 50)}};
    for (size_t i = 0; i < sizeof iv / sizeof *iv; i++) {
        T_CHECKF(!eng_gguf_get_int(g, iv[i].key, 1, &v, &err) && v == iv[i].want, "%s: %lld (%s)",
                 iv[i].key, (long long)v, err.msg);
        T_CHECK(eng_gguf_type(g, eng_gguf_find(g, iv[i].key)) != ENG_GGUF_ARR);
    }
    T_CHECK(!eng_gguf_get_float(g, "t.f32", 1, &f, &err) && f == (double)1e-5f);
    T_CHECK(!eng_gguf_get_float(g, "t.f64", 1, &f, &err) && f == 100000.0);
    T_CHECK(!eng_gguf_get_float(g, "t.u32", 1, &f, &err) && f == 4e9);   /* ints accepted */
    T_CHECK(!eng_gguf_get_str(g, "general.architecture", 1, &s, &n, &err) && n == 5 &&
            !memcmp(s, "llama", 5));
    T_CHECK(eng_gguf_type(g, eng_gguf_find(g, "t.f64")) == ENG_GGUF_F64);
    /* wrong types, missing keys, out-of-range values */
    rc = eng_gguf_get_int(g, "t.f32", 1, &v, &err);
    T_CHECKF(rc == ENG_EFORMAT && strstr(err.msg, "t.f32") && strstr(err.msg, "brisk_test_gguf"),
             "%s", err.msg);
    T_CHECK(eng_gguf_get_str(g, "t.u8", 1, &s, &n, &err) == ENG_EFORMAT && strstr(err.msg, "t.u8"));
    T_CHECK(eng_gguf_get_float(g, "t.toks", 1, &f, &err) == ENG_EFORMAT);
    T_CHECK(eng_gguf_get_float(g, "t.bool", 1, &f, &err) == ENG_EFORMAT);
    T_CHECK(eng_gguf_get_int(g, "t.u64big", 1, &v, &err) == ENG_EFORMAT &&
            strstr(err.msg, "t.u64big"));
    rc = eng_gguf_get_int(g, "no.such.key", 1, &v, &err);
    T_CHECKF(rc == ENG_EFORMAT && strstr(err.msg, "missing metadata no.such.key"), "%s", err.msg);
    v = 42;
    T_CHECK(!eng_gguf_get_int(g, "no.such.key", 0, &v, &err) && v == 42);
    T_CHECK(eng_gguf_find(g, "t.u") == -1 && eng_gguf_find(g, "t.u88") == -1);
    T_CHECK(eng_gguf_type(g, -1) == -1 && eng_gguf_type(g, 1000) == -1);
    /* arrays */
    int k = eng_gguf_find(g, "t.toks");
    T_CHECK(eng_gguf_type(g, k) == ENG_GGUF_ARR && eng_gguf_arr_type(g, k) == ENG_GGUF_STR &&
            eng_gguf_arr_len(g, k) == 4);
    for (int i = 0; i < 4; i++)
        T_CHECK(!eng_gguf_arr_str(g, k, (uint64_t)i, &s, &n) && n == strlen(toks[i]) &&
                !memcmp(s, toks[i], n));
    T_CHECK(eng_gguf_arr_str(g, k, 4, &s, &n) == ENG_EINVAL);
    T_CHECK(eng_gguf_arr_int(g, k, 0, &v) == ENG_EFORMAT);
    k = eng_gguf_find(g, "t.ints");
    for (int i = 0; i < 4; i++)
        T_CHECK(!eng_gguf_arr_int(g, k, (uint64_t)i, &v) && v == ints[i]);
    T_CHECK(!eng_gguf_arr_float(g, k, 2, &f) && f == 7.0);
    T_CHECK(eng_gguf_arr_str(g, k, 0, &s, &n) == ENG_EFORMAT);
    k = eng_gguf_find(g, "t.floats");
    for (int i = 0; i < 3; i++)
        T_CHECK(!eng_gguf_arr_float(g, k, (uint64_t)i, &f) && f == floats[i]);
    T_CHECK(eng_gguf_arr_int(g, k, 0, &v) == ENG_EFORMAT);
    k = eng_gguf_find(g, "t.nested");
    T_CHECK(eng_gguf_arr_type(g, k) == ENG_GGUF_ARR && eng_gguf_arr_len(g, k) == 2);
    T_CHECK(eng_gguf_arr_int(g, k, 0, &v) == ENG_EFORMAT);
    T_CHECK(eng_gguf_arr_int(g, eng_gguf_find(g, "t.u8"), 0, &v) == ENG_EINVAL);
    T_CHECK(eng_gguf_arr_len(g, eng_gguf_find(g, "t.u8")) == 0 &&
            eng_gguf_arr_type(g, eng_gguf_find(g, "t.u8")) == -1);
    /* tensors: shapes outermost first, data where written */
    T_CHECK(eng_gguf_n_tensors(g) == 3);
    const eng_tensor *t = eng_gguf_find_tensor(g, "norm.weight");
    T_CHECK(t && t == eng_gguf_tensor(g, 0) && t->dtype == ENG_DT_F32 && t->ndim == 2 &&
            t->shape[0] == 2 && t->shape[1] == 3 && t->nbytes == 24 && !memcmp(t->data, fv, 24));
    t = eng_gguf_find_tensor(g, "blk.0.attn_q.weight");
    T_CHECK(t && t->dtype == ENG_DT_Q4_0 && t->shape[0] == 2 && t->shape[1] == 32 && t->nbytes == 36);
    if (t) {
        float y[64];
        eng_to_f32(t, y);
        T_CHECK(y[0] == -8.0f && y[15] == 7.0f && y[16] == 7.0f && y[31] == -8.0f);
        T_CHECK(y[32] == 4.0f && y[63] == 4.0f);
    }
    t = eng_gguf_find_tensor(g, "token_embd.weight");
    T_CHECK(t && t->dtype == ENG_DT_Q8_0 && t->ndim == 1 && t->shape[0] == 32 && t->nbytes == 34);
    if (t) {
        float y[32];
        eng_to_f32(t, y);
        T_CHECK(y[0] == -32.0f && y[31] == 30.0f);
    }
    T_CHECK(!eng_gguf_find_tensor(g, "blk.0.attn_k.weight") && !eng_gguf_tensor(g, 3));
    eng_gguf_close(g);
}

/* Version 2, a larger alignment and no tensors at all also load. */
static void test_valid_variants(void) {
    gw w;
    gw_init(&w);
    w.version = 2;
    w.align = 64;
    gw_u32(&w, "general.alignment", 64);
    float z[16] = {0};
    uint64_t ne[1] = {16};
    gw_tensor(&w, "a", G_F32, 1, ne, z, sizeof z);
    gw_tensor(&w, "b", G_F32, 1, ne, z, sizeof z);
    eng_gguf *g = NULL;
    eng_err err = {0};
    int rc = open_gw(&w, &g, &err);
    T_CHECKF(!rc, "%s", err.msg);
    if (g) {
        const eng_tensor *a = eng_gguf_find_tensor(g, "a"), *b = eng_gguf_find_tensor(g, "b");
        T_CHECK(a && b && (const uint8_t *)b->data - (const uint8_t *)a->data == 64);
        eng_gguf_close(g);
    }
    gw_free(&w);
    gw_init(&w);
    gw_str(&w, "general.name", "empty");
    rc = open_gw(&w, &g, &err);
    T_CHECKF(!rc && eng_gguf_n_tensors(g) == 0, "%s", err.msg);
    eng_gguf_close(g);
    gw_free(&w);
    T_CHECK(eng_gguf_open("/nonexistent/x.gguf", &g, &err) == ENG_EIO &&
            strstr(err.msg, "/nonexistent/x.gguf") && !g);
    T_CHECK(eng_gguf_open("/tmp", &g, &err) == ENG_EIO && strstr(err.msg, "/tmp"));
}

/* ------------------------------------------------------- malformed files */

/* Opens the image and expects code, with a message naming the file and
 * holding each of the words. */
static void expect_err(const char *what, const uint8_t *p, size_t n, int code, const char *w1,
                       const char *w2) {
    eng_gguf *g = NULL;
    eng_err err = {0};
    int rc = open_image(p, n, &g, &err);
    T_CHECKF(rc == code && !g, "%s: rc %d (want %d): %s", what, rc, code, err.msg);
    T_CHECKF(strstr(err.msg, "brisk_test_gguf"), "%s: message does not name the file: %s", what,
             err.msg);
    T_CHECKF(!w1 || strstr(err.msg, w1), "%s: message lacks '%s': %s", what, w1, err.msg);
    T_CHECKF(!w2 || strstr(err.msg, w2), "%s: message lacks '%s': %s", what, w2, err.msg);
    eng_gguf_close(g);
}

static void expect_gw(const char *what, const gw *w, int code, const char *w1, const char *w2) {
    size_t n;
    uint8_t *p = gw_image(w, &n);
    expect_err(what, p, n, code, w1, w2);
    free(p);
}

static void test_bad_header(void) {
    gw w;
    float fv[6];
    gw_init(&w);
    build_valid(&w, fv);
    size_t n;
    uint8_t *p = gw_image(&w, &n);
    gw_free(&w);
    p[0] = 'X';
    expect_err("magic", p, n, ENG_EFORMAT, "magic", NULL);
    p[0] = 'G';
    p[4] = 1;
    expect_err("v1", p, n, ENG_EUNSUPPORTED, "version 1", NULL);
    p[4] = 4;
    expect_err("v4", p, n, ENG_EUNSUPPORTED, "version 4", NULL);
    p[4] = 0, p[7] = 3;
    expect_err("big-endian", p, n, ENG_EUNSUPPORTED, "big-endian", NULL);
    p[4] = 3, p[7] = 0;
    for (int i = 0; i < 8; i++) p[8 + i] = 0xff;
    expect_err("tensor count", p, n, ENG_EFORMAT, "count", "too large");
    for (int i = 0; i < 8; i++) p[8 + i] = 0;
    p[8] = 3;
    for (int i = 0; i < 8; i++) p[16 + i] = i < 3 ? 0xff : 0;
    expect_err("kv count", p, n, ENG_EFORMAT, "metadata", "too large");
    expect_err("empty", p, 0, ENG_EFORMAT, "magic", NULL);
    expect_err("short", p, 10, ENG_EFORMAT, "truncated", NULL);
    free(p);
}

static void test_bad_metadata(void) {
    gw w;
    gw_init(&w);
    gw_str(&w, "general.name", "x");
    gw_u32(&w, "general.name", 3);
    expect_gw("duplicate key", &w, ENG_EFORMAT, "general.name", "twice");
    gw_free(&w);

    gw_init(&w);
    kv_head(&w, "k.str", ENG_GGUF_STR);
    put_le(&w.kv, 1000, 8);
    eng_buf_add(&w.kv, "abc", 3);
    expect_gw("string length", &w, ENG_EFORMAT, "k.str", "past the end");
    gw_free(&w);

    gw_init(&w);
    kv_head(&w, "k.type", 13);
    put_le(&w.kv, 0, 8);
    expect_gw("value type", &w, ENG_EFORMAT, "k.type", "unknown value type 13");
    gw_free(&w);

    gw_init(&w);
    kv_head(&w, "k.arr", ENG_GGUF_ARR);
    put_le(&w.kv, 77, 4);
    put_le(&w.kv, 0, 8);
    expect_gw("array type", &w, ENG_EFORMAT, "k.arr", "unknown array element type 77");
    gw_free(&w);

    gw_init(&w);
    kv_head(&w, "k.arr", ENG_GGUF_ARR);
    put_le(&w.kv, ENG_GGUF_U32, 4);
    put_le(&w.kv, (uint64_t)1 << 61, 8);
    put_le(&w.kv, 0, 8);
    expect_gw("array length", &w, ENG_EFORMAT, "k.arr", "too large");
    gw_free(&w);

    gw_init(&w);
    gw_scalar(&w, "k.bool", ENG_GGUF_BOOL, 2, 1);
    expect_gw("bool", &w, ENG_EFORMAT, "k.bool", "neither 0 nor 1");
    gw_free(&w);

    gw_init(&w);
    kv_head(&w, "k.deep", ENG_GGUF_ARR);
    for (int i = 0; i < 12; i++) {
        put_le(&w.kv, ENG_GGUF_ARR, 4);
        put_le(&w.kv, 1, 8);
    }
    put_le(&w.kv, ENG_GGUF_U8, 4);
    put_le(&w.kv, 0, 8);
    expect_gw("nesting", &w, ENG_EFORMAT, "k.deep", "nested");
    gw_free(&w);

    gw_init(&w);
    kv_head(&w, "", ENG_GGUF_U8);
    put_le(&w.kv, 0, 1);
    expect_gw("empty key", &w, ENG_EFORMAT, "key", "empty");
    gw_free(&w);

    const uint32_t aligns[] = {48, 0};
    for (int i = 0; i < 2; i++) {
        gw_init(&w);
        gw_u32(&w, "general.alignment", aligns[i]);
        expect_gw("alignment", &w, ENG_EFORMAT, "general.alignment", "power of two");
        gw_free(&w);
    }
    gw_init(&w);
    gw_str(&w, "general.alignment", "32");
    expect_gw("alignment type", &w, ENG_EFORMAT, "general.alignment", "string");
    gw_free(&w);
}

/* One tensor info with the given fields and 64 bytes of data. */
static void one_tensor(gw *w, const char *name, uint32_t type, int nd, const uint64_t *ne,
                       uint64_t offset) {
    gw_init(w);
    gw_tinfo(w, name, type, nd, ne, offset);
    uint8_t z[64] = {0};
    eng_buf_add(&w->data, (const char *)z, sizeof z);
}

static void test_bad_tensors(void) {
    gw w;
    static const uint64_t ne1[1] = {16}, ne0[2] = {16, 0}, big[3] = {1u << 31, 1u << 31, 1u << 31};
    static const uint64_t ne5[5] = {1, 1, 1, 1, 1}, ne48[1] = {48}, ne8[1] = {8};
    static const struct {
        const char *name;
        uint32_t type;
        int nd;
        const uint64_t *ne;
        uint64_t offset;
        int code;
        const char *w1, *w2;
    } cases[] = {
        {"t.unk", 99, 1, ne1, 0, ENG_EFORMAT, "t.unk", "unknown tensor type 99"},
        {"t.q2k", G_Q2_K, 1, ne1, 0, ENG_EUNSUPPORTED, "t.q2k", "Q2_K"},
        {"t.zero", G_F32, 2, ne0, 0, ENG_EFORMAT, "t.zero", "dim 1 is 0"},
        {"t.big", G_F32, 3, big, 0, ENG_EFORMAT, "t.big", "overflows"},
        {"t.five", G_F32, 5, ne5, 0, ENG_EFORMAT, "t.five", "5 dims"},
        {"t.q4", G_Q4_0, 1, ne48, 0, ENG_EFORMAT, "t.q4", "block size 32"},
        {"t.mis", G_F32, 1, ne8, 4, ENG_EFORMAT, "t.mis", "alignment"},
        {"t.out", G_F32, 1, ne8, 64, ENG_EFORMAT, "t.out", "past the end"},
        {"t.far", G_F32, 1, ne8, (uint64_t)1 << 62, ENG_EFORMAT, "t.far", "past the end"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        one_tensor(&w, cases[i].name, cases[i].type, cases[i].nd, cases[i].ne, cases[i].offset);
        expect_gw(cases[i].name, &w, cases[i].code, cases[i].w1, cases[i].w2);
        gw_free(&w);
    }
    one_tensor(&w, "t.a", G_F32, 1, ne1, 0);
    gw_tinfo(&w, "t.b", G_F32, 1, ne8, 32);
    expect_gw("overlap", &w, ENG_EFORMAT, "overlaps", "t.a");
    gw_free(&w);
    one_tensor(&w, "t.same", G_F32, 1, ne8, 0);
    gw_tinfo(&w, "t.same", G_F32, 1, ne8, 32);
    expect_gw("duplicate name", &w, ENG_EFORMAT, "duplicate tensor name t.same", NULL);
    gw_free(&w);
    one_tensor(&w, "", G_F32, 1, ne8, 0);
    expect_gw("empty name", &w, ENG_EFORMAT, "name", "empty");
    gw_free(&w);
    char long_name[200];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    one_tensor(&w, long_name, G_F32, 1, ne8, 0);
    expect_gw("long name", &w, ENG_EFORMAT, "name", "longer");
    gw_free(&w);
    /* truncated inside the tensor infos and before the data section */
    one_tensor(&w, "t.cut", G_F32, 1, ne8, 0);
    size_t n;
    uint8_t *p = gw_image(&w, &n);
    expect_err("cut in info", p, 24 + w.kv.n + 35, ENG_EFORMAT, "truncated", "t.cut");
    expect_err("cut before data", p, 24 + w.ti.n + 2, ENG_EFORMAT, "t.cut", NULL);
    free(p);
    gw_free(&w);
}

/* --------------------------------------------------------------- fuzzing */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {   /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

/* Opens a mutated image; whatever loads is read through every getter. */
static int fuzz_one(const uint8_t *p, size_t n, const char *path, int *loaded) {
    if (write_bytes(path, p, n)) return 0;
    eng_gguf *g = NULL;
    eng_err err = {0};
    int rc = eng_gguf_open(path, &g, &err), ok = 1;
    if (rc == ENG_OK) {
        (*loaded)++;
        for (int k = 0; ; k++) {
            int ty = eng_gguf_type(g, k);
            if (ty < 0) break;
            int64_t v;
            double f;
            const char *s;
            size_t len;
            uint64_t m = eng_gguf_arr_len(g, k);
            for (uint64_t i = 0; i < m && i < 64; i++) {
                eng_gguf_arr_str(g, k, i, &s, &len);
                if (len) ok &= s[0] == s[0] && s[len - 1] == s[len - 1];
                eng_gguf_arr_int(g, k, i, &v);
                eng_gguf_arr_float(g, k, i, &f);
            }
        }
        int64_t v;
        double f;
        const char *s;
        size_t len;
        eng_gguf_get_int(g, "t.u32", 0, &v, NULL);
        eng_gguf_get_float(g, "t.f64", 0, &f, NULL);
        eng_gguf_get_str(g, "general.architecture", 0, &s, &len, NULL);
        for (int i = 0; i < eng_gguf_n_tensors(g); i++) {
            const eng_tensor *t = eng_gguf_tensor(g, i);
            float *y = malloc(sizeof(float) * (size_t)eng_tensor_elems(t));
            if (y) eng_to_f32(t, y);
            free(y);
            ok &= eng_gguf_find_tensor(g, t->name) == t;
        }
        eng_gguf_close(g);
    } else if (rc == ENG_EFORMAT || rc == ENG_EUNSUPPORTED) {
        if (!strstr(err.msg, path)) {
            printf("  message does not name the file: %s\n", err.msg);
            ok = 0;
        }
    } else {
        printf("  unexpected code %d: %s\n", rc, err.msg);
        ok = 0;
    }
    return ok;
}

static void test_fuzz(void) {
    gw w;
    float fv[6];
    gw_init(&w);
    build_valid(&w, fv);
    size_t n;
    uint8_t *base = gw_image(&w, &n), *p = malloc(n);
    /* positions of the u64 counts and lengths in the image */
    size_t fields[2 * MAX_FIELDS + 2];
    int nf = 0;
    fields[nf++] = 8;
    fields[nf++] = 16;
    for (int i = 0; i < w.n_kv_fields; i++) fields[nf++] = 24 + w.kv_fields[i];
    for (int i = 0; i < w.n_ti_fields; i++) fields[nf++] = 24 + w.kv.n + w.ti_fields[i];
    const char *path = path_for("fuzz");
    int cases = 0, bad = 0, loaded = 0;
    double t0 = eng_now_s();
    for (size_t cut = 0; cut < n; cut++, cases++)          /* truncation at every byte */
        bad += !fuzz_one(base, cut, path, &loaded);
    for (int i = 0; i < 2000; i++, cases++) {              /* 1-3 bit flips */
        memcpy(p, base, n);
        for (int k = (int)(rnd() % 3); k >= 0; k--) {
            uint64_t r = rnd();
            p[r % n] ^= (uint8_t)(1u << (r >> 32) % 8);
        }
        bad += !fuzz_one(p, n, path, &loaded);
    }
    for (int f = 0; f < nf; f++)                          /* counts and lengths */
        for (int k = 0; k < 16; k++, cases++) {
            memcpy(p, base, n);
            uint64_t v = 0, r = rnd();
            memcpy(&v, base + fields[f], 8);
            switch (k) {
            case 0: v = 0; break;
            case 1: v = UINT64_MAX; break;
            case 2: v = (uint64_t)1 << 63; break;
            case 3: v = v + 1; break;
            case 4: v = v - 1; break;
            case 5: v = n; break;
            case 6: v = (uint64_t)1 << 32; break;
            default: v = k < 11 ? r : r % (2 * n + 2); break;
            }
            for (int b = 0; b < 8; b++) p[fields[f] + b] = (uint8_t)(v >> (8 * b));
            bad += !fuzz_one(p, n, path, &loaded);
        }
    for (int i = 0; i < 1000; i++, cases++) {              /* random bytes anywhere */
        memcpy(p, base, n);
        for (int k = 0; k < 4; k++) p[rnd() % n] = (uint8_t)rnd();
        bad += !fuzz_one(p, n, path, &loaded);
    }
    unlink(path);
    printf("  %d cases on a %zu-byte file (%d loaded) in %.2f s\n", cases, n, loaded,
           eng_now_s() - t0);
    T_CHECKF(bad == 0, "%d cases misbehaved", bad);
    T_CHECK(cases > 3000 && loaded > 0);
    free(p);
    free(base);
    gw_free(&w);
}

/* -------------------------------------------------------- dequantization */

/* An f16 bit pattern with a random sign, a moderate exponent and any
 * mantissa; *val gets its value, computed here without eng_f16_to_f32. */
static uint16_t rand_half(double *val) {
    unsigned sign = (unsigned)(rnd() & 1), e = 5 + (unsigned)(rnd() % 16), man = (unsigned)(rnd() % 1024);
    *val = (sign ? -1 : 1) * ldexp(1024 + man, (int)e - 25);
    return (uint16_t)(sign << 15 | e << 10 | man);
}

static void put_half(uint8_t *p, uint16_t h) {
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* The nibble of element e (0..31) in a 32-element block's 16 quant bytes. */
static void set_nib32(uint8_t *q, int e, int v) {
    if (e < 16) q[e] = (uint8_t)((q[e] & 0xf0) | v);
    else q[e - 16] = (uint8_t)((q[e - 16] & 0x0f) | v << 4);
}

/* Packs 6-bit scale sc and min mn of sub-block j into the 12 bytes s. */
static void set_scale_k4(uint8_t *s, int j, int sc, int mn) {
    if (j < 4) {
        s[j] = (uint8_t)((s[j] & 0xc0) | sc);
        s[j + 4] = (uint8_t)((s[j + 4] & 0xc0) | mn);
    } else {
        s[j + 4] = (uint8_t)((sc & 0xf) | (mn & 0xf) << 4);
        s[j - 4] = (uint8_t)((s[j - 4] & 0x3f) | (sc >> 4) << 6);
        s[j] = (uint8_t)((s[j] & 0x3f) | (mn >> 4) << 6);
    }
}

#define NBLK 3

/* Builds NBLK blocks of type dt from random quants and scales, with the
 * expected value of each element in double. */
static size_t build_blocks(int dt, uint8_t *b, double *want) {
    int bs = eng_dt_block(dt), bb = eng_dt_block_bytes(dt);
    memset(b, 0, (size_t)bb * NBLK);
    for (int k = 0; k < NBLK; k++, b += bb, want += bs) {
        double d, m = 0;
        int q[256], sc[16], mn[16];
        switch (dt) {
        case ENG_DT_Q8_0:
            put_half(b, rand_half(&d));
            for (int e = 0; e < 32; e++) {
                q[e] = (int)(rnd() % 256) - 128;
                b[2 + e] = (uint8_t)q[e];
                want[e] = q[e] * d;
            }
            break;
        case ENG_DT_Q4_0: case ENG_DT_Q4_1:
            put_half(b, rand_half(&d));
            if (dt == ENG_DT_Q4_1) put_half(b + 2, rand_half(&m));
            for (int e = 0; e < 32; e++) {
                q[e] = (int)(rnd() % 16);
                set_nib32(b + (dt == ENG_DT_Q4_0 ? 2 : 4), e, q[e]);
                want[e] = dt == ENG_DT_Q4_0 ? (q[e] - 8) * d : q[e] * d + m;
            }
            break;
        case ENG_DT_Q5_0: case ENG_DT_Q5_1: {
            int o = dt == ENG_DT_Q5_0 ? 2 : 4;
            put_half(b, rand_half(&d));
            if (dt == ENG_DT_Q5_1) put_half(b + 2, rand_half(&m));
            for (int e = 0; e < 32; e++) {
                q[e] = (int)(rnd() % 32);
                set_nib32(b + o + 4, e, q[e] & 15);
                b[o + e / 8] |= (uint8_t)((q[e] >> 4) << (e % 8));
                want[e] = dt == ENG_DT_Q5_0 ? (q[e] - 16) * d : q[e] * d + m;
            }
            break;
        }
        case ENG_DT_Q4_K: case ENG_DT_Q5_K: {
            double dmin;
            put_half(b, rand_half(&d));
            put_half(b + 2, rand_half(&dmin));
            for (int j = 0; j < 8; j++) {
                sc[j] = (int)(rnd() % 64);
                mn[j] = (int)(rnd() % 64);
                set_scale_k4(b + 4, j, sc[j], mn[j]);
            }
            uint8_t *qh = b + 16, *qs = b + (dt == ENG_DT_Q4_K ? 16 : 48);
            for (int e = 0; e < 256; e++) {
                int sb = e / 32, l = e % 32;
                q[e] = (int)(rnd() % (dt == ENG_DT_Q4_K ? 16 : 32));
                uint8_t *byte = &qs[(sb / 2) * 32 + l];
                *byte |= (uint8_t)((q[e] & 15) << (sb % 2 ? 4 : 0));
                if (dt == ENG_DT_Q5_K) qh[l] |= (uint8_t)((q[e] >> 4) << sb);
                want[e] = d * sc[sb] * q[e] - dmin * mn[sb];
            }
            break;
        }
        case ENG_DT_Q6_K: {
            put_half(b + 208, rand_half(&d));
            for (int j = 0; j < 16; j++) {
                sc[j] = (int)(rnd() % 256) - 128;
                b[192 + j] = (uint8_t)sc[j];
            }
            for (int e = 0; e < 256; e++) {
                int h = e / 128, p = e % 128, l = p % 32, grp = p / 32;
                q[e] = (int)(rnd() % 64);
                b[h * 64 + l + (grp & 1) * 32] |= (uint8_t)((q[e] & 15) << (grp >> 1) * 4);
                b[128 + h * 32 + l] |= (uint8_t)((q[e] >> 4) << 2 * grp);
                want[e] = d * sc[e / 16] * (q[e] - 32);
            }
            break;
        }
        }
    }
    return (size_t)bb * NBLK;
}

static void test_dequant_known(void) {
    static const int types[] = {ENG_DT_Q8_0, ENG_DT_Q4_0, ENG_DT_Q4_1, ENG_DT_Q5_0,
                                ENG_DT_Q5_1, ENG_DT_Q4_K, ENG_DT_Q5_K, ENG_DT_Q6_K};
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        int dt = types[ti], bs = eng_dt_block(dt);
        for (int rep = 0; rep < 20; rep++) {
            static uint8_t buf[NBLK * 256 + 8];
            double want[NBLK * 256];
            float got[NBLK * 256];
            /* data one byte off alignment: blocks may lie anywhere in a mapping */
            eng_tensor t = {.dtype = dt, .ndim = 1, .shape = {NBLK * bs, 1, 1, 1}, .data = buf + 1};
            t.nbytes = build_blocks(dt, buf + 1, want);
            eng_to_f32(&t, got);
            double worst = 0;
            for (int e = 0; e < NBLK * bs; e++) {
                /* one rounding to float at most per product and sum */
                double tol = fabs(want[e]) * 0x1p-22 + 1e-30;
                double dif = fabs(got[e] - want[e]);
                if (dif > tol * 4 && dif > worst) worst = dif;
            }
            T_CHECKF(worst == 0, "%s: element off by %g", eng_dt_name(dt), worst);
        }
    }
    T_CHECK(eng_dt_block(ENG_DT_Q6_K) == 256 && eng_dt_block_bytes(ENG_DT_Q6_K) == 210);
    T_CHECK(eng_dt_block(ENG_DT_F32) == 1 && eng_dt_block_bytes(ENG_DT_BF16) == 2);
}

/* quant_block.h's runs of eight give every element of every type bit for
 * bit as the block functions do (the GPU's dequantization runs the former,
 * the CPU's the latter). */
static void test_dequant_elements(void) {
    static const int types[] = {ENG_DT_Q8_0, ENG_DT_Q4_0, ENG_DT_Q4_1, ENG_DT_Q5_0,
                                ENG_DT_Q5_1, ENG_DT_Q4_K, ENG_DT_Q5_K, ENG_DT_Q6_K};
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const int dt = types[ti], bs = eng_dt_block(dt), bb = eng_dt_block_bytes(dt);
        int diff = 0;
        for (int rep = 0; rep < 20; rep++) {
            static uint8_t buf[NBLK * 256 + 8];
            double want[NBLK * 256];
            float got[NBLK * 256], v[8];
            eng_tensor t = {.dtype = dt, .ndim = 1, .shape = {NBLK * bs, 1, 1, 1}, .data = buf + 1};
            t.nbytes = build_blocks(dt, buf + 1, want);
            eng_to_f32(&t, got);
            for (int e = 0; e < NBLK * bs; e += 8) {
                const uint8_t *b = buf + 1 + (size_t)(e / bs) * bb;
                if (bs == 256) {
                    eng_qb_run8_k(dt, b, e % bs, v);
                } else {
                    const int one = dt == ENG_DT_Q4_1 || dt == ENG_DT_Q5_1;
                    const int five = dt == ENG_DT_Q5_0 || dt == ENG_DT_Q5_1;
                    eng_qb_run8_32(dt, b, b + 2 + 2 * one, b + 2 + 2 * one + 4 * five, e % bs, v);
                }
                diff += memcmp(v, &got[e], sizeof v) != 0;
            }
        }
        T_CHECKF(diff == 0, "%s: %d runs of 8 differ from the block function's", eng_dt_name(dt), diff);
    }
}

/* eng_qb_act_q16_bytes (the one-row GEMV's staging) gives eng_qb_act_q16's
 * q1, q2 as two's-complement bytes: groups of 16 over magnitudes 1e-10 to
 * 1e10 with zeros, each group's largest element itself, a group of zeros,
 * and values whose t = v id falls on a half (ties go to even both ways;
 * |t| <= 127 as for any element of a group). */
static void test_act_q16_bytes(void) {
    uint64_t s = 0x9e3779b97f4a7c15ull;
    long n = 0, bad = 0;
    for (int g = 0; g < 200000; g++) {
        float v[16], amax = 0.f;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        const float scale = powf(10.f, (float)((int)(s >> 40) % 2001 - 1000) / 100.f);
        for (int k = 0; k < 16; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            v[k] = (s >> 60) == 0 ? 0.f : ((float)(s >> 40) / (float)(1 << 24) * 2.f - 1.f) * scale;
            if (g == 0) v[k] = 0.f;
            amax = fmaxf(amax, fabsf(v[k]));
        }
        const float id = amax > 0.f ? 127.f / amax : 0.f;
        for (int k = 0; k < 18; k++) {
            /* k 16, 17: t on a half, and t's fraction a half of 1/254 */
            const float x = k < 16 ? v[k] : id > 0.f ? (k == 16 ? (float)(g % 254 - 127) + 0.5f
                                                                : 3.f + (2 * (g % 127) + 1) / 508.f) / id : 0.f;
            float q1, q2;
            uint32_t b1, b2;
            eng_qb_act_q16(x, id, &q1, &q2);
            eng_qb_act_q16_bytes(x, id, &b1, &b2);
            n++;
            bad += (int8_t)(b1 & 0xff) != (int)q1 || (int8_t)(b2 & 0xff) != (int)q2;
        }
    }
    T_CHECKF(bad == 0, "eng_qb_act_q16_bytes: %ld of %ld elements differ from eng_qb_act_q16", bad, n);
}

static int dt_by_name(const char *s) {
    for (int dt = 0; dt < ENG_DT_COUNT; dt++)
        if (!strcmp(eng_dt_name(dt), s)) return dt;
    return -1;
}

static void test_dequant_python(void) {
    char *txt = NULL;
    const char *fx = "tests/fixtures/gguf_quants.json";
    eng_err err = {0};
    if (eng_read_file(fx, 0, &txt, NULL, &err)) T_FAIL("%s", err.msg);
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    if (!j) T_FAIL("%s: not JSON", fx);
    int types = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, j) {
        int dt = dt_by_name(e->string);
        const cJSON *hex = cJSON_GetObjectItem(e, "hex"), *bits = cJSON_GetObjectItem(e, "bits");
        T_CHECKF(dt >= 0 && cJSON_IsString(hex) && cJSON_IsArray(bits), "%s", e->string);
        if (dt < 0 || !cJSON_IsString(hex)) continue;
        size_t nb = strlen(hex->valuestring) / 2, ne = (size_t)cJSON_GetArraySize(bits);
        uint8_t *raw = malloc(nb + 1);
        float *got = malloc(sizeof(float) * ne);
        for (size_t i = 0; i < nb; i++) sscanf(hex->valuestring + 2 * i, "%2hhx", &raw[i + 1]);
        eng_tensor t = {.dtype = dt, .ndim = 1, .shape = {(int64_t)ne, 1, 1, 1},
                        .data = raw + 1, .nbytes = nb};
        T_CHECKF(nb / eng_dt_block_bytes(dt) * eng_dt_block(dt) == ne, "%s sizes", e->string);
        eng_to_f32(&t, got);
        size_t i = 0, diff = 0;
        const cJSON *b;
        cJSON_ArrayForEach(b, bits) {
            uint32_t u;
            memcpy(&u, &got[i++], 4);
            if (u != (uint32_t)b->valuedouble) diff++;
        }
        T_CHECKF(diff == 0, "%s: %zu of %zu floats differ from gguf.quants", e->string, diff, ne);
        types++;
        free(raw);
        free(got);
    }
    T_CHECKF(types == 10, "%d types in %s", types, fx);
    cJSON_Delete(j);
}

int main(void) {
    T_RUN(test_valid_file);
    T_RUN(test_valid_variants);
    T_RUN(test_bad_header);
    T_RUN(test_bad_metadata);
    T_RUN(test_bad_tensors);
    T_RUN(test_fuzz);
    T_RUN(test_dequant_known);
    T_RUN(test_dequant_elements);
    T_RUN(test_act_q16_bytes);
    T_RUN(test_dequant_python);
    T_DONE();
}
