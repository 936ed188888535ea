/* tok.c — BPE tokenizer read from a Hugging Face tokenizer.json or from a
 * GGUF file's tokenizer.ggml.* metadata, matching the `tokenizers` library's
 * encode (add_special_tokens=False) and decode.  Two kinds of BPE, one code
 * path:
 *   byte-level   (GPT-2 style: Qwen2/2.5/3, SmolLM2, Llama 3): the ByteLevel
 *                pre-tokenizer maps every byte to a character, so words are
 *                made of bytes;
 *   SentencePiece style (Gemma, Llama 2, Mistral): words are made of the
 *                text's characters, spaces written U+2581 ("▁") by a Replace
 *                normalizer or the Metaspace pre-tokenizer, and a character
 *                missing from the vocabulary becomes the <0xNN> tokens of
 *                its bytes (byte_fallback).
 * Both sources fill the same tables through the same functions (see
 * "building").
 *
 * Encoding runs the library's pipeline:
 *   1. split out added tokens that match the raw text (normalized: false);
 *   2. normalize the rest (NFC, Replace, Prepend);
 *   3. split out added tokens that match normalized text (normalized: true);
 *   4. pre-tokenize each remaining stretch (Split, Digits, Metaspace, ByteLevel);
 *   5. BPE each pre-token, merging the lowest-ranked pair first.
 * Byte-level vocabulary strings use GPT-2's byte-to-character mapping; they
 * are turned back into raw bytes at load time, so that kind works on bytes.
 * SentencePiece vocabulary strings are kept as written (with U+2581); what a
 * token decodes to (its piece) is worked out once at load time from the
 * decoder (Replace, ByteFallback, Fuse, Strip, Metaspace). */
#include <errno.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cJSON.h>
#include "eng.h"
#include "gguf.h"
#include "pretok.h"
#include "unicode.h"

enum { MAX_IDS = 1 << 24, MAX_STEPS = 16 };
enum { PT_SPLIT, PT_DIGITS, PT_BYTELEVEL, PT_METASPACE, PT_SPLIT_STR };
enum { NZ_NFC, NZ_REPLACE, NZ_PREPEND };
/* Split behaviours (tokenizers' SplitDelimiterBehavior) of PT_SPLIT_STR. */
enum { SB_REMOVED, SB_ISOLATED, SB_WITH_PREVIOUS, SB_WITH_NEXT };
/* Metaspace prepend schemes. */
enum { PS_NEVER, PS_FIRST, PS_ALWAYS };
/* Per-id flags. */
enum { TF_SPECIAL = 1, TF_BYTE = 2 };

/* Pre-tokenizer steps: PT_SPLIT (a = ENG_PT_* pattern), PT_DIGITS (a =
 * individual_digits), PT_BYTELEVEL (a = add_prefix_space, b = use_regex),
 * PT_METASPACE (a = prepend scheme, b = split), PT_SPLIT_STR (a = pattern's
 * offset in the pool, b = its length, c = behaviour). */
typedef struct pt_step { int kind, a, b, c; } pt_step;
/* Normalizer steps: NZ_REPLACE (every a turned into b), NZ_PREPEND (a before
 * non-empty text); strings in the pool. */
typedef struct nz_step { int kind; uint32_t a, na, b, nb; } nz_step;

static const char META[] = "\xe2\x96\x81";   /* U+2581, SentencePiece's space */

typedef struct added_tok {
    uint32_t off, len;          /* content, in the pool */
    int id;
    unsigned char first;        /* first byte of the content */
    unsigned char special, lstrip, rstrip, normalized, single_word;
} added_tok;

typedef struct vocab_slot { uint32_t off, len, hash; int32_t id; } vocab_slot;   /* len 0: empty */
typedef struct merge_slot { uint64_t key; int32_t rank, new_id; } merge_slot; /* key 0: empty */

struct eng_tok {
    int n_ids;                   /* one past the largest id */
    uint32_t *piece_off;         /* per id: what it decodes to, in the pool ... */
    int32_t *piece_len;          /* ... and its length, -1 for no token */
    uint32_t *key_off;           /* per id: the vocabulary string (SentencePiece */
    int32_t *key_len;            /* style; raw bytes for byte-level), -1: none */
    unsigned char *flags;        /* per id: TF_* */
    char *pool;
    size_t pool_len, pool_cap;
    vocab_slot *vocab;           /* raw bytes -> id, open addressing */
    uint32_t vocab_mask;
    merge_slot *merges;          /* (left id, right id) -> rank, merged id */
    uint32_t merge_mask;
    uint32_t *merge_class;       /* merges implied by the vocabulary (see merge_of), else NULL */
    int byte_id[256];            /* id of each one-byte vocabulary string, -1 if none */
    int chars;                   /* SentencePiece style (words of characters), else byte-level */
    int fallback_id[256];        /* byte_fallback: the <0xNN> token of each byte, else -1 */
    int unk_id, fuse_unk, ignore_merges;
    int bos_id;                  /* prepended by the prompt builder; -1: none (eng_tok_bos) */
    nz_step norm[MAX_STEPS];
    int n_norm;
    pt_step steps[MAX_STEPS];
    int n_steps;
    /* decoder (SentencePiece style; byte-level vocabularies decode to their
     * raw bytes): dec_from -> dec_to in every token (Replace, Metaspace),
     * dec_bytes (ByteFallback), dec_strip leading spaces of the whole text
     * (Strip after Fuse), dec_meta_first (Metaspace: the first token loses
     * its U+2581 altogether) */
    char dec_from[8], dec_to[8];
    int dec_bytes, dec_strip, dec_meta_first;
    added_tok *added;            /* sorted by first byte, longest first */
    int n_added;
    int added_first[257];        /* added[added_first[b] .. added_first[b+1]) start with b */
};

/* ------------------------------------------------------------ helpers */

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static uint64_t fnv(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static const uint64_t FNV0 = 1469598103934665603ull;

static uint32_t hash_bytes(const char *s, size_t n) { return (uint32_t)hash_u64(fnv(FNV0, s, n)); }

static uint32_t table_size(size_t n) {
    uint32_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    return cap;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves;
 * the other 68 bytes (controls, space, 0x7F-0xA0, soft hyphen) are given the
 * characters from U+0100 on, in byte order. */
static int bytelevel_char_to_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp < 0x100 || cp >= 0x144) return -1;
    uint32_t k = cp - 0x100;
    if (k <= 0x20) return (int)k;
    if (k < 67) return (int)(0x7F + k - 33);
    return 0xAD;
}

/* Raw bytes of a byte-level vocabulary string s[0..n) into out (room for n);
 * returns the length, or -1 if some character is not a byte-level one. */
static int bytelevel_unmap(const char *s, size_t n, char *out) {
    size_t i = 0;
    int k = 0;
    while (i < n) {
        uint32_t cp;
        i += (size_t)eng_utf8_next((const unsigned char *)s + i, n - i, &cp);
        int b = bytelevel_char_to_byte(cp);
        if (b < 0) return -1;
        out[k++] = (char)b;
    }
    return k;
}

/* Appends n bytes plus a NUL to the pool; returns the offset, or -1. */
static int64_t pool_add(eng_tok *t, const char *s, size_t n) {
    if (t->pool_len + n + 1 > t->pool_cap) {
        size_t cap = t->pool_cap ? t->pool_cap : 1 << 16;
        while (cap < t->pool_len + n + 1) cap *= 2;
        if (cap > UINT32_MAX) return -1;
        char *p = realloc(t->pool, cap);
        if (!p) return -1;
        t->pool = p;
        t->pool_cap = cap;
    }
    int64_t off = (int64_t)t->pool_len;
    memcpy(t->pool + off, s, n);
    t->pool[off + (int64_t)n] = 0;
    t->pool_len += n + 1;
    return off;
}

/* First occurrence of p[0..np) in s[0..n), np > 0, or NULL. */
static const char *find_bytes(const char *s, size_t n, const char *p, size_t np) {
    for (const char *q = s; (size_t)(q - s) + np <= n; q++) {
        q = memchr(q, p[0], n - np + 1 - (size_t)(q - s));
        if (!q) return NULL;
        if (!memcmp(q, p, np)) return q;
    }
    return NULL;
}

/* The slot of the key a[0..na) followed by b[0..nb), hash h: its own, or
 * the empty one where it would go. */
static vocab_slot *vocab_slot_for(const eng_tok *t, const char *a, size_t na, const char *b, size_t nb,
                                  uint32_t h) {
    for (uint32_t i = h & t->vocab_mask;; i = (i + 1) & t->vocab_mask) {
        vocab_slot *v = &t->vocab[i];
        if (!v->len || (v->hash == h && v->len == na + nb && !memcmp(t->pool + v->off, a, na) &&
                        !memcmp(t->pool + v->off + na, b, nb)))
            return v;
    }
}

/* Id of the token whose key is a[0..na) then b[0..nb), or -1. */
static int vocab_get2(const eng_tok *t, const char *a, size_t na, const char *b, size_t nb) {
    if (na + nb == 0 || !t->vocab) return -1;
    uint32_t h = (uint32_t)hash_u64(fnv(fnv(FNV0, a, na), b, nb));
    const vocab_slot *v = vocab_slot_for(t, a, na, b, nb, h);
    return v->len ? v->id : -1;
}

/* Id of the token whose key is s[0..n), or -1. */
static int vocab_get(const eng_tok *t, const char *s, size_t n) { return vocab_get2(t, s, n, "", 0); }

static const merge_slot *merge_get(const eng_tok *t, int a, int b) {
    uint64_t key = (uint64_t)(uint32_t)(a + 1) << 32 | (uint32_t)(b + 1);
    uint32_t i = (uint32_t)hash_u64(key) & t->merge_mask;
    for (;; i = (i + 1) & t->merge_mask) {
        const merge_slot *m = &t->merges[i];
        if (m->key == key) return m;
        if (!m->key) return NULL;
    }
}

/* ------------------------------------------------------------ building
 *
 * Both sources of a tokenizer, a tokenizer.json and the tokenizer.ggml.*
 * metadata of a GGUF file, fill an eng_tok through the tb_* functions, in
 * this order: the kind (t->chars) and, for SentencePiece style, the decoder
 * (tb_decoder), since each token's piece is worked out as it comes in;
 * tb_alloc (id count, vocabulary size); tb_vocab for every entry,
 * tb_vocab_done; tb_merges_alloc, tb_merge for every merge (rank =
 * position); tb_added_alloc, tb_added for every added token, tb_added_done;
 * then the normalizer steps (add_norm), the pre-tokenizer steps (add_step)
 * and tb_steps_done.  Encoding and decoding know nothing of where a
 * tokenizer came from. */

typedef struct loader {
    eng_tok *t;
    const char *path;
    eng_err *err;
    char *scratch;               /* for unmapping strings */
    size_t scratch_cap;
    /* Byte-level vocabulary and merge strings not made of byte-level
     * characters: 0 = kept for decoding only (the `tokenizers` library's
     * BPE never produces them from a tokenizer.json); 1 = they stand for
     * their own UTF-8 bytes (transformers respells such GGUF tokens into the
     * byte alphabet before building its BPE). */
    int respell;
    int byte_fallback;           /* SentencePiece style: the model's byte_fallback */
    const char *merges_key;      /* where merges come from, for messages */
} loader;

static int fmt_err(loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fmt_err(loader *L, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return eng_seterr(L->err, ENG_EFORMAT, "%s: %s", L->path, msg);
}

static int nomem(loader *L) {
    return eng_seterr(L->err, ENG_ENOMEM, "%s: out of memory", L->path);
}

static int unsupported(loader *L, const char *what, const char *name) {
    return eng_seterr(L->err, ENG_EUNSUPPORTED, "%s: %s %s", L->path, what, name ? name : "(no type)");
}

static int scratch_room(loader *L, size_t n) {
    if (n <= L->scratch_cap) return 0;
    char *p = realloc(L->scratch, n);
    if (!p) return -1;
    L->scratch = p;
    L->scratch_cap = n;
    return 0;
}

static int clip(size_t n) { return n > 64 ? 64 : (int)n; }   /* for messages */

enum { MAX_STR = 1 << 24 };      /* longest vocabulary / merge / added string */

/* The key bytes of the vocabulary string s[0..n) into L->scratch + at: the
 * string itself (SentencePiece style) or its raw bytes (byte-level).
 * Returns their count, -1 for a string that is not byte-level (see
 * respell), -2 when out of memory. */
static int raw_of(loader *L, const char *s, size_t n, size_t at) {
    if (scratch_room(L, at + n + 1)) return -2;
    int k = L->t->chars ? -1 : bytelevel_unmap(s, n, L->scratch + at);
    if (k < 0 && (L->respell || L->t->chars)) {
        memcpy(L->scratch + at, s, n);
        k = (int)n;
    }
    return k;
}

static int set_piece(eng_tok *t, int id, int64_t off, size_t len) {
    if (off < 0) return -1;
    t->piece_off[id] = (uint32_t)off;
    t->piece_len[id] = (int32_t)len;
    return 0;
}

/* The byte a token spelled "<0xHH>" stands for, else -1. */
static int byte_token(const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    const char *h = strchr(hex, s[3] | 0x20), *l = strchr(hex, s[4] | 0x20);
    return h && l && *h && *l ? (int)((h - hex) << 4 | (l - hex)) : -1;
}

/* The piece of token id, spelled s[0..n) (at key_off in the pool): what the
 * decoder makes of it.  Byte-level: the key itself (raw bytes) or, for a
 * string that is not byte-level, the string as it is (as the ByteLevel
 * decoder leaves it).  SentencePiece style: ByteFallback turns "<0xHH>"
 * into that byte; otherwise every dec_from becomes dec_to. */
static int tb_piece(loader *L, int id, const char *s, size_t n, int64_t key_off, size_t key_len) {
    eng_tok *t = L->t;
    int b = t->chars && t->dec_bytes ? byte_token(s, n) : -1;
    size_t nf = strlen(t->dec_from), nt = strlen(t->dec_to);
    if (b >= 0) {
        char c = (char)b;
        t->flags[id] |= TF_BYTE;
        return set_piece(t, id, pool_add(t, &c, 1), 1) ? nomem(L) : ENG_OK;
    }
    t->flags[id] &= (unsigned char)~TF_BYTE;
    if (!t->chars || !nf || !find_bytes(s, n, t->dec_from, nf))
        return set_piece(t, id, key_off, key_len) ? nomem(L) : ENG_OK;
    if (scratch_room(L, n / nf * nt + n + 1)) return nomem(L);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (i + nf <= n && !memcmp(s + i, t->dec_from, nf)) {
            memcpy(L->scratch + k, t->dec_to, nt);
            k += nt;
            i += nf;
        } else {
            L->scratch[k++] = s[i++];
        }
    }
    return set_piece(t, id, pool_add(t, L->scratch, k), k) ? nomem(L) : ENG_OK;
}

/* The decoder of a SentencePiece-style tokenizer (see struct eng_tok). */
static int tb_decoder(loader *L, const char *from, const char *to, int bytes, int strip, int meta_first) {
    eng_tok *t = L->t;
    if (strlen(from) >= sizeof t->dec_from || strlen(to) >= sizeof t->dec_to)
        return unsupported(L, "decoder", "Replace with a pattern or content over 7 bytes");
    if (*t->dec_from && *from && strcmp(t->dec_from, from))
        return unsupported(L, "decoder", "with two different replacements");
    if (*from) {
        strcpy(t->dec_from, from);
        strcpy(t->dec_to, to);
    }
    t->dec_bytes |= bytes;
    t->dec_strip += strip;
    t->dec_meta_first |= meta_first;
    return ENG_OK;
}

/* Per-id tables for ids 0 .. n_ids-1, and the lookup table for n_vocab
 * vocabulary entries. */
static int tb_alloc(loader *L, int n_ids, size_t n_vocab) {
    eng_tok *t = L->t;
    t->n_ids = n_ids;
    size_t n = (size_t)n_ids + 1;
    t->piece_off = calloc(n, sizeof *t->piece_off);
    t->piece_len = malloc(n * sizeof *t->piece_len);
    t->key_off = calloc(n, sizeof *t->key_off);
    t->key_len = malloc(n * sizeof *t->key_len);
    t->flags = calloc(n, 1);
    t->vocab_mask = table_size(n_vocab) - 1;
    t->vocab = calloc((size_t)t->vocab_mask + 1, sizeof *t->vocab);
    if (!t->piece_off || !t->piece_len || !t->key_off || !t->key_len || !t->flags || !t->vocab)
        return nomem(L);
    for (size_t i = 0; i < n; i++) t->piece_len[i] = t->key_len[i] = -1;
    return ENG_OK;
}

/* One vocabulary entry, 0 <= id < n_ids.  Its key enters the lookup table;
 * a byte-level string that is not byte-level (and not respelled) is kept as
 * it is for decoding, as the ByteLevel decoder does, but BPE never reaches
 * it. */
static int tb_vocab(loader *L, const char *s, size_t len, int id) {
    eng_tok *t = L->t;
    if (len > MAX_STR) return fmt_err(L, "vocabulary entry %d is %zu bytes long", id, len);
    int raw = raw_of(L, s, len, 0);
    if (raw == -2) return nomem(L);
    size_t klen = raw < 0 ? len : (size_t)raw;
    int64_t off = raw < 0 ? pool_add(t, s, len) : pool_add(t, L->scratch, klen);
    if (off < 0) return nomem(L);
    t->key_off[id] = (uint32_t)off;
    t->key_len[id] = raw < 0 ? -1 : raw;
    int rc = tb_piece(L, id, t->pool + off, klen, off, klen);
    if (rc || raw <= 0) return rc;
    uint32_t h = hash_bytes(t->pool + off, klen);
    vocab_slot *v = vocab_slot_for(t, t->pool + off, klen, "", 0, h);
    *v = (vocab_slot){ (uint32_t)off, (uint32_t)klen, h, id };   /* a repeated key: last wins */
    return ENG_OK;
}

/* Single bytes for byte-level words and one-byte characters; the <0xHH>
 * tokens byte_fallback needs (tokenizers looks them up spelled "<0x%02X>"). */
static void tb_vocab_done(loader *L) {
    eng_tok *t = L->t;
    for (int b = 0; b < 256; b++) {
        char c = (char)b, name[8];
        t->byte_id[b] = vocab_get(t, &c, 1);
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->fallback_id[b] = t->chars && L->byte_fallback ? vocab_get(t, name, 6) : -1;
    }
}

static int tb_merges_alloc(loader *L, size_t n) {
    eng_tok *t = L->t;
    t->merge_mask = table_size(n) - 1;
    t->merges = calloc((size_t)t->merge_mask + 1, sizeof *t->merges);
    return t->merges ? ENG_OK : nomem(L);
}

static void merge_put(eng_tok *t, int a, int b, int rank, int new_id) {
    uint64_t key = (uint64_t)(uint32_t)(a + 1) << 32 | (uint32_t)(b + 1);
    uint32_t i = (uint32_t)hash_u64(key) & t->merge_mask;
    while (t->merges[i].key && t->merges[i].key != key) i = (i + 1) & t->merge_mask;
    t->merges[i] = (merge_slot){ key, rank, new_id };   /* a repeated pair: last wins */
}

/* Merge number rank: the parts a and b and their concatenation must all be
 * in the vocabulary. */
static int tb_merge(loader *L, int rank, const char *a, size_t na, const char *b, size_t nb) {
    eng_tok *t = L->t;
    if (na > MAX_STR || nb > MAX_STR) return fmt_err(L, "%s[%d] is too long", L->merges_key, rank);
    int ra = raw_of(L, a, na, 0);
    int rb = ra < 0 ? ra : raw_of(L, b, nb, (size_t)ra);
    if (ra == -2 || rb == -2) return nomem(L);
    /* Parts that are not byte-level strings can never occur in a word. */
    if (ra < 0 || rb < 0) return ENG_OK;
    int ia = vocab_get(t, L->scratch, (size_t)ra);
    int ib = vocab_get(t, L->scratch + ra, (size_t)rb);
    int inew = vocab_get(t, L->scratch, (size_t)(ra + rb));
    if (ia < 0 || ib < 0)
        return fmt_err(L, "%s[%d]: \"%.*s\" is not in the vocabulary", L->merges_key, rank,
                       clip(ia < 0 ? na : nb), ia < 0 ? a : b);
    if (inew < 0)
        return fmt_err(L, "%s[%d]: the merge of \"%.*s\" and \"%.*s\" is not in the vocabulary",
                       L->merges_key, rank, clip(na), a, clip(nb), b);
    merge_put(t, ia, ib, rank, inew);
    return ENG_OK;
}

/* A merge written "a b": exactly one space between two non-empty parts. */
static int split_merge(const char *s, size_t n, size_t *na) {
    const char *sp = memchr(s, ' ', n);
    if (!sp || sp == s || sp == s + n - 1 || memchr(sp + 1, ' ', n - (size_t)(sp - s) - 1)) return -1;
    *na = (size_t)(sp - s);
    return 0;
}

static int tb_added_alloc(loader *L, int n) {
    L->t->added = calloc((size_t)n + 1, sizeof *L->t->added);
    return L->t->added ? ENG_OK : nomem(L);
}

typedef struct added_flags { int special, lstrip, rstrip, normalized, single_word; } added_flags;

/* An added token: content (matched in the text as it is), id < n_ids.  Its
 * piece is the decoder's, as for vocabulary tokens. */
static int tb_added(loader *L, const char *content, size_t len, int id, added_flags f) {
    eng_tok *t = L->t;
    if (len > MAX_STR) return fmt_err(L, "added token %d is %zu bytes long", id, len);
    int64_t off = pool_add(t, content, len);
    if (off < 0 || scratch_room(L, len + 1)) return nomem(L);
    added_tok *a = &t->added[t->n_added++];
    a->off = (uint32_t)off;
    a->len = (uint32_t)len;
    a->id = id;
    a->first = (unsigned char)content[0];
    a->special = (unsigned char)f.special;
    a->lstrip = (unsigned char)f.lstrip;
    a->rstrip = (unsigned char)f.rstrip;
    a->normalized = (unsigned char)f.normalized;
    a->single_word = (unsigned char)f.single_word;
    t->key_off[id] = (uint32_t)off;
    t->key_len[id] = (int32_t)len;
    int rc;
    if (t->chars) {
        rc = tb_piece(L, id, content, len, off, len);
    } else {
        int raw = bytelevel_unmap(content, len, L->scratch);
        int64_t poff = raw < 0 ? off : pool_add(t, L->scratch, (size_t)raw);
        rc = set_piece(t, id, poff, raw < 0 ? len : (size_t)raw) ? nomem(L) : ENG_OK;
    }
    if (f.special) t->flags[id] |= TF_SPECIAL;
    else t->flags[id] &= (unsigned char)~TF_SPECIAL;
    return rc;
}

static int cmp_added(const void *x, const void *y) {
    const added_tok *a = x, *b = y;
    if (a->first != b->first) return a->first - b->first;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;   /* longest first */
    return a->id - b->id;
}

static void tb_added_done(loader *L) {
    eng_tok *t = L->t;
    if (t->n_added) qsort(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added);
    int k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < t->n_added && t->added[k].first < b) k++;
        t->added_first[b] = k;
    }
}

/* A normalizer step (strings a[0..na), b[0..nb), as NZ_* says). */
static int add_norm(loader *L, int kind, const char *a, size_t na, const char *b, size_t nb) {
    eng_tok *t = L->t;
    if (t->n_norm == MAX_STEPS) return unsupported(L, "normalizer", "with too many steps");
    int64_t oa = pool_add(t, a ? a : "", na), ob = pool_add(t, b ? b : "", nb);
    if (oa < 0 || ob < 0) return nomem(L);
    t->norm[t->n_norm++] = (nz_step){ kind, (uint32_t)oa, (uint32_t)na, (uint32_t)ob, (uint32_t)nb };
    return ENG_OK;
}

static int add_step(loader *L, int kind, int a, int b, int c) {
    eng_tok *t = L->t;
    if (t->n_steps == MAX_STEPS) return unsupported(L, "pre-tokenizer", "with too many steps");
    t->steps[t->n_steps++] = (pt_step){ kind, a, b, c };
    return ENG_OK;
}

/* A byte-level vocabulary works only when ByteLevel maps the text last; any
 * step after it would see mapped characters.  A SentencePiece-style one has
 * no ByteLevel step. */
static int tb_steps_done(loader *L) {
    eng_tok *t = L->t;
    for (int i = 0; i < t->n_steps; i++) {
        if (t->steps[i].kind != PT_BYTELEVEL) continue;
        if (t->chars) return unsupported(L, "pre-tokenizer", "ByteLevel in a SentencePiece-style tokenizer");
        if (i != t->n_steps - 1) return unsupported(L, "pre-tokenizer", "with a step after ByteLevel");
    }
    if (!t->chars && (!t->n_steps || t->steps[t->n_steps - 1].kind != PT_BYTELEVEL))
        return unsupported(L, "pre-tokenizer", "without ByteLevel (not a byte-level BPE)");
    return ENG_OK;
}

static eng_tok *tok_new(void) {
    eng_tok *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->unk_id = t->bos_id = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = t->fallback_id[b] = -1;
    return t;
}

/* ------------------------------------------------------------ tokenizer.json */

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *key, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

/* A JSON number that is a whole id in [0, MAX_IDS), else -1. */
static int json_id(const cJSON *v) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= MAX_IDS ||
        v->valuedouble != (double)(int)v->valuedouble)
        return -1;
    return (int)v->valuedouble;
}

/* The per-id tables span the largest id in vocab and added_tokens. */
static int json_alloc(loader *L, const cJSON *vocab, const cJSON *added) {
    int max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        int id = json_id(it);
        if (id < 0) return fmt_err(L, "model.vocab: every value must be an id (0 <= id < 16M)");
        if (id > max_id) max_id = id;
    }
    if (cJSON_IsArray(added))
        cJSON_ArrayForEach(it, added) {
            int id = json_id(cJSON_GetObjectItemCaseSensitive(it, "id"));
            if (id > max_id) max_id = id;
        }
    return tb_alloc(L, max_id + 1, (size_t)cJSON_GetArraySize(vocab));
}

static int json_vocab(loader *L, const cJSON *vocab) {
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        int rc = tb_vocab(L, it->string, strlen(it->string), json_id(it));
        if (rc) return rc;
    }
    tb_vocab_done(L);
    return ENG_OK;
}

/* merges: "a b" strings or ["a", "b"] pairs. */
static int json_merges(loader *L, const cJSON *merges) {
    int rc = tb_merges_alloc(L, (size_t)cJSON_GetArraySize(merges)), i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        if (rc) return rc;
        size_t na;
        if (cJSON_IsString(m) && !split_merge(m->valuestring, strlen(m->valuestring), &na)) {
            const char *s = m->valuestring;
            rc = tb_merge(L, i, s, na, s + na + 1, strlen(s + na + 1));
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                   cJSON_IsString(m->child->next)) {
            const char *a = m->child->valuestring, *b = m->child->next->valuestring;
            rc = tb_merge(L, i, a, strlen(a), b, strlen(b));
        } else {
            return fmt_err(L, "model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", i);
        }
        i++;
    }
    return rc;
}

static int json_model(loader *L, const cJSON *model, const cJSON *added) {
    if (!cJSON_IsObject(model)) return fmt_err(L, "no \"model\" object");
    const char *type = jstr(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (type && strcmp(type, "BPE"))
        return eng_seterr(L->err, ENG_EUNSUPPORTED, "%s: model type %s (only BPE)", L->path, type);
    if (!cJSON_IsObject(vocab)) return fmt_err(L, "model.vocab missing or not an object");
    if (!cJSON_IsArray(merges)) return fmt_err(L, "model.merges missing or not a list");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return eng_seterr(L->err, ENG_EUNSUPPORTED, "%s: BPE dropout", L->path);
    const char *cont = jstr(model, "continuing_subword_prefix");
    const char *eow = jstr(model, "end_of_word_suffix");
    if ((cont && *cont) || (eow && *eow))
        return eng_seterr(L->err, ENG_EUNSUPPORTED, "%s: BPE with %s", L->path,
                          cont && *cont ? "continuing_subword_prefix" : "end_of_word_suffix");
    L->byte_fallback = jbool(model, "byte_fallback", 0);
    int rc = json_alloc(L, vocab, added);
    if (!rc) rc = json_vocab(L, vocab);
    if (!rc) rc = json_merges(L, merges);
    if (rc) return rc;
    eng_tok *t = L->t;
    t->ignore_merges = jbool(model, "ignore_merges", 0);
    t->fuse_unk = jbool(model, "fuse_unk", 0);
    const char *unk = jstr(model, "unk_token");
    if (unk) {
        int raw = raw_of(L, unk, strlen(unk), 0);
        if (raw == -2) return nomem(L);
        if (raw > 0) t->unk_id = vocab_get(t, L->scratch, (size_t)raw);
    }
    return ENG_OK;
}

static int json_added(loader *L, const cJSON *added) {
    if (!added || cJSON_IsNull(added)) return tb_added_alloc(L, 0);
    if (!cJSON_IsArray(added)) return fmt_err(L, "added_tokens is not a list");
    int rc = tb_added_alloc(L, cJSON_GetArraySize(added)), i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, added) {
        if (rc) return rc;
        const char *content = jstr(it, "content");
        int id = json_id(cJSON_GetObjectItemCaseSensitive(it, "id"));
        if (id < 0 || !content || !*content)
            return fmt_err(L, "added_tokens[%d]: needs an \"id\" and a non-empty \"content\"", i);
        added_flags f = { jbool(it, "special", 0), jbool(it, "lstrip", 0), jbool(it, "rstrip", 0), 0,
                          jbool(it, "single_word", 0) };
        f.normalized = jbool(it, "normalized", !f.special);
        rc = tb_added(L, content, strlen(content), id, f);
        i++;
    }
    if (!rc) tb_added_done(L);
    return rc;
}

/* A String pattern ({"String": "..."}) of Replace and Split; NULL if the
 * pattern is missing or a Regex. */
static const char *json_pattern(const cJSON *o) {
    return jstr(cJSON_GetObjectItemCaseSensitive(o, "pattern"), "String");
}

/* A Sequence (what: "normalizer", "pre_tokenizer"): each member of its list,
 * named key, through step in order. */
static int json_sequence(loader *L, const cJSON *p, const char *what, const char *key,
                         int (*step)(loader *L, const cJSON *p)) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, key), *it;
    if (!cJSON_IsArray(list)) return fmt_err(L, "%s Sequence without \"%s\"", what, key);
    cJSON_ArrayForEach(it, list) {
        int rc = step(L, it);
        if (rc) return rc;
    }
    return ENG_OK;
}

static int json_normalizer(loader *L, const cJSON *nz) {
    if (!nz || cJSON_IsNull(nz)) return ENG_OK;
    const char *type = jstr(nz, "type");
    if (type && !strcmp(type, "NFC")) return add_norm(L, NZ_NFC, NULL, 0, NULL, 0);
    if (type && !strcmp(type, "Replace")) {
        const char *pat = json_pattern(nz), *content = jstr(nz, "content");
        if (!pat || !*pat || !content) return unsupported(L, "normalizer Replace", "without a String pattern");
        return add_norm(L, NZ_REPLACE, pat, strlen(pat), content, strlen(content));
    }
    if (type && !strcmp(type, "Prepend")) {
        const char *pre = jstr(nz, "prepend");
        if (!pre) return fmt_err(L, "normalizer Prepend without \"prepend\"");
        return add_norm(L, NZ_PREPEND, pre, strlen(pre), NULL, 0);
    }
    if (type && !strcmp(type, "Sequence"))
        return json_sequence(L, nz, "normalizer", "normalizers", json_normalizer);
    return unsupported(L, "normalizer", type);
}

/* Metaspace's prepend_scheme (older files: add_prefix_space); -1 if unknown. */
static int json_prepend_scheme(const cJSON *p) {
    const char *ps = jstr(p, "prepend_scheme");
    if (!ps) return jbool(p, "add_prefix_space", 1) ? PS_ALWAYS : PS_NEVER;
    return !strcmp(ps, "first") ? PS_FIRST : !strcmp(ps, "always") ? PS_ALWAYS : !strcmp(ps, "never") ? PS_NEVER : -1;
}

/* Metaspace (pre-tokenizer and decoder) with U+2581 as its replacement. */
static int json_metaspace(loader *L, const cJSON *p, int *scheme) {
    const char *rep = jstr(p, "replacement");
    if (rep && strcmp(rep, META)) return unsupported(L, "Metaspace", "with a replacement other than U+2581");
    *scheme = json_prepend_scheme(p);
    if (*scheme < 0) return unsupported(L, "Metaspace prepend_scheme", jstr(p, "prepend_scheme"));
    return ENG_OK;
}

static int json_split(loader *L, const cJSON *p) {
    static const char *const behaviors[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext"};
    const char *behavior = jstr(p, "behavior"), *str = json_pattern(p);
    const char *re = jstr(cJSON_GetObjectItemCaseSensitive(p, "pattern"), "Regex");
    if (jbool(p, "invert", 0)) return unsupported(L, "Split", "with invert: true");
    if (str && *str) {
        for (int b = 0; b < 4; b++) {
            if (!behavior || strcmp(behavior, behaviors[b])) continue;
            int64_t off = pool_add(L->t, str, strlen(str));
            if (off < 0) return nomem(L);
            return add_step(L, PT_SPLIT_STR, (int)off, (int)strlen(str), b);
        }
        return unsupported(L, "Split behavior", behavior);
    }
    if (!re) return unsupported(L, "Split pattern", "that is neither a Regex nor a non-empty String");
    if (!behavior || strcmp(behavior, "Isolated")) return unsupported(L, "Split behavior", behavior);
    int pat = eng_pt_pattern(re);
    if (pat < 0)
        return eng_seterr(L->err, ENG_EUNSUPPORTED, "%s: Split regex not recognised: %.300s", L->path, re);
    return add_step(L, PT_SPLIT, pat, 0, 0);
}

static int json_pretok_step(loader *L, const cJSON *p) {
    const char *type = jstr(p, "type");
    if (!type) return fmt_err(L, "pre_tokenizer without a \"type\"");
    if (!strcmp(type, "Sequence"))
        return json_sequence(L, p, "pre_tokenizer", "pretokenizers", json_pretok_step);
    if (!strcmp(type, "ByteLevel"))
        return add_step(L, PT_BYTELEVEL, jbool(p, "add_prefix_space", 1), jbool(p, "use_regex", 1), 0);
    if (!strcmp(type, "Digits"))
        return add_step(L, PT_DIGITS, jbool(p, "individual_digits", 0), 0, 0);
    if (!strcmp(type, "Split")) return json_split(L, p);
    if (!strcmp(type, "Metaspace")) {
        int scheme, rc = json_metaspace(L, p, &scheme);
        return rc ? rc : add_step(L, PT_METASPACE, scheme, jbool(p, "split", 1), 0);
    }
    return unsupported(L, "pre-tokenizer type", type);
}

/* Whether the pre-tokenizer has a ByteLevel step: the vocabulary is then
 * byte-level, else SentencePiece style. */
static int json_has_bytelevel(const cJSON *p) {
    const char *type = p ? jstr(p, "type") : NULL;
    if (!type) return 0;
    if (!strcmp(type, "ByteLevel")) return 1;
    const cJSON *it;
    if (!strcmp(type, "Sequence"))
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"))
            if (json_has_bytelevel(it)) return 1;
    return 0;
}

static int json_pretok(loader *L, const cJSON *p) {
    int rc = p && !cJSON_IsNull(p) ? json_pretok_step(L, p) : ENG_OK;
    return rc ? rc : tb_steps_done(L);
}

/* The BOS a model wants: Hugging Face adds what the post-processor's
 * TemplateProcessing puts before $A (e.g. Llama 3's <|begin_of_text|>)
 * when encoding with add_special_tokens.  Other post-processors (ByteLevel,
 * which only fixes offsets, and those of encoder models) add no BOS here. */
static int json_post(loader *L, const cJSON *p) {
    const char *type = p ? jstr(p, "type") : NULL;
    if (!type) return ENG_OK;
    if (!strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(p, "processors")) {
            int rc = json_post(L, it);
            if (rc) return rc;
        }
        return ENG_OK;
    }
    if (strcmp(type, "TemplateProcessing")) return ENG_OK;
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single"), *it;
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
    int n_before = 0;
    const char *name = NULL;
    cJSON_ArrayForEach(it, single) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        if (!sp) break;                       /* $A (a Sequence) comes next */
        if (!n_before++) name = jstr(sp, "id");
    }
    if (!n_before) return ENG_OK;
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(specials, name ? name : ""), "ids");
    int id = cJSON_GetArraySize(ids) == 1 ? json_id(cJSON_GetArrayItem(ids, 0)) : -1;
    if (n_before > 1 || cJSON_GetArraySize(ids) > 1)
        return unsupported(L, "post_processor", "putting more than one token before the text");
    if (id < 0 || id >= L->t->n_ids)
        return fmt_err(L, "post_processor: special token \"%.64s\" has no valid id", name ? name : "");
    L->t->bos_id = id;
    return ENG_OK;
}

/* One decoder of a SentencePiece-style tokenizer; *fused once Fuse is seen.
 * Strip is only taken after Fuse (then it strips the whole text). */
static int json_spm_decoder(loader *L, const cJSON *d, int *fused) {
    const char *type = jstr(d, "type");
    if (!type) return fmt_err(L, "decoder without a \"type\"");
    if (!strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(d, "decoders")) {
            int rc = json_spm_decoder(L, it, fused);
            if (rc) return rc;
        }
        return ENG_OK;
    }
    if (!strcmp(type, "Replace")) {
        const char *pat = json_pattern(d), *content = jstr(d, "content");
        if (!pat || !*pat || !content) return unsupported(L, "decoder Replace", "without a String pattern");
        return tb_decoder(L, pat, content, 0, 0, 0);
    }
    if (!strcmp(type, "ByteFallback")) {
        if (*fused) return unsupported(L, "decoder", "ByteFallback after Fuse");
        return tb_decoder(L, "", "", 1, 0, 0);
    }
    if (!strcmp(type, "Fuse")) { *fused = 1; return ENG_OK; }
    if (!strcmp(type, "Strip")) {
        const char *content = jstr(d, "content");
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(d, "start");
        const cJSON *stop = cJSON_GetObjectItemCaseSensitive(d, "stop");
        if (!*fused || !content || strcmp(content, " ") || !cJSON_IsNumber(start) || start->valueint < 0 ||
            start->valueint > 64 || (cJSON_IsNumber(stop) && stop->valueint != 0))
            return unsupported(L, "decoder", "Strip other than of leading spaces after Fuse");
        return tb_decoder(L, "", "", 0, start->valueint, 0);
    }
    if (!strcmp(type, "Metaspace")) {
        int scheme, rc = json_metaspace(L, d, &scheme);
        return rc ? rc : tb_decoder(L, META, " ", 0, 0, scheme != PS_NEVER);
    }
    return unsupported(L, "decoder", type);
}

static int json_decoder(loader *L, const cJSON *d) {
    const char *type = d ? jstr(d, "type") : NULL;
    if (!L->t->chars) {
        if (!d || cJSON_IsNull(d) || (type && !strcmp(type, "ByteLevel"))) return ENG_OK;   /* null: taken as ByteLevel */
        return unsupported(L, "decoder", type);
    }
    if (!d || cJSON_IsNull(d)) return ENG_OK;   /* refused in load_json, once the rest is checked */
    int fused = 0;
    return json_spm_decoder(L, d, &fused);
}

static int load_json(loader *L, const cJSON *root) {
    if (!cJSON_IsObject(root)) return fmt_err(L, "not a JSON object");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const cJSON *pretok = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    L->t->chars = !json_has_bytelevel(pretok);
    int rc = json_decoder(L, cJSON_GetObjectItemCaseSensitive(root, "decoder"));
    if (!rc) rc = json_model(L, cJSON_GetObjectItemCaseSensitive(root, "model"), added);
    if (!rc) rc = json_added(L, added);
    if (!rc) rc = json_normalizer(L, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
    if (!rc) rc = json_pretok(L, pretok);
    if (!rc) rc = json_post(L, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (!rc && L->t->chars && (!dec || cJSON_IsNull(dec)))
        rc = eng_seterr(L->err, ENG_EUNSUPPORTED, "%s: neither a ByteLevel pre-tokenizer (byte-level BPE) nor "
                        "a decoder (SentencePiece style)", L->path);
    return rc;
}

int eng_tok_load(const char *path, eng_tok **out, eng_err *err) {
    char *buf = NULL;
    size_t n = 0;
    *out = NULL;
    int rc = eng_read_file(path, 0, &buf, &n, err);
    if (rc) return rc;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, n, &end, 0);
    if (!root) {
        long at = end ? (long)(end - buf) : -1;
        free(buf);
        return eng_seterr(err, ENG_EFORMAT, "%s: malformed JSON near byte %ld", path, at);
    }
    free(buf);
    loader L = { .t = tok_new(), .path = path, .err = err, .merges_key = "model.merges" };
    rc = L.t ? load_json(&L, root) : nomem(&L);
    cJSON_Delete(root);
    free(L.scratch);
    if (rc) { eng_tok_free(L.t); return rc; }
    *out = L.t;
    return ENG_OK;
}

/* ------------------------------------------------------------ GGUF
 *
 * tokenizer.ggml.model "gpt2" (byte-level BPE; llama.cpp's name for it):
 * tokens (index = id), token_type, merges ("a b" in byte-level characters),
 * pre (the pre-tokenizer's name), bos/eos/unknown/padding ids and
 * add_bos_token.  The tokenizer built is the one transformers builds from the
 * same file (AutoTokenizer.from_pretrained(..., gguf_file=...)), except
 * where transformers has no pre-tokenizer for a name that llama.cpp knows
 * (see GGUF_PRE). */

/* What each tokenizer.ggml.pre name stands for, as the pt_step list (and
 * normalizer) of the tokenizer.json it was converted from; llama.cpp's
 * llama-vocab.cpp gives each name's split regexes.
 *   gpt2     GPT-2: ByteLevel with its own regex.
 *   default  llama.cpp's fallback for files that name no pre-tokenizer; its
 *            regex set matches no Hugging Face tokenizer, and transformers
 *            gives such files GPT-2's ByteLevel, as here.
 *   smollm   SmolLM2 (StarCoder's scheme): every digit apart, then
 *            ByteLevel.  transformers drops the digit split; we follow
 *            SmolLM2's tokenizer.json and llama.cpp.
 *   qwen2    Qwen2/2.5/3: NFC, the Qwen2 split regex, ByteLevel without
 *            regex (deepseek-r1-qwen: the same tokenizer).
 *   llama3   Llama 3 (llama-bpe, llama-v3): the Llama 3 split regex, then
 *            ByteLevel without regex. */
static const struct gguf_pre {
    const char *name;
    int nfc, n_steps;
    pt_step steps[2];
} GGUF_PRE[] = {
    {"gpt2", 0, 1, {{PT_BYTELEVEL, 0, 1, 0}}},
    {"default", 0, 1, {{PT_BYTELEVEL, 0, 1, 0}}},
    {"smollm", 0, 2, {{PT_DIGITS, 1, 0, 0}, {PT_BYTELEVEL, 0, 1, 0}}},
    {"qwen2", 1, 2, {{PT_SPLIT, ENG_PT_QWEN2, 0, 0}, {PT_BYTELEVEL, 0, 0, 0}}},
    {"deepseek-r1-qwen", 1, 2, {{PT_SPLIT, ENG_PT_QWEN2, 0, 0}, {PT_BYTELEVEL, 0, 0, 0}}},
    {"llama3", 0, 2, {{PT_SPLIT, ENG_PT_LLAMA3, 0, 0}, {PT_BYTELEVEL, 0, 0, 0}}},
    {"llama-bpe", 0, 2, {{PT_SPLIT, ENG_PT_LLAMA3, 0, 0}, {PT_BYTELEVEL, 0, 0, 0}}},
    {"llama-v3", 0, 2, {{PT_SPLIT, ENG_PT_LLAMA3, 0, 0}, {PT_BYTELEVEL, 0, 0, 0}}},
};

static int gguf_pretok(loader *L, const eng_gguf *g) {
    const char *pre = "default";
    size_t n = strlen(pre);
    int rc = eng_gguf_get_str(g, "tokenizer.ggml.pre", 0, &pre, &n, L->err);
    if (rc) return rc;
    for (size_t i = 0; i < sizeof GGUF_PRE / sizeof GGUF_PRE[0]; i++) {
        const struct gguf_pre *p = &GGUF_PRE[i];
        if (strlen(p->name) != n || memcmp(p->name, pre, n)) continue;
        if (p->nfc && (rc = add_norm(L, NZ_NFC, NULL, 0, NULL, 0))) return rc;
        for (int k = 0; k < p->n_steps; k++)
            if ((rc = add_step(L, p->steps[k].kind, p->steps[k].a, p->steps[k].b, 0))) return rc;
        return tb_steps_done(L);
    }
    return eng_seterr(L->err, ENG_EUNSUPPORTED, "%s: tokenizer.ggml.pre \"%.*s\" is not a pre-tokenizer "
                      "brisk knows (gpt2, default, smollm, qwen2, deepseek-r1-qwen, llama3, llama-bpe, "
                      "llama-v3)", L->path, clip(n), pre);
}

enum { A_STR, A_INT, A_NUM };

/* The array metadata key: its index, checked to hold elements of the
 * wanted kind (A_STR strings, A_INT integers, A_NUM numbers); -1 when
 * absent. */
static int gguf_array(loader *L, const eng_gguf *g, const char *key, int want, int *kv) {
    static const char *const names[] = {"strings", "integers", "numbers"};
    *kv = eng_gguf_find(g, key);
    if (*kv < 0) return ENG_OK;
    int at = eng_gguf_arr_type(g, *kv);
    int is_int = (at >= ENG_GGUF_U8 && at <= ENG_GGUF_I32) || at == ENG_GGUF_U64 || at == ENG_GGUF_I64;
    int ok = want == A_STR ? at == ENG_GGUF_STR
           : want == A_INT ? is_int : is_int || at == ENG_GGUF_F32 || at == ENG_GGUF_F64;
    if (eng_gguf_type(g, *kv) != ENG_GGUF_ARR || !ok)
        return fmt_err(L, "%s is not an array of %s", key, names[want]);
    return ENG_OK;
}

/* Token types (llama.cpp's llama_token_type). */
enum { TT_UNDEFINED, TT_NORMAL, TT_UNKNOWN, TT_CONTROL, TT_USER_DEFINED, TT_UNUSED, TT_BYTE };

/* Whether token i becomes an added token (and how): control tokens are
 * special, user-defined ones plain added tokens, both matched in the text
 * unnormalized, as transformers adds them.  Byte-level: like transformers,
 * only tokens written in byte-level characters (llama.cpp marks some others
 * control by mistake).  SentencePiece style: only tokens whose spelling in
 * the file is a vocabulary string (not those respelled, see gguf_spm).
 * Returns the type, 0 for none, -1 when out of memory. */
static int gguf_added_kind(loader *L, const char *s, size_t len, int64_t type) {
    if ((type != TT_CONTROL && type != TT_USER_DEFINED) || !len) return 0;
    if (L->t->chars) return vocab_get(L->t, s, len) >= 0 ? (int)type : 0;
    if (scratch_room(L, len + 1)) return -1;
    return bytelevel_unmap(s, len, L->scratch) < 0 ? 0 : (int)type;
}

/* Gemma's respelling: a token of whitespace only that holds a space stands
 * for that many U+2581 (llama.cpp's converter stores "▁▁" as two spaces,
 * while the text reaches BPE with U+2581).  Returns a malloc'd string in
 * *out, or 0 with *out NULL when the token stays as it is; -1: no memory. */
static int respell_spaces(const char *s, size_t len, char **out, size_t *out_len) {
    size_t nc = 0;
    int space = 0;
    *out = NULL;
    for (size_t i = 0; i < len; nc++) {
        uint32_t cp;
        i += (size_t)eng_utf8_next((const unsigned char *)s + i, len - i, &cp);
        if (eng_uni_class(cp) != ENG_UNI_SPACE) return 0;
        space |= cp == ' ';
    }
    if (!space) return 0;
    if (!(*out = malloc(nc * 3 + 1))) return -1;
    for (size_t k = 0; k < nc; k++) memcpy(*out + 3 * k, META, 3);
    *out_len = nc * 3;
    return 0;
}

/* The vocabulary (respelled when respell, see respell_spaces) and the added
 * tokens; a SentencePiece-style token of type byte must be spelled <0xHH>. */
static int gguf_vocab(loader *L, const eng_gguf *g, int kt, int ky, int n, int respell) {
    int n_added = 0, rc;
    for (int i = 0; i < n; i++) {
        const char *s;
        size_t len;
        int64_t type = TT_NORMAL;
        if (eng_gguf_arr_str(g, kt, (uint64_t)i, &s, &len))
            return fmt_err(L, "tokenizer.ggml.tokens[%d] cannot be read", i);
        if (ky >= 0 && (eng_gguf_arr_int(g, ky, (uint64_t)i, &type) || type < TT_UNDEFINED || type > TT_BYTE))
            return fmt_err(L, "tokenizer.ggml.token_type[%d] = %lld is not a token type (0-6)", i, (long long)type);
        if (L->t->chars && type == TT_BYTE && byte_token(s, len) < 0)
            return fmt_err(L, "tokenizer.ggml.tokens[%d] \"%.*s\" has token type 6 (byte) but is not spelled <0xHH>",
                           i, clip(len), s);
        n_added += type == TT_CONTROL || type == TT_USER_DEFINED;
        /* The lookup table is far larger than the caches: ask for the slot
         * of a token a few ahead while this one is stored. */
        const char *ps;
        size_t pn;
        if (L->t->chars && i + 16 < n && !eng_gguf_arr_str(g, kt, (uint64_t)i + 16, &ps, &pn))
            __builtin_prefetch(&L->t->vocab[hash_bytes(ps, pn) & L->t->vocab_mask], 1);
        char *re = NULL;
        size_t nre = 0;
        if (respell && respell_spaces(s, len, &re, &nre)) return nomem(L);
        rc = re ? tb_vocab(L, re, nre, i) : tb_vocab(L, s, len, i);
        free(re);
        if (rc) return rc;
    }
    tb_vocab_done(L);
    if ((rc = tb_added_alloc(L, n_added))) return rc;
    for (int i = 0; ky >= 0 && i < n; i++) {
        const char *s;
        size_t len;
        int64_t type;
        eng_gguf_arr_str(g, kt, (uint64_t)i, &s, &len);
        eng_gguf_arr_int(g, ky, (uint64_t)i, &type);
        int k = gguf_added_kind(L, s, len, type);
        if (k < 0) return nomem(L);
        if (!k) continue;
        added_flags f = { .special = k == TT_CONTROL };
        if ((rc = tb_added(L, s, len, L->t->chars ? vocab_get(L->t, s, len) : i, f))) return rc;
    }
    tb_added_done(L);
    return ENG_OK;
}

static int gguf_merges(loader *L, const eng_gguf *g, int km) {
    uint64_t n = eng_gguf_arr_len(g, km);
    if (n >= MAX_IDS) return fmt_err(L, "tokenizer.ggml.merges has %llu entries", (unsigned long long)n);
    int rc = tb_merges_alloc(L, (size_t)n);
    for (uint64_t i = 0; !rc && i < n; i++) {
        const char *s;
        size_t len, na;
        if (eng_gguf_arr_str(g, km, i, &s, &len) || split_merge(s, len, &na))
            return fmt_err(L, "tokenizer.ggml.merges[%llu]: expected \"a b\" (two parts, one space)",
                           (unsigned long long)i);
        rc = tb_merge(L, (int)i, s, na, s + na + 1, len - na - 1);
    }
    return rc;
}

/* bos/eos/unknown/padding ids, when given, must name tokens.  Only BOS is
 * kept (for eng_tok_bos), when tokenizer.ggml.add_bos_token (default
 * add_bos) is true.  The unknown id is not the BPE's unknown token, as in
 * transformers' conversion. */
static int gguf_special_ids(loader *L, const eng_gguf *g, int n, int64_t add_bos) {
    static const char *const keys[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                       "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"};
    int64_t id[4] = {-1, -1, -1, -1};
    for (int k = 0; k < 4; k++) {
        int rc = eng_gguf_get_int(g, keys[k], 0, &id[k], L->err);
        if (rc) return rc;
        if (eng_gguf_find(g, keys[k]) >= 0 && (id[k] < 0 || id[k] >= n))
            return fmt_err(L, "%s = %lld is out of range (%d tokens)", keys[k], (long long)id[k], n);
    }
    int rc = eng_gguf_get_int(g, "tokenizer.ggml.add_bos_token", 0, &add_bos, L->err);
    if (rc) return rc;
    if (add_bos && id[0] < 0)
        return fmt_err(L, "tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is missing");
    L->t->bos_id = add_bos ? (int)id[0] : -1;
    return ENG_OK;
}

/* ------------------------------------------------------------ GGUF SentencePiece
 *
 * tokenizer.ggml.model "llama" (SentencePiece BPE): tokens, scores,
 * token_type, usually no merges.  The tokenizer built is the one
 * transformers builds from the same file, which picks a tokenizer class by
 * general.architecture:
 *   gemma, gemma2, gemma3  GemmaTokenizer: normalizer Replace(" " -> "▁"),
 *            byte_fallback, unknown token "<unk>", decoder Replace("▁" ->
 *            " "), ByteFallback, Fuse (Gemma's own tokenizer.json has the
 *            same; the Split(" ") pre-tokenizer transformers also sets
 *            never sees a space after that normalizer, so it is left out);
 *            whitespace tokens respelled (respell_spaces); merges ranked by
 *            the merged token's position in the file (Gemma's scores do not
 *            follow its merge order).
 *   phi3     LlamaTokenizer with normalizer Prepend("▁"), Replace(" " ->
 *            "▁") and no pre-tokenizer.
 *   others   LlamaTokenizer: pre-tokenizer Metaspace(prepend_scheme first,
 *            no split), byte_fallback and no unknown token; merges ranked
 *            by the merged token's score.
 * LlamaTokenizer's decoder is Gemma's plus Strip (one leading space).  A
 * file without tokenizer.ggml.merges has them rebuilt from the vocabulary
 * (spm_merges).  BOS is added unless tokenizer.ggml.add_bos_token says not
 * (llama.cpp's default for SentencePiece vocabularies).
 * tokenizer.ggml.add_space_prefix is not read: transformers ignores it. */

enum { SPM_LLAMA, SPM_GEMMA, SPM_PHI3 };
enum { SPM_MAX_KEY = 0xFFFFF };          /* longest token when merges are rebuilt (see merge_of) */

static int spm_family(loader *L, const eng_gguf *g, int *fam) {
    const char *arch = "";
    size_t n = 0;
    int rc = eng_gguf_get_str(g, "general.architecture", 0, &arch, &n, L->err);
    *fam = SPM_LLAMA;
    if ((n == 5 && !memcmp(arch, "gemma", 5)) || (n == 6 && (!memcmp(arch, "gemma2", 6) || !memcmp(arch, "gemma3", 6))))
        *fam = SPM_GEMMA;
    else if (n == 4 && !memcmp(arch, "phi3", 4))
        *fam = SPM_PHI3;
    return rc;
}

typedef struct id_score { double score; int id; } id_score;

static int cmp_by_score(const void *x, const void *y) {
    const id_score *a = x, *b = y;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->id - b->id;
}

/* For a file that lists no merges, transformers rebuilds them from the
 * vocabulary (generate_merges): every split of a token into two vocabulary
 * strings at a character boundary, sorted by the token's score (higher
 * first), then longer left part, then longer right part, then the token's
 * position.  Encoding finds these merges from the vocabulary as it goes
 * (merge_of); what it needs from here is each token's class: the rank of
 * its score among the distinct scores (Gemma: its position). */
static int spm_merge_classes(loader *L, const double *score, int by_position) {
    eng_tok *t = L->t;
    int n = t->n_ids;
    id_score *order = NULL;
    for (int i = 0; i < n; i++)
        if (t->key_len[i] > SPM_MAX_KEY)
            return fmt_err(L, "tokenizer.ggml.tokens[%d] is %d bytes long (at most %d here)", i, t->key_len[i],
                           SPM_MAX_KEY);
    t->merge_class = malloc((size_t)n * sizeof *t->merge_class);
    if (!t->merge_class || (!by_position && !(order = malloc((size_t)n * sizeof *order)))) return nomem(L);
    if (by_position) {
        for (int i = 0; i < n; i++) t->merge_class[i] = (uint32_t)i;
        return ENG_OK;
    }
    for (int i = 0; i < n; i++) order[i] = (id_score){ score[i], i };
    qsort(order, (size_t)n, sizeof *order, cmp_by_score);
    uint32_t cls = 0;
    for (int i = 0; i < n; i++) {
        if (i && order[i].score != order[i - 1].score) cls++;
        t->merge_class[order[i].id] = cls;
    }
    free(order);
    return ENG_OK;
}

/* Each token's score for ranking rebuilt merges (from tokenizer.ggml.scores,
 * checked: one number per token; Gemma's merges go by position instead). */
static int spm_scores(loader *L, const eng_gguf *g, int fam, int n, int need, double **out) {
    int ks, rc = gguf_array(L, g, "tokenizer.ggml.scores", A_NUM, &ks);
    *out = NULL;
    if (rc) return rc;
    if (ks >= 0 && eng_gguf_arr_len(g, ks) != (uint64_t)n)
        return fmt_err(L, "tokenizer.ggml.scores has %llu entries for %d tokens",
                       (unsigned long long)eng_gguf_arr_len(g, ks), n);
    if (ks < 0 && need && fam != SPM_GEMMA)
        return fmt_err(L, "missing metadata tokenizer.ggml.scores (no tokenizer.ggml.merges either, so "
                       "nothing ranks the merges)");
    if (!need || ks < 0 || fam == SPM_GEMMA) return ENG_OK;
    double *sc = malloc((size_t)n * sizeof *sc);
    if (!sc) return nomem(L);
    for (int i = 0; i < n; i++) {
        if (eng_gguf_arr_float(g, ks, (uint64_t)i, &sc[i]) || sc[i] != sc[i]) {
            free(sc);
            return fmt_err(L, "tokenizer.ggml.scores[%d] is not a number", i);
        }
    }
    *out = sc;
    return ENG_OK;
}

/* All 256 <0xHH> tokens or none: byte fallback with some missing would
 * silently drop characters. */
static int spm_check_bytes(loader *L) {
    int have = 0, missing = -1;
    for (int b = 0; b < 256; b++) {
        if (L->t->fallback_id[b] >= 0) have++;
        else if (missing < 0) missing = b;
    }
    if (have && have < 256)
        return fmt_err(L, "tokenizer.ggml.tokens has byte tokens for only %d of the 256 bytes (<0x%02X> is "
                       "missing), so byte fallback cannot spell every character", have, missing);
    return ENG_OK;
}

static int gguf_spm(loader *L, const eng_gguf *g, int kt, int ky, int km, int n) {
    eng_tok *t = L->t;
    int fam, rc = spm_family(L, g, &fam);
    double *score = NULL;
    t->chars = 1;
    t->fuse_unk = 1;
    L->byte_fallback = 1;
    if (!rc) rc = spm_scores(L, g, fam, n, km < 0, &score);
    if (!rc) rc = tb_decoder(L, META, " ", 1, fam == SPM_GEMMA ? 0 : 1, 0);
    if (!rc) rc = tb_alloc(L, n, (size_t)n);
    if (!rc) rc = gguf_vocab(L, g, kt, ky, n, fam == SPM_GEMMA);
    if (!rc) rc = spm_check_bytes(L);
    if (!rc) rc = km >= 0 ? gguf_merges(L, g, km) : spm_merge_classes(L, score, fam == SPM_GEMMA);
    free(score);
    if (!rc) rc = gguf_special_ids(L, g, n, 1);
    if (rc) return rc;
    if (fam == SPM_GEMMA) {
        t->unk_id = vocab_get(t, "<unk>", 5);
        rc = add_norm(L, NZ_REPLACE, " ", 1, META, 3);
    } else if (fam == SPM_PHI3) {
        rc = add_norm(L, NZ_PREPEND, META, 3, NULL, 0);
        if (!rc) rc = add_norm(L, NZ_REPLACE, " ", 1, META, 3);
    } else {
        rc = add_step(L, PT_METASPACE, PS_FIRST, 0, 0);
    }
    return rc ? rc : tb_steps_done(L);
}

static int load_gguf(loader *L, const eng_gguf *g) {
    const char *model;
    size_t nm;
    int rc = eng_gguf_get_str(g, "tokenizer.ggml.model", 1, &model, &nm, L->err), kt, ky, km;
    if (rc) return rc;
    int spm = nm == 5 && !memcmp(model, "llama", 5);
    if (!spm && (nm != 4 || memcmp(model, "gpt2", 4)))
        return eng_seterr(L->err, ENG_EUNSUPPORTED, "%s: tokenizer.ggml.model \"%.*s\" (brisk reads \"gpt2\", "
                          "byte-level BPE, and \"llama\", SentencePiece BPE)", L->path, clip(nm), model);
    if ((rc = gguf_array(L, g, "tokenizer.ggml.tokens", A_STR, &kt)) ||
        (rc = gguf_array(L, g, "tokenizer.ggml.token_type", A_INT, &ky)) ||
        (rc = gguf_array(L, g, "tokenizer.ggml.merges", A_STR, &km)))
        return rc;
    if (kt < 0) return fmt_err(L, "missing metadata tokenizer.ggml.tokens");
    uint64_t n = eng_gguf_arr_len(g, kt);
    if (n == 0 || n >= MAX_IDS)
        return fmt_err(L, "tokenizer.ggml.tokens has %llu entries (1 to 16M expected)", (unsigned long long)n);
    if (ky >= 0 && eng_gguf_arr_len(g, ky) != n)
        return fmt_err(L, "tokenizer.ggml.token_type has %llu entries for %llu tokens",
                       (unsigned long long)eng_gguf_arr_len(g, ky), (unsigned long long)n);
    if (spm) return gguf_spm(L, g, kt, ky, km, (int)n);
    /* add_space_prefix is not read: transformers ignores it for byte-level
     * vocabularies (llama.cpp applies it to SentencePiece ones only). */
    if (km < 0) return fmt_err(L, "missing metadata tokenizer.ggml.merges");
    if ((rc = tb_alloc(L, (int)n, (size_t)n)) || (rc = gguf_vocab(L, g, kt, ky, (int)n, 0)) ||
        (rc = gguf_merges(L, g, km)) || (rc = gguf_special_ids(L, g, (int)n, 0)))
        return rc;
    return gguf_pretok(L, g);
}

int eng_tok_load_gguf(const eng_gguf *g, eng_tok **out, eng_err *err) {
    if (out) *out = NULL;
    if (!g || !out) return eng_seterr(err, ENG_EINVAL, "eng_tok_load_gguf: NULL argument");
    loader L = { .t = tok_new(), .path = eng_gguf_path(g), .err = err, .respell = 1,
                 .merges_key = "tokenizer.ggml.merges" };
    int rc = L.t ? load_gguf(&L, g) : nomem(&L);
    free(L.scratch);
    if (rc) { eng_tok_free(L.t); return rc; }
    *out = L.t;
    return ENG_OK;
}

/* ------------------------------------------------------------ any source */

static int starts_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    char m[4];
    int yes = f && fread(m, 1, 4, f) == 4 && !memcmp(m, "GGUF", 4);
    if (f) fclose(f);
    return yes;
}

static int load_gguf_path(const char *path, eng_tok **out, eng_err *err) {
    eng_gguf *g;
    int rc = eng_gguf_open(path, &g, err);
    if (rc) return rc;
    rc = eng_tok_load_gguf(g, out, err);
    eng_gguf_close(g);
    return rc;
}

int eng_tok_open(const char *path, eng_tok **out, eng_err *err) {
    struct stat sb;
    char p[4096];
    if (!out) return eng_seterr(err, ENG_EINVAL, "eng_tok_open: NULL argument");
    *out = NULL;
    if (!path || stat(path, &sb))
        return eng_seterr(err, ENG_EIO, "%s: %s", path ? path : "(null)", strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return starts_gguf(path) ? load_gguf_path(path, out, err) : eng_tok_load(path, out, err);
    int n = snprintf(p, sizeof p, "%s/tokenizer.json", path);
    if (n < 0 || (size_t)n >= sizeof p) return eng_seterr(err, ENG_EINVAL, "%s: path too long", path);
    if (!stat(p, &sb)) return eng_tok_load(p, out, err);
    snprintf(p, sizeof p, "%s/*.gguf", path);
    glob_t gl;
    int found = glob(p, 0, NULL, &gl) ? 0 : (int)gl.gl_pathc, rc;
    if (found == 1) rc = load_gguf_path(gl.gl_pathv[0], out, err);
    else rc = eng_seterr(err, ENG_EIO, "%s: no tokenizer.json, and %s .gguf file", path,
                         found ? "more than one" : "no");
    if (found) globfree(&gl);
    return rc;
}

void eng_tok_free(eng_tok *t) {
    if (!t) return;
    free(t->piece_off);
    free(t->piece_len);
    free(t->key_off);
    free(t->key_len);
    free(t->flags);
    free(t->pool);
    free(t->vocab);
    free(t->merges);
    free(t->merge_class);
    free(t->added);
    free(t);
}

int eng_tok_vocab_size(const eng_tok *t) { return t ? t->n_ids : 0; }

int eng_tok_bos(const eng_tok *t) { return t ? t->bos_id : -1; }

int eng_tok_encode_prompt(const eng_tok *t, const char *text, size_t len, int **ids, int *n_ids,
                          eng_err *err) {
    int rc = eng_tok_encode(t, text, len, 0, ids, n_ids, err);
    int bos = eng_tok_bos(t);
    if (rc || bos < 0) return rc;
    int *p = realloc(*ids, sizeof *p * (size_t)(*n_ids + 1));
    if (!p) {
        free(*ids);
        *ids = NULL;
        *n_ids = 0;
        return eng_seterr(err, ENG_ENOMEM, "out of memory encoding a prompt");
    }
    memmove(p + 1, p, sizeof *p * (size_t)*n_ids);
    p[0] = bos;
    *ids = p;
    (*n_ids)++;
    return ENG_OK;
}

const char *eng_tok_piece(const eng_tok *t, int id, int *len) {
    if (!t || id < 0 || id >= t->n_ids || t->piece_len[id] < 0) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->piece_len[id];
    return t->pool + t->piece_off[id];
}

int eng_tok_find(const eng_tok *t, const char *text) {
    if (!t || !text) return -1;
    size_t n = strlen(text);
    for (int i = 0; i < t->n_added; i++) {
        const added_tok *a = &t->added[i];
        if (a->len == n && !memcmp(t->pool + a->off, text, n)) return a->id;
    }
    return vocab_get(t, text, n);
}

/* ------------------------------------------------------------ encoding */

typedef struct span { size_t off, len; } span;
typedef struct sym { int id, prev, next, len; } sym;           /* len 0: merged away */
/* A merge waiting in the heap: the symbol at pos (id left) and the one
 * after it (id right) make new_id; lower (rank, sub, pos) goes first. */
typedef struct merge_ev { uint64_t rank; int sub, pos, left, right, new_id; } merge_ev;

/* Scratch space for one encode call. */
typedef struct enc {
    const eng_tok *t;
    int allow_special;
    int *ids;
    int n_ids, cap_ids;
    char *work;                  /* pre-tokenizer text (pieces point into it) */
    size_t work_len, work_cap;
    span *cur, *next;
    int n_cur, n_next, cap_cur, cap_next;
    eng_pt_char *chars;
    int cap_chars;
    sym *syms;
    merge_ev *heap;
    int cap_syms, cap_heap;
    int at_start;                /* the stretch being encoded begins the input */
} enc;

/* Grows the array *pp (any pointer type) to hold need elements. */
static int grow(void *pp, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int c = *cap ? *cap : 64;
    while (c < need) {
        if (c > (1 << 29)) return -1;
        c *= 2;
    }
    void *p;
    memcpy(&p, pp, sizeof p);
    p = realloc(p, (size_t)c * elem);
    if (!p) return -1;
    memcpy(pp, &p, sizeof p);
    *cap = c;
    return 0;
}

static int push_id(enc *e, int id) {
    if (grow(&e->ids, &e->cap_ids, e->n_ids + 1, sizeof *e->ids)) return ENG_ENOMEM;
    e->ids[e->n_ids++] = id;
    return ENG_OK;
}

static int push_span(enc *e, size_t off, size_t len) {
    if (grow(&e->next, &e->cap_next, e->n_next + 1, sizeof *e->next)) return ENG_ENOMEM;
    e->next[e->n_next++] = (span){ off, len };
    return ENG_OK;
}

static int ev_before(const merge_ev *a, const merge_ev *b) {
    if (a->rank != b->rank) return a->rank < b->rank;
    if (a->sub != b->sub) return a->sub < b->sub;
    return a->pos < b->pos;
}

static void heap_push(merge_ev *h, int *n, merge_ev v) {
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (ev_before(&h[p], &v)) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static merge_ev heap_pop(merge_ev *h, int *n) {
    merge_ev top = h[0], v = h[--*n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && ev_before(&h[c + 1], &h[c])) c++;
        if (ev_before(&v, &h[c])) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
    return top;
}

static int n_chars(const char *s, int n) {
    int k = 0;
    for (int i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* Whether tokens a and b merge, and into what, at which rank.  From the
 * merge table (listed merges: rank = position in the list), or, for merges
 * implied by the vocabulary (merge_class, see spm_merge_classes): a and b
 * merge when their keys joined are a token's key; the rank orders as
 * transformers' rebuilt list does (class of the merged token, longer left
 * part, longer right part: one 64-bit number), then the merged token's id
 * (sub). */
static int merge_of(const eng_tok *t, int a, int b, merge_ev *ev) {
    if (!t->merge_class) {
        const merge_slot *m = t->merges ? merge_get(t, a, b) : NULL;
        if (!m) return 0;
        ev->rank = (uint64_t)m->rank;
        ev->sub = 0;
        ev->new_id = m->new_id;
        return 1;
    }
    int na = t->key_len[a], nb = t->key_len[b];
    if (na <= 0 || nb <= 0) return 0;
    const char *ka = t->pool + t->key_off[a], *kb = t->pool + t->key_off[b];
    int id = vocab_get2(t, ka, (size_t)na, kb, (size_t)nb);
    if (id < 0) return 0;
    ev->rank = (uint64_t)t->merge_class[id] << 40 | (uint64_t)(SPM_MAX_KEY - n_chars(ka, na)) << 20 |
               (uint64_t)(SPM_MAX_KEY - n_chars(kb, nb));
    ev->sub = id;
    ev->new_id = id;
    return 1;
}

/* Queues the merge of the symbol at pos with the one after it, if any. */
static void queue_pair(const eng_tok *t, enc *e, int *nh, int pos) {
    int nx = e->syms[pos].next;
    merge_ev ev;
    if (nx < 0 || !merge_of(t, e->syms[pos].id, e->syms[nx].id, &ev)) return;
    ev.pos = pos;
    ev.left = e->syms[pos].id;
    ev.right = e->syms[nx].id;
    heap_push(e->heap, nh, ev);
}

static void add_sym(enc *e, int *m, int id) {
    e->syms[*m] = (sym){ id, *m - 1, *m + 1, 1 };
    ++*m;
}

/* Initial symbols: one per byte (byte-level) or character (SentencePiece
 * style), as the vocabulary has it.  One it lacks becomes, as in
 * `tokenizers`, the <0xHH> tokens of its bytes (byte_fallback, when all of
 * them exist), else the unknown token (a run of them fused if asked; it
 * waits for the next symbol found in the vocabulary, so byte-fallback
 * symbols in between come first, as in `tokenizers`), else nothing. */
static int init_syms(const eng_tok *t, enc *e, const unsigned char *w, int n) {
    int m = 0, unk = 0;
    for (int i = 0; i < n;) {
        uint32_t cp;
        int k = t->chars ? eng_utf8_next(w + i, (size_t)(n - i), &cp) : 1;
        int id = k == 1 ? t->byte_id[w[i]] : vocab_get(t, (const char *)w + i, (size_t)k), fb = 1;
        for (int j = 0; j < k; j++) fb &= t->fallback_id[w[i + j]] >= 0;
        if (id >= 0) {
            if (unk) add_sym(e, &m, t->unk_id);
            unk = 0;
            add_sym(e, &m, id);
        } else if (fb) {
            for (int j = 0; j < k; j++) add_sym(e, &m, t->fallback_id[w[i + j]]);
        } else if (t->unk_id >= 0) {
            if (unk && !t->fuse_unk) add_sym(e, &m, t->unk_id);
            unk = 1;
        }
        i += k;
    }
    if (unk) add_sym(e, &m, t->unk_id);
    if (m) e->syms[m - 1].next = -1;
    return m;
}

/* BPE of one pre-token: repeatedly merges the pair of lowest rank (leftmost
 * on ties), as the `tokenizers` library does. */
static int bpe(enc *e, const char *word, size_t len) {
    const eng_tok *t = e->t;
    if (!len) return ENG_OK;
    if (t->ignore_merges) {
        int id = vocab_get(t, word, len);
        if (id >= 0) return push_id(e, id);
    }
    if (len > (size_t)(1 << 28)) return ENG_ENOMEM;
    /* Each merge queues at most two pairs: the heap holds under 3n. */
    int n = (int)len;
    if (grow(&e->syms, &e->cap_syms, n, sizeof *e->syms) ||
        grow(&e->heap, &e->cap_heap, 3 * n, sizeof *e->heap))
        return ENG_ENOMEM;
    int m = init_syms(t, e, (const unsigned char *)word, n), nh = 0;
    for (int i = 0; i + 1 < m; i++) queue_pair(t, e, &nh, i);
    while (nh > 0) {
        merge_ev top = heap_pop(e->heap, &nh);
        sym *s = &e->syms[top.pos];
        if (!s->len || s->next < 0) continue;
        sym *r = &e->syms[s->next];
        if (s->id != top.left || r->id != top.right) continue;    /* stale entry */
        s->id = top.new_id;
        s->len += r->len;
        r->len = 0;
        s->next = r->next;
        if (s->next >= 0) e->syms[s->next].prev = top.pos;
        if (s->prev >= 0) queue_pair(t, e, &nh, s->prev);
        queue_pair(t, e, &nh, top.pos);
    }
    for (int i = m ? 0 : -1; i >= 0; i = e->syms[i].next) {
        int rc = push_id(e, e->syms[i].id);
        if (rc) return rc;
    }
    return ENG_OK;
}

/* Decodes work[sp] into e->chars; returns the number of characters. */
static int decode_chars(enc *e, span sp) {
    if (sp.len > (size_t)(1 << 28) ||
        grow(&e->chars, &e->cap_chars, (int)sp.len + 1, sizeof *e->chars))
        return -1;
    const unsigned char *s = (const unsigned char *)e->work + sp.off;
    int n = 0;
    for (size_t i = 0; i < sp.len;) {
        uint32_t cp;
        int k = eng_utf8_next(s + i, sp.len - i, &cp);
        e->chars[n++] = (eng_pt_char){ cp, (uint32_t)i, (uint8_t)eng_uni_class(cp) };
        i += (size_t)k;
    }
    return n;
}

static int split_regex(enc *e, span sp, int pattern) {
    int n = decode_chars(e, sp);
    if (n < 0) return ENG_ENOMEM;
    for (int i = 0; i < n;) {
        int k = eng_pt_match(pattern, e->chars, n, i);
        size_t a = e->chars[i].off, b = i + k < n ? e->chars[i + k].off : sp.len;
        if (push_span(e, sp.off + a, b - a)) return ENG_ENOMEM;
        i += k;
    }
    return ENG_OK;
}

/* Digits: each digit alone (individual) or runs of digits, and the text
 * between them, become pieces. */
static int split_digits(enc *e, span sp, int individual) {
    int n = decode_chars(e, sp);
    if (n < 0) return ENG_ENOMEM;
    for (int i = 0; i < n;) {
        int digit = eng_uni_is_numeric(e->chars[i].cp), j = i + 1;
        if (!digit || !individual)
            while (j < n && eng_uni_is_numeric(e->chars[j].cp) == digit) j++;
        size_t a = e->chars[i].off, b = j < n ? e->chars[j].off : sp.len;
        if (push_span(e, sp.off + a, b - a)) return ENG_ENOMEM;
        i = j;
    }
    return ENG_OK;
}

static int work_reserve(enc *e, size_t n) {
    if (e->work_len + n <= e->work_cap) return 0;
    size_t cap = e->work_cap ? e->work_cap : 256;
    while (cap < e->work_len + n) cap *= 2;
    char *p = realloc(e->work, cap);
    if (!p) return -1;
    e->work = p;
    e->work_cap = cap;
    return 0;
}

/* ByteLevel: optionally a space before the piece, then the GPT-2 split.
 * (The mapping of bytes to characters needs no work: we stay in bytes.) */
static int step_bytelevel(enc *e, span sp, int add_prefix_space, int use_regex) {
    if (add_prefix_space && (sp.len == 0 || e->work[sp.off] != ' ')) {
        if (work_reserve(e, sp.len + 1)) return ENG_ENOMEM;
        size_t off = e->work_len;
        e->work[off] = ' ';
        memcpy(e->work + off + 1, e->work + sp.off, sp.len);
        e->work_len += sp.len + 1;
        sp = (span){ off, sp.len + 1 };
    }
    if (use_regex) return split_regex(e, sp, ENG_PT_GPT2);
    return push_span(e, sp.off, sp.len);
}

/* Split on every occurrence of p[0..np) (np > 0), the occurrence kept as
 * behavior (SB_*) says; a merged occurrence joins its neighbour only when
 * that neighbour is not an occurrence too, as in `tokenizers`. */
static int split_string(enc *e, span sp, const char *p, size_t np, int behavior) {
    size_t i = 0, pa = 0, pb = 0;       /* [pa, pb): a piece waiting for its neighbour */
    int rc = ENG_OK;
    while (!rc && i < sp.len) {
        const char *s = e->work + sp.off, *q = find_bytes(s + i, sp.len - i, p, np);
        size_t m = q ? (size_t)(q - s) : sp.len, me = q ? m + np : m;
        if (m > i) {                     /* text [i, m) */
            if (behavior == SB_WITH_NEXT && pb > pa) {
                rc = push_span(e, sp.off + pa, m - pa);
                pa = pb = 0;
            } else if (behavior == SB_WITH_PREVIOUS) {
                pa = i;
                pb = m;
            } else {
                rc = push_span(e, sp.off + i, m - i);
            }
        }
        if (q && !rc) {                  /* the occurrence [m, me) */
            if (behavior == SB_ISOLATED) {
                rc = push_span(e, sp.off + m, np);
            } else if (behavior == SB_WITH_PREVIOUS) {
                size_t a = pb > pa ? pa : m;
                rc = push_span(e, sp.off + a, me - a);
                pa = pb = 0;
            } else if (behavior == SB_WITH_NEXT) {
                if (pb > pa) rc = push_span(e, sp.off + pa, pb - pa);
                pa = m;
                pb = me;
            }
        }
        i = me;
    }
    if (!rc && pb > pa) rc = push_span(e, sp.off + pa, pb - pa);
    return rc;
}

/* Metaspace: spaces become U+2581; U+2581 goes in front (unless the text
 * starts with one) always, or with prepend_scheme first only for text that
 * begins the input; with split, every U+2581 starts a new piece. */
static int step_metaspace(enc *e, span sp, int scheme, int split) {
    size_t spaces = 0;
    for (size_t i = 0; i < sp.len; i++) spaces += e->work[sp.off + i] == ' ';
    int lead = sp.len && (e->work[sp.off] == ' ' || (sp.len >= 3 && !memcmp(e->work + sp.off, META, 3)));
    int pre = !lead && (scheme == PS_ALWAYS || (scheme == PS_FIRST && e->at_start && sp.off == 0));
    size_t n = sp.len + 2 * spaces + (pre ? 3 : 0);
    if (work_reserve(e, n)) return ENG_ENOMEM;
    char *d = e->work + e->work_len;
    const char *s = e->work + sp.off;
    if (pre) memcpy(d, META, 3), d += 3;
    for (size_t i = 0; i < sp.len; i++) {
        if (s[i] == ' ') memcpy(d, META, 3), d += 3;
        else *d++ = s[i];
    }
    span out = { e->work_len, n };
    e->work_len += n;
    return split ? split_string(e, out, META, 3, SB_WITH_NEXT) : push_span(e, out.off, out.len);
}

static int run_step(enc *e, const pt_step *st, span sp) {
    const eng_tok *t = e->t;
    switch (st->kind) {
    case PT_SPLIT: return split_regex(e, sp, st->a);
    case PT_DIGITS: return split_digits(e, sp, st->a);
    case PT_METASPACE: return step_metaspace(e, sp, st->a, st->b);
    case PT_SPLIT_STR: return split_string(e, sp, t->pool + st->a, (size_t)st->b, st->c);
    default: return step_bytelevel(e, sp, st->a, st->b);
    }
}

/* Pre-tokenizes normalized text s[0..n) and BPEs every piece. */
static int encode_text(enc *e, const char *s, size_t n) {
    const eng_tok *t = e->t;
    if (!n) return ENG_OK;
    e->work_len = 0;
    if (work_reserve(e, n)) return ENG_ENOMEM;
    memcpy(e->work, s, n);
    e->work_len = n;
    e->n_next = 0;
    if (push_span(e, 0, n)) return ENG_ENOMEM;
    for (int k = 0; k < t->n_steps; k++) {
        span *sw = e->cur; e->cur = e->next; e->next = sw;
        int cw = e->cap_cur; e->cap_cur = e->cap_next; e->cap_next = cw;
        e->n_cur = e->n_next;
        e->n_next = 0;
        for (int i = 0; i < e->n_cur; i++) {
            int rc = run_step(e, &t->steps[k], e->cur[i]);
            if (rc) return rc;
        }
    }
    for (int i = 0; i < e->n_next; i++) {
        int rc = bpe(e, e->work + e->next[i].off, e->next[i].len);
        if (rc) return rc;
    }
    return ENG_OK;
}

/* Longest added token of the given phase starting at s[pos], or NULL. */
static const added_tok *added_at(const eng_tok *t, const char *s, size_t n, size_t pos, int normalized) {
    unsigned char b = (unsigned char)s[pos];
    for (int i = t->added_first[b]; i < t->added_first[b + 1]; i++) {
        const added_tok *a = &t->added[i];
        if (a->normalized == normalized && a->len <= n - pos && !memcmp(t->pool + a->off, s + pos, a->len))
            return a;
    }
    return NULL;
}

/* Start of the character that ends at s[end] (exclusive). */
static size_t char_before(const char *s, size_t end) {
    size_t i = end - 1;
    while (i > 0 && end - i < 4 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

static uint32_t cp_at(const char *s, size_t n, size_t i) {
    uint32_t cp;
    eng_utf8_next((const unsigned char *)s + i, n - i, &cp);
    return cp;
}

/* single_word: the token may not touch a word character (\w) on either side. */
static int single_word_ok(const char *s, size_t n, size_t a, size_t b) {
    if (a > 0 && eng_uni_is_word(cp_at(s, n, char_before(s, a)))) return 0;
    if (b < n && eng_uni_is_word(cp_at(s, n, b))) return 0;
    return 1;
}

static size_t strip_left(const char *s, size_t n, size_t a, size_t floor) {
    while (a > floor) {
        size_t p = char_before(s, a);
        if (eng_uni_class(cp_at(s, n, p)) != ENG_UNI_SPACE) break;
        a = p;
    }
    return a;
}

static size_t strip_right(const char *s, size_t n, size_t b) {
    while (b < n) {
        uint32_t cp;
        int k = eng_utf8_next((const unsigned char *)s + b, n - b, &cp);
        if (eng_uni_class(cp) != ENG_UNI_SPACE) break;
        b += (size_t)k;
    }
    return b;
}

typedef int (*text_fn)(enc *e, const char *s, size_t n);

/* Splits s on the added tokens of one phase (leftmost, then longest match;
 * lstrip/rstrip take in the whitespace beside them), passing the text in
 * between to fn.  Without allow_special, special tokens are left as text. */
static int split_added(enc *e, const char *s, size_t n, int normalized, text_fn fn) {
    const eng_tok *t = e->t;
    size_t done = 0, pos = 0;
    int at_start = e->at_start, rc;
    while (pos < n) {
        const added_tok *a = added_at(t, s, n, pos, normalized);
        if (!a) { pos++; continue; }
        size_t ms = pos, me = pos + a->len;
        pos = me;
        if (a->special && !e->allow_special) continue;
        if (a->single_word && !single_word_ok(s, n, ms, me)) continue;
        if (a->lstrip) ms = strip_left(s, n, ms, done);
        if (a->rstrip) me = pos = strip_right(s, n, me);
        e->at_start = at_start && done == 0;
        rc = fn(e, s + done, ms - done);
        if (!rc) rc = push_id(e, a->id);
        if (rc) return rc;
        done = me;
    }
    e->at_start = at_start && done == 0;
    rc = fn(e, s + done, n - done);
    e->at_start = at_start;
    return rc;
}

/* The normalizer's steps over s[0..n), into a malloc'd *out (*nout bytes);
 * 0, or -1 when out of memory. */
static int normalize(const eng_tok *t, const char *s, size_t n, char **out, size_t *nout) {
    char *cur = NULL;
    for (int k = 0; k < t->n_norm; k++) {
        const nz_step *st = &t->norm[k];
        const char *a = t->pool + st->a, *b = t->pool + st->b;
        char *next = NULL;
        size_t nn = 0;
        if (st->kind == NZ_NFC) {
            if (eng_uni_nfc(s, n, &next, &nn)) { free(cur); return -1; }
        } else if (st->kind == NZ_PREPEND && n) {
            if (!(next = malloc(st->na + n + 1))) { free(cur); return -1; }
            memcpy(next, a, st->na);
            memcpy(next + st->na, s, n);
            nn = st->na + n;
        } else if (st->kind == NZ_REPLACE) {
            size_t hits = 0;
            for (const char *q = s; (q = find_bytes(q, n - (size_t)(q - s), a, st->na)); q += st->na) hits++;
            if (!(next = malloc(n + hits * st->nb + 1))) { free(cur); return -1; }
            for (size_t i = 0; i < n;) {
                if (i + st->na <= n && !memcmp(s + i, a, st->na)) {
                    memcpy(next + nn, b, st->nb);
                    nn += st->nb;
                    i += st->na;
                } else {
                    next[nn++] = s[i++];
                }
            }
        } else {
            continue;                    /* Prepend on empty text */
        }
        free(cur);
        cur = next;
        s = cur;
        n = nn;
    }
    *out = cur;
    *nout = n;
    return 0;
}

static int encode_normalized(enc *e, const char *s, size_t n) {
    if (!n) return ENG_OK;
    char *norm = NULL;
    size_t nn = n;
    if (normalize(e->t, s, n, &norm, &nn)) return ENG_ENOMEM;
    int rc = split_added(e, norm ? norm : s, nn, 1, encode_text);
    free(norm);
    return rc;
}

int eng_tok_encode(const eng_tok *t, const char *text, size_t len, int allow_special,
                   int **ids, int *n_ids, eng_err *err) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!t || !ids || !n_ids || (!text && len))
        return eng_seterr(err, ENG_EINVAL, "eng_tok_encode: NULL argument");
    enc e = { .t = t, .allow_special = allow_special, .at_start = 1 };
    int rc = split_added(&e, text ? text : "", len, 0, encode_normalized);
    free(e.work);
    free(e.cur);
    free(e.next);
    free(e.chars);
    free(e.syms);
    free(e.heap);
    if (rc) {
        free(e.ids);
        return eng_seterr(err, rc, "eng_tok_encode: out of memory");
    }
    if (!e.ids) e.ids = malloc(sizeof(int));   /* callers may free an empty result */
    if (!e.ids) return eng_seterr(err, ENG_ENOMEM, "eng_tok_encode: out of memory");
    *ids = e.ids;
    *n_ids = e.n_ids;
    return ENG_OK;
}

/* ------------------------------------------------------------ decoding */

/* Copies raw bytes to out as valid UTF-8, each invalid sequence replaced by
 * U+FFFD the way Rust's from_utf8_lossy does; returns the bytes written.
 * out needs room for 3 * n. */
static size_t utf8_lossy(const unsigned char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int len, r = eng_utf8_scan(s + i, n - i, &len);
        if (r == 1) memcpy(out + k, s + i, (size_t)len), k += (size_t)len;
        else memcpy(out + k, "\xEF\xBF\xBD", 3), k += 3;
        i += (size_t)len;
    }
    return k;
}

static int skipped(const eng_tok *t, int id, int skip_special) {
    return id < 0 || id >= t->n_ids || t->piece_len[id] < 0 || (skip_special && (t->flags[id] & TF_SPECIAL));
}

static int utf8_valid(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int len;
        if (eng_utf8_scan(s + i, n - i, &len) != 1) return 0;
        i += (size_t)len;
    }
    return 1;
}

/* The tokens' pieces one after the other, then as valid UTF-8 (invalid
 * sequences become U+FFFD as Rust's from_utf8_lossy does).  SentencePiece
 * decoders: a run of byte tokens (ByteFallback) that is not valid UTF-8 as
 * a whole gives one U+FFFD per byte; under the Metaspace decoder the first
 * token loses its U+2581 instead of turning them into spaces; Strip takes
 * up to dec_strip spaces off the front of the whole text. */
char *eng_tok_decode(const eng_tok *t, const int *ids, int n_ids, int skip_special) {
    if (!t || (!ids && n_ids > 0)) return NULL;
    size_t total = 0;
    for (int i = 0; i < n_ids; i++)
        if (!skipped(t, ids[i], skip_special))
            total += (size_t)t->piece_len[ids[i]] + (size_t)(t->key_len[ids[i]] > 0 ? t->key_len[ids[i]] : 0);
    unsigned char *raw = malloc(3 * total + 1);
    if (!raw) return NULL;
    size_t k = 0;
    int first = 1;
    for (int i = 0; i < n_ids; i++) {
        int id = ids[i];
        if (skipped(t, id, skip_special)) continue;
        if (t->flags[id] & TF_BYTE) {
            size_t a = k;
            for (; i < n_ids; i++) {
                if (skipped(t, ids[i], skip_special)) continue;
                if (!(t->flags[ids[i]] & TF_BYTE)) break;
                raw[k++] = (unsigned char)t->pool[t->piece_off[ids[i]]];
            }
            i--;
            if (!utf8_valid(raw + a, k - a)) {
                size_t n = k - a;
                for (size_t j = 0; j < n; j++) memcpy(raw + a + 3 * j, "\xEF\xBF\xBD", 3);
                k = a + 3 * n;
            }
        } else if (first && t->dec_meta_first && t->key_len[id] >= 0) {
            const char *key = t->pool + t->key_off[id];
            for (int j = 0; j < t->key_len[id];) {
                if (j + 3 <= t->key_len[id] && !memcmp(key + j, META, 3)) { j += 3; continue; }
                raw[k++] = (unsigned char)key[j++];
            }
        } else {
            memcpy(raw + k, t->pool + t->piece_off[id], (size_t)t->piece_len[id]);
            k += (size_t)t->piece_len[id];
        }
        first = 0;
    }
    size_t skip = 0;
    while (skip < k && skip < (size_t)t->dec_strip && raw[skip] == ' ') skip++;
    char *out = malloc(3 * (k - skip) + 1);
    if (out) out[utf8_lossy(raw + skip, k - skip, out)] = 0;
    free(raw);
    return out;
}

/* Streaming: the bytes of s->pend then the new piece are handed out one
 * character at a time; a valid but unfinished character at the end waits in
 * s->pend for the next token.  An id < 0 flushes: what waits is incomplete
 * for good and comes out as U+FFFD, as in eng_tok_decode (SentencePiece
 * style: one per byte, as ByteFallback gives for a run of byte tokens that
 * is invalid throughout).  A stream continues a text, so the decoder's
 * Strip and the Metaspace first-token rule do not apply. */
int eng_tok_stream_put(const eng_tok *t, eng_tok_stream *s, int id, int skip_special,
                       char *out, int cap) {
    if (!t || !s || !out || cap <= 0) return 0;
    const unsigned char *piece = (const unsigned char *)"";
    size_t plen = 0;
    int flush = id < 0;
    if (!flush && !skipped(t, id, skip_special)) {
        piece = (const unsigned char *)t->pool + t->piece_off[id];
        plen = (size_t)t->piece_len[id];
    }
    if (s->n_pend < 0 || s->n_pend > 4) s->n_pend = 0;
    size_t total = (size_t)s->n_pend + plen, i = 0;
    int k = 0;
    while (i < total) {
        unsigned char win[4];
        size_t w = 0;
        for (; w < 4 && i + w < total; w++) {
            size_t j = i + w;
            win[w] = j < (size_t)s->n_pend ? s->pend[j] : piece[j - (size_t)s->n_pend];
        }
        int len, r = eng_utf8_scan(win, w, &len);
        if (r < 0 && !flush) {                  /* unfinished: keep for later */
            memcpy(s->pend, win, w);
            s->n_pend = (int)w;
            out[k] = 0;
            return k;
        }
        if (r < 0) len = (int)w;
        if (r == 1 && k + len < cap) { memcpy(out + k, win, (size_t)len); k += len; }
        /* What does not fit in out is lost: 3 * longest piece + 16 always fits. */
        for (int f = r == 1 ? 0 : t->chars ? len : 1; f > 0 && k + 3 < cap; f--) {
            memcpy(out + k, "\xEF\xBF\xBD", 3);
            k += 3;
        }
        i += (size_t)len;
    }
    s->n_pend = 0;
    out[k] = 0;
    return k;
}
