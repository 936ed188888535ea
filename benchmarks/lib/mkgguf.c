/* mkgguf.c — random-weight GGUF models (see mkgguf.h).  The header
 * (metadata and tensor infos) is built in memory; the tensor data, up to
 * gigabytes, is generated and written block by block. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "eng.h"
#include "internal.h"
#include "mkgguf.h"

#define ALIGN 32

/* ggml's type numbers, as the file stores them */
enum { G_F32 = 0, G_Q4_0 = 2, G_Q4_1 = 3, G_Q5_0 = 6, G_Q5_1 = 7, G_Q8_0 = 8, G_Q4_K = 12,
       G_Q5_K = 13, G_Q6_K = 14 };
/* metadata value types */
enum { V_U32 = 4, V_I32 = 5, V_F32 = 6, V_STR = 8, V_ARR = 9 };

static const struct { int dt, g; } types[] = {
    {ENG_DT_F32, G_F32},   {ENG_DT_Q4_0, G_Q4_0}, {ENG_DT_Q4_1, G_Q4_1}, {ENG_DT_Q5_0, G_Q5_0},
    {ENG_DT_Q5_1, G_Q5_1}, {ENG_DT_Q8_0, G_Q8_0}, {ENG_DT_Q4_K, G_Q4_K}, {ENG_DT_Q5_K, G_Q5_K},
    {ENG_DT_Q6_K, G_Q6_K},
};

static int ggml_type(int dt) {
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (types[i].dt == dt) return types[i].g;
    return -1;
}

int mkg_format(const char *name) {
    return !strcmp(name, "q8_0") ? MKG_Q8_0 : !strcmp(name, "q4_0") ? MKG_Q4_0
         : !strcmp(name, "q4_k_m") ? MKG_Q4_K_M : -1;
}

/* ------------------------------------------------------------- blocks */

/* f32 to f16 bits, round to nearest even, subnormals included. */
static uint16_t f16_bits(float f) {
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    float a = fabsf(f);
    if (!(a < 65520.0f)) return sign | 0x7c00;
    if (a < 6.103515625e-05f) return sign | (uint16_t)lrintf(a * 16777216.0f);   /* 2^-24 steps */
    int e;
    float m = frexpf(a, &e);   /* a = m 2^e, m in [0.5, 1) */
    long mant = lrintf((m * 2.0f - 1.0f) * 1024.0f);
    int E = e - 1 + 15;
    if (mant == 1024) { mant = 0; E++; }
    if (E >= 31) return sign | 0x7c00;
    return sign | (uint16_t)(E << 10 | mant);
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

static void rand_bytes(uint8_t *p, size_t n, uint64_t *rng) {
    while (n) {
        uint64_t v = eng_rng_next(rng);
        for (int i = 0; i < 8 && n; i++, n--) *p++ = (uint8_t)(v >> (8 * i));
    }
}

/* Scale and min fields of a Q4_K / Q5_K block: sub-block j gets scale
 * sc[j] and min mn[j] (6 bits each), packed as engine/quant.c unpacks them. */
static void pack_k4_scales(const int *sc, const int *mn, uint8_t *s) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        s[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
        s[j + 8] = (uint8_t)((sc[j + 4] & 0xf) | (mn[j + 4] & 0xf) << 4);
    }
}

/* One block of random quants.  The integer parts are uniform, so their
 * standard deviations are known (int8: 73.9, 4 bits: 4.61, 5 bits: 9.23,
 * 6 bits: 18.5); the scale makes the weights' sigma, and the formats with
 * a min (Q4_1, Q5_1, the K formats) get one that centres them on zero.
 * K formats: 6-bit sub-block scales 32..63 (mean 47.5), Q6_K's int8
 * scales +-32..127 (mean magnitude 79.5). */
static void random_block(int dt, uint8_t *b, float sigma, uint64_t *rng) {
    int bytes = eng_dt_block_bytes(dt);
    rand_bytes(b, (size_t)bytes, rng);
    switch (dt) {
    case ENG_DT_Q8_0: put16(b, f16_bits(sigma / 73.9f)); break;
    case ENG_DT_Q4_0: put16(b, f16_bits(sigma / 4.61f)); break;
    case ENG_DT_Q5_0: put16(b, f16_bits(sigma / 9.23f)); break;
    case ENG_DT_Q4_1:
    case ENG_DT_Q5_1: {
        float sd = dt == ENG_DT_Q4_1 ? 4.61f : 9.23f, mid = dt == ENG_DT_Q4_1 ? 7.5f : 15.5f;
        float d = eng_f16_to_f32(f16_bits(sigma / sd));
        put16(b, f16_bits(d));
        put16(b + 2, f16_bits(-mid * d));
        break;
    }
    case ENG_DT_Q4_K:
    case ENG_DT_Q5_K: {
        /* dmin = 8d (Q4_K) or 16d (Q5_K), min ~ scale * mid / that factor */
        const int five = dt == ENG_DT_Q5_K, f = five ? 16 : 8;
        float d = sigma / ((five ? 9.23f : 4.61f) * 47.5f);
        put16(b, f16_bits(d));
        put16(b + 2, f16_bits(d * (float)f));
        int sc[8], mn[8];
        for (int j = 0; j < 8; j++) {
            sc[j] = 32 + (int)(eng_rng_next(rng) % 32);
            mn[j] = five ? (sc[j] * 31 + 16) / 32 : (sc[j] * 15 + 8) / 16;
        }
        pack_k4_scales(sc, mn, b + 4);
        break;
    }
    case ENG_DT_Q6_K: {
        for (int j = 0; j < 16; j++) {
            uint64_t r = eng_rng_next(rng);
            int v = 32 + (int)(r % 96);
            b[192 + j] = (uint8_t)(int8_t)(r >> 32 & 1 ? -v : v);
        }
        put16(b + 208, f16_bits(sigma / (18.5f * 79.5f)));
        break;
    }
    }
}

int mkg_random_blocks(int dt, void *out, size_t n, float sigma, uint64_t *rng) {
    if (dt < ENG_DT_Q8_0 || dt > ENG_DT_Q6_K) return -1;
    uint8_t *p = out;
    for (size_t i = 0; i < n; i++) random_block(dt, p + i * eng_dt_block_bytes(dt), sigma, rng);
    return 0;
}

/* ------------------------------------------------------------ tensors */

enum { W_EMB, W_OUT, W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN, W_NORM, W_BIAS };

typedef struct tdesc {
    char name[64];
    int dt, kind;
    long rows, cols;    /* cols 0: a vector of rows */
    uint64_t offset;    /* in the data section */
} tdesc;

/* llama.cpp's use_more_bits: the first and last eighth and every third
 * layer between them get more bits in Q4_K_M. */
static int more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static int pick_type(int format, int kind, int layer, int n_layers, int tied, long cols) {
    int dt;
    int out = kind == W_OUT || (kind == W_EMB && tied);
    if (format == MKG_Q8_0) dt = ENG_DT_Q8_0;
    else if (out) dt = ENG_DT_Q6_K;
    else if (format == MKG_Q4_0) dt = ENG_DT_Q4_0;
    else dt = (kind == W_V || kind == W_DOWN) && more_bits(layer, n_layers) ? ENG_DT_Q6_K
                                                                            : ENG_DT_Q4_K;
    if (cols % 256 && dt == ENG_DT_Q4_K) dt = ENG_DT_Q5_0;
    if (cols % 256 && dt == ENG_DT_Q6_K) dt = ENG_DT_Q8_0;
    return dt;
}

static uint64_t tensor_bytes(const tdesc *t) {
    if (t->dt == ENG_DT_F32) return (uint64_t)t->rows * (t->cols ? t->cols : 1) * 4;
    return (uint64_t)t->rows * (uint64_t)(t->cols / eng_dt_block(t->dt)) *
           (uint64_t)eng_dt_block_bytes(t->dt);
}

static int add_t(tdesc *t, int n, const char *name, int kind, long rows, long cols, int dt) {
    snprintf(t[n].name, sizeof t[n].name, "%s", name);
    t[n].kind = kind;
    t[n].rows = rows;
    t[n].cols = cols;
    t[n].dt = dt;
    return n + 1;
}

static int list_tensors(const mkg_shape *s, int format, tdesc *t) {
    const int hd = s->head_dim ? s->head_dim : s->hidden / s->heads;
    const long H = s->hidden, Q = (long)s->heads * hd, KV = (long)s->kv_heads * hd, I = s->inter;
    const int qwen2 = !strcmp(s->arch, "qwen2"), gemma = !strcmp(s->arch, "gemma3");
    const int qk = gemma || !strcmp(s->arch, "qwen3"), L = s->layers;
    int n = 0;
    char nm[64];
    n = add_t(t, n, "token_embd.weight", W_EMB, s->vocab, H,
              pick_type(format, W_EMB, 0, L, s->tied, H));
    n = add_t(t, n, "output_norm.weight", W_NORM, H, 0, ENG_DT_F32);
    if (!s->tied)
        n = add_t(t, n, "output.weight", W_OUT, s->vocab, H, pick_type(format, W_OUT, 0, L, 0, H));
    for (int l = 0; l < L; l++) {
        const struct { const char *s; int kind; long r, c; int on; } w[] = {
            {"attn_norm.weight", W_NORM, H, 0, 1},
            {"attn_q.weight", W_Q, Q, H, 1},
            {"attn_k.weight", W_K, KV, H, 1},
            {"attn_v.weight", W_V, KV, H, 1},
            {"attn_q.bias", W_BIAS, Q, 0, qwen2},
            {"attn_k.bias", W_BIAS, KV, 0, qwen2},
            {"attn_v.bias", W_BIAS, KV, 0, qwen2},
            {"attn_q_norm.weight", W_NORM, hd, 0, qk},
            {"attn_k_norm.weight", W_NORM, hd, 0, qk},
            {"attn_output.weight", W_O, H, Q, 1},
            {"post_attention_norm.weight", W_NORM, H, 0, gemma},
            {"ffn_norm.weight", W_NORM, H, 0, 1},
            {"ffn_gate.weight", W_GATE, I, H, 1},
            {"ffn_up.weight", W_UP, I, H, 1},
            {"ffn_down.weight", W_DOWN, H, I, 1},
            {"post_ffw_norm.weight", W_NORM, H, 0, gemma},
        };
        for (size_t i = 0; i < sizeof w / sizeof *w; i++) {
            if (!w[i].on) continue;
            snprintf(nm, sizeof nm, "blk.%d.%s", l, w[i].s);
            int dt = w[i].c ? pick_type(format, w[i].kind, l, L, s->tied, w[i].c) : ENG_DT_F32;
            n = add_t(t, n, nm, w[i].kind, w[i].r, w[i].c, dt);
        }
    }
    return n;
}

/* ------------------------------------------------------------- header */

static void le(eng_buf *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) eng_buf_addc(b, (char)(v >> (8 * i)));
}
static void str(eng_buf *b, const char *s, size_t n) {
    le(b, n, 8);
    eng_buf_add(b, s, n);
}
static void kv_u32(eng_buf *b, const char *k, uint32_t v) {
    str(b, k, strlen(k)); le(b, V_U32, 4); le(b, v, 4);
}
static void kv_f32(eng_buf *b, const char *k, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    str(b, k, strlen(k)); le(b, V_F32, 4); le(b, u, 4);
}
static void kv_str(eng_buf *b, const char *k, const char *v) {
    str(b, k, strlen(k)); le(b, V_STR, 4); str(b, v, strlen(v));
}

/* GPT-2's byte-level alphabet: byte b as a code point, UTF-8 into out
 * (printable Latin-1 bytes are themselves, the rest 256 + n in order). */
static int byte_char(int b, char *out) {
    int cp = b, n = 0;
    if (!((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))) {
        cp = 256;
        for (int i = 0; i < b; i++)
            cp += !((i >= '!' && i <= '~') || (i >= 0xa1 && i <= 0xac) || (i >= 0xae && i <= 0xff));
    }
    if (cp < 0x80) out[n++] = (char)cp;
    else { out[n++] = (char)(0xc0 | cp >> 6); out[n++] = (char)(0x80 | (cp & 0x3f)); }
    out[n] = 0;
    return n;
}

enum { TOK_EOT = 256, TOK_IM_START, TOK_IM_END, TOK_FIRST_PAD };

static void tokenizer(eng_buf *b, int vocab) {
    char tok[32];
    kv_str(b, "tokenizer.ggml.model", "gpt2");
    kv_str(b, "tokenizer.ggml.pre", "qwen2");
    str(b, "tokenizer.ggml.tokens", 21);
    le(b, V_ARR, 4); le(b, V_STR, 4); le(b, (uint64_t)vocab, 8);
    static const char *const ctl[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    for (int i = 0; i < vocab; i++) {
        if (i < 256) byte_char(i, tok);
        else if (i < TOK_FIRST_PAD) snprintf(tok, sizeof tok, "%s", ctl[i - 256]);
        else snprintf(tok, sizeof tok, "[PAD%d]", i);
        str(b, tok, strlen(tok));
    }
    str(b, "tokenizer.ggml.token_type", 25);
    le(b, V_ARR, 4); le(b, V_I32, 4); le(b, (uint64_t)vocab, 8);
    for (int i = 0; i < vocab; i++) le(b, i >= 256 && i < TOK_FIRST_PAD ? 3 : 1, 4);
    str(b, "tokenizer.ggml.merges", 21);
    le(b, V_ARR, 4); le(b, V_STR, 4); le(b, 0, 8);
    kv_u32(b, "tokenizer.ggml.eos_token_id", TOK_IM_END);
    kv_str(b, "tokenizer.chat_template",
           "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
           "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
}

static uint64_t metadata(eng_buf *b, const mkg_shape *s) {
    const char *a = s->arch;
    char k[96];
    const int hd = s->head_dim ? s->head_dim : s->hidden / s->heads;
    uint64_t n = 0;
#define U(name, v) (snprintf(k, sizeof k, "%s.%s", a, name), kv_u32(b, k, (uint32_t)(v)), n++)
    kv_str(b, "general.architecture", a), n++;
    U("block_count", s->layers);
    U("context_length", 32768);
    U("embedding_length", s->hidden);
    U("feed_forward_length", s->inter);
    U("attention.head_count", s->heads);
    U("attention.head_count_kv", s->kv_heads);
    U("attention.key_length", hd);
    U("attention.value_length", hd);
    U("rope.dimension_count", hd);
    if (s->window) U("attention.sliding_window", s->window);
#undef U
    snprintf(k, sizeof k, "%s.rope.freq_base", a);
    kv_f32(b, k, (float)s->theta), n++;
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", a);
    kv_f32(b, k, 1e-6f), n++;
    tokenizer(b, s->vocab);
    return n + 7;   /* tokenizer: model, pre, tokens, token_type, merges, eos, template */
}

/* -------------------------------------------------------------- write */

static int fail(char *msg, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return -1;
}

/* Tensor t's data: random blocks (sigma 1/sqrt(cols)), or f32 vectors:
 * norms 1 + 0.1u (Gemma's file norms are the 1 + w it multiplies by),
 * biases 0.1u, u uniform in [-1, 1). */
static int write_data(FILE *f, const tdesc *t, uint64_t *rng, uint8_t *buf, size_t cap) {
    if (t->dt == ENG_DT_F32) {
        float *v = (float *)buf;
        for (long i = 0; i < t->rows; i++)
            v[i] = (t->kind == W_NORM ? 1.0f : 0.0f) + 0.1f * (float)(2 * eng_rng_uniform(rng) - 1);
        return fwrite(v, 4, (size_t)t->rows, f) == (size_t)t->rows ? 0 : -1;
    }
    const int bb = eng_dt_block_bytes(t->dt);
    const float sigma = 1.0f / sqrtf((float)t->cols);
    uint64_t left = tensor_bytes(t) / (uint64_t)bb;
    const size_t per = cap / (size_t)bb;
    while (left) {
        size_t k = left < per ? (size_t)left : per;
        mkg_random_blocks(t->dt, buf, k, sigma, rng);
        if (fwrite(buf, (size_t)bb, k, f) != k) return -1;
        left -= k;
    }
    return 0;
}

int mkg_write(const char *path, const mkg_shape *s, int format, uint64_t seed, char *msg,
              size_t cap) {
    const int hd = s->head_dim ? s->head_dim : (s->heads ? s->hidden / s->heads : 0);
    if (format < MKG_Q8_0 || format > MKG_Q4_K_M)
        return fail(msg, cap, "unknown format %d", format);
    if (s->vocab < TOK_FIRST_PAD || s->hidden % 32 || s->inter % 32 || hd < 2 ||
        ((long)s->heads * hd) % 32 || s->layers < 1 || s->kv_heads < 1 || s->heads % s->kv_heads)
        return fail(msg, cap, "shape not writable: vocab >= %d, hidden, intermediate and "
                    "heads x head_dim multiples of 32, heads a multiple of kv heads", TOK_FIRST_PAD);
    tdesc *t = calloc(8 + (size_t)s->layers * 16, sizeof *t);
    eng_buf h = {0};
    uint8_t *buf = malloc(1 << 20);
    FILE *f = NULL;
    int rc = -1;
    if (!t || !buf) { fail(msg, cap, "out of memory"); goto done; }
    int n = list_tensors(s, format, t);
    /* header: magic, version, counts, metadata, tensor infos */
    eng_buf kv = {0};
    uint64_t n_kv = metadata(&kv, s);
    eng_buf_add(&h, "GGUF", 4);
    le(&h, 3, 4);
    le(&h, (uint64_t)n, 8);
    le(&h, n_kv, 8);
    eng_buf_add(&h, kv.p, kv.n);
    eng_buf_free(&kv);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        t[i].offset = off;
        off = (off + tensor_bytes(&t[i]) + ALIGN - 1) / ALIGN * ALIGN;
        str(&h, t[i].name, strlen(t[i].name));
        le(&h, t[i].cols ? 2 : 1, 4);
        if (t[i].cols) le(&h, (uint64_t)t[i].cols, 8);
        le(&h, (uint64_t)t[i].rows, 8);
        le(&h, (uint64_t)ggml_type(t[i].dt), 4);
        le(&h, t[i].offset, 8);
    }
    while (h.n % ALIGN) eng_buf_addc(&h, 0);
    if (h.oom) { fail(msg, cap, "out of memory"); goto done; }
    if (!(f = fopen(path, "wb"))) { fail(msg, cap, "cannot create %s", path); goto done; }
    if (fwrite(h.p, 1, h.n, f) != h.n) goto io;
    uint64_t pos = 0;
    static const uint8_t zero[ALIGN];
    for (int i = 0; i < n; i++) {
        if (fwrite(zero, 1, (size_t)(t[i].offset - pos), f) != t[i].offset - pos ||
            write_data(f, &t[i], &seed, buf, 1 << 20))
            goto io;
        pos = t[i].offset + tensor_bytes(&t[i]);
    }
    rc = 0;
io:
    if (f && fclose(f) && !rc) rc = -1;
    f = NULL;
    if (rc) fail(msg, cap, "cannot write %s", path);
done:
    if (f) fclose(f);
    eng_buf_free(&h);
    free(buf);
    free(t);
    return rc;
}
