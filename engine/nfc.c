/* nfc.c — UTF-8 decoding and NFC normalization (Unicode UAX #15: canonical
 * decomposition, canonical ordering, canonical composition), on the tables
 * of unicode.c.  Hangul syllables are decomposed and composed by formula. */
#include <stdlib.h>
#include <string.h>
#include "unicode.h"

enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7,
       L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT,
       S_COUNT = L_COUNT * N_COUNT };

int eng_utf8_scan(const unsigned char *s, size_t n, int *len) {
    unsigned char c = s[0];
    int need;
    unsigned char lo = 0x80, hi = 0xBF;   /* allowed range of the 2nd byte */
    if (c < 0x80) { *len = 1; return 1; }
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;          /* no overlong forms */
        if (c == 0xED) hi = 0x9F;          /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;          /* nothing above U+10FFFF */
    } else { *len = 1; return 0; }
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n) { *len = i; return -1; }
        unsigned char b = s[i];
        int ok = i == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
        if (!ok) { *len = i; return 0; }
    }
    *len = need + 1;
    return 1;
}

int eng_utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    int len;
    if (eng_utf8_scan(s, n, &len) != 1) { *cp = ENG_UNI_BAD + s[0]; return 1; }
    switch (len) {
    case 1: *cp = s[0]; break;
    case 2: *cp = (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F); break;
    case 3: *cp = (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F); break;
    default:
        *cp = (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
              (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
    }
    return len;
}

int eng_utf8_put(uint32_t cp, unsigned char *out) {
    if (cp >= ENG_UNI_BAD) { out[0] = (unsigned char)(cp - ENG_UNI_BAD); return 1; }
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

static int ccc_of(uint32_t cp) { return cp >= ENG_UNI_BAD ? 0 : eng_uni_ccc(cp); }

/* Appends the full canonical decomposition of cp to buf (room for 4). */
static int decompose(uint32_t cp, uint32_t *buf) {
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE, t = s % T_COUNT;
        buf[0] = L_BASE + s / N_COUNT;
        buf[1] = V_BASE + (s % N_COUNT) / T_COUNT;
        if (!t) return 2;
        buf[2] = T_BASE + t;
        return 3;
    }
    int n;
    const uint32_t *d = cp < ENG_UNI_BAD ? eng_uni_decomp(cp, &n) : NULL;
    if (!d) { buf[0] = cp; return 1; }
    memcpy(buf, d, (size_t)n * sizeof *d);
    return n;
}

static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 &&
        b > T_BASE && b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    if (a >= ENG_UNI_BAD || b >= ENG_UNI_BAD) return 0;
    return eng_uni_compose_pair(a, b);
}

/* Stable sort of each run of non-starters by combining class (runs are
 * short, so insertion sort). */
static void canonical_order(uint32_t *c, int n) {
    for (int i = 1; i < n; i++) {
        int cc = ccc_of(c[i]);
        if (!cc) continue;
        uint32_t x = c[i];
        int j = i;
        while (j > 0) {
            int pc = ccc_of(c[j - 1]);
            if (pc <= cc) break;
            c[j] = c[j - 1];
            j--;
        }
        c[j] = x;
    }
}

/* Canonical composition in place; returns the new length. */
static int canonical_compose(uint32_t *c, int n) {
    if (n == 0) return 0;
    int starter = 0, out = 1;
    int last_cc = ccc_of(c[0]) ? 256 : 0;   /* a leading non-starter blocks */
    for (int i = 1; i < n; i++) {
        int cc = ccc_of(c[i]);
        uint32_t comp = compose(c[starter], c[i]);
        if (comp && (last_cc < cc || last_cc == 0)) {
            c[starter] = comp;
            continue;
        }
        if (cc == 0) starter = out;
        last_cc = cc;
        c[out++] = c[i];
    }
    return out;
}

static int copy_out(const char *s, size_t n, char **out, size_t *out_n) {
    char *dst = malloc(n + 1);
    if (!dst) return -1;
    memcpy(dst, s, n);
    dst[n] = 0;
    *out = dst; *out_n = n;
    return 0;
}

int eng_uni_nfc(const char *s, size_t n, char **out, size_t *out_n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n && u[i] < 0x80) i++;
    if (i == n) return copy_out(s, n, out, out_n);   /* ASCII is always NFC */
    if (n > (size_t)(INT32_MAX / 2 - 8)) return -1;
    /* A character decomposes to at most 1.5 code points per UTF-8 byte. */
    uint32_t *cps = malloc((n * 2 + 4) * sizeof *cps);
    if (!cps) return -1;
    int m = 0;
    for (i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)eng_utf8_next(u + i, n - i, &cp);
        m += decompose(cp, cps + m);
    }
    canonical_order(cps, m);
    m = canonical_compose(cps, m);
    size_t need = 0;
    unsigned char tmp[4];
    for (int k = 0; k < m; k++) need += (size_t)eng_utf8_put(cps[k], tmp);
    char *dst = malloc(need + 1);
    if (!dst) { free(cps); return -1; }
    size_t k = 0;
    for (int j = 0; j < m; j++) k += (size_t)eng_utf8_put(cps[j], (unsigned char *)dst + k);
    dst[k] = 0;
    free(cps);
    *out = dst; *out_n = k;
    return 0;
}
