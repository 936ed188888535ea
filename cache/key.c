/* key.c — normalised cache keys: URLs and search queries that mean the same
 * thing map to the same key. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "cache.h"

static int is_unreserved(unsigned char c) {
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}
static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
static void put_escape(eng_buf *b, unsigned char c) {
    static const char hex[] = "0123456789ABCDEF";
    char e[3] = { '%', hex[c >> 4], hex[c & 15] };
    eng_buf_add(b, e, 3);
}

/* Copies n bytes of a path or query part: escapes of unreserved characters
 * decoded, other escapes uppercased, a stray '%' and bytes outside
 * unreserved + allowed escaped. */
static void norm_escapes(eng_buf *b, const char *s, size_t n, const char *allowed) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%' && i + 2 < n &&
            hexval((unsigned char)s[i + 1]) >= 0 && hexval((unsigned char)s[i + 2]) >= 0) {
            unsigned char v = (unsigned char)(hexval((unsigned char)s[i + 1]) * 16 +
                                              hexval((unsigned char)s[i + 2]));
            if (is_unreserved(v)) eng_buf_addc(b, (char)v);
            else put_escape(b, v);
            i += 2;
        } else if (c != '%' && (is_unreserved(c) || (c && strchr(allowed, c)))) {
            eng_buf_addc(b, (char)c);
        } else {
            put_escape(b, c);
        }
    }
}

/* Resolves "." and ".." segments of an absolute path in place and drops
 * trailing slashes (but keeps "/"). */
static void resolve_path(eng_buf *b, size_t start) {
    char *p = b->p + start;
    size_t len = b->n - start, out = 0, i = 0;
    while (i < len) {                        /* p[i] == '/' here */
        size_t j = i + 1;
        while (j < len && p[j] != '/') j++;
        size_t seg = j - i - 1;
        if (seg == 1 && p[i + 1] == '.') {
            /* "." : drop */
        } else if (seg == 2 && p[i + 1] == '.' && p[i + 2] == '.') {
            while (out > 0 && p[--out] != '/') {}          /* pop one segment */
        } else {
            memmove(p + out, p + i, j - i);
            out += j - i;
        }
        i = j;
    }
    while (out > 1 && p[out - 1] == '/') out--;
    if (out == 0) p[out++] = '/';
    b->n = start + out;
    b->p[b->n] = 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends "?a&b" with the query's parameters normalised and sorted. */
static int put_query(eng_buf *b, const char *q, size_t n, eng_err *err) {
    size_t np = 1;
    for (size_t i = 0; i < n; i++) np += q[i] == '&';
    char **parts = calloc(np, sizeof *parts);
    if (!parts) return eng_seterr(err, ENG_ENOMEM, "cache key: out of memory");
    size_t k = 0, i = 0;
    int rc = ENG_OK;
    while (i <= n && rc == ENG_OK) {
        size_t j = i;
        while (j < n && q[j] != '&') j++;
        if (j > i) {
            eng_buf one = {0};
            norm_escapes(&one, q + i, j - i, "!$'()*+,;=:@/?");
            if (one.oom) rc = eng_seterr(err, ENG_ENOMEM, "cache key: out of memory");
            else parts[k++] = one.p;
        }
        i = j + 1;
    }
    if (rc == ENG_OK && k) {
        qsort(parts, k, sizeof *parts, cmp_str);
        for (size_t m = 0; m < k; m++) {
            eng_buf_addc(b, m ? '&' : '?');
            eng_buf_add(b, parts[m], strlen(parts[m]));
        }
    }
    for (size_t m = 0; m < k; m++) free(parts[m]);
    free(parts);
    return rc;
}

static int default_port(const char *scheme, long port) {
    static const struct { const char *s; long p; } dp[] = {
        {"http", 80}, {"https", 443}, {"ws", 80}, {"wss", 443}, {"ftp", 21},
    };
    for (size_t i = 0; i < sizeof dp / sizeof dp[0]; i++)
        if (!strcmp(scheme, dp[i].s) && dp[i].p == port) return 1;
    return 0;
}

/* Appends "//userinfo@host:port" from the authority a[0..n). */
static int put_authority(eng_buf *b, const char *scheme, const char *a, size_t n,
                         const char *url, eng_err *err) {
    const char *at = NULL;
    for (size_t i = 0; i < n; i++) if (a[i] == '@') at = a + i;
    eng_buf_add(b, "//", 2);
    if (at) {
        norm_escapes(b, a, (size_t)(at - a), "!$&'()*+,;=:");
        eng_buf_addc(b, '@');
        n -= (size_t)(at + 1 - a);
        a = at + 1;
    }
    size_t hl = 0;
    if (n && a[0] == '[') {                        /* IPv6 literal */
        while (hl < n && a[hl] != ']') hl++;
        if (hl == n) return eng_seterr(err, ENG_EINVAL, "cache key: bad IPv6 host in \"%.200s\"", url);
        hl++;
    } else {
        while (hl < n && a[hl] != ':') hl++;
    }
    if (hl == 0 && strcmp(scheme, "file"))
        return eng_seterr(err, ENG_EINVAL, "cache key: no host in \"%.200s\"", url);
    for (size_t i = 0; i < hl; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c <= ' ' || c == 0x7f || strchr("<>\"{}|\\^`", c))
            return eng_seterr(err, ENG_EINVAL, "cache key: bad character in host of \"%.200s\"", url);
        eng_buf_addc(b, (char)tolower(c));
    }
    if (hl < n && a[hl] != ':')
        return eng_seterr(err, ENG_EINVAL, "cache key: junk after host in \"%.200s\"", url);
    if (hl + 1 < n) {                              /* ":port" with digits */
        long port = 0;
        for (size_t i = hl + 1; i < n; i++) {
            if (!isdigit((unsigned char)a[i]) || port > 65535)
                return eng_seterr(err, ENG_EINVAL, "cache key: bad port in \"%.200s\"", url);
            port = port * 10 + (a[i] - '0');
        }
        if (port > 65535)
            return eng_seterr(err, ENG_EINVAL, "cache key: bad port in \"%.200s\"", url);
        if (!default_port(scheme, port)) {
            char pb[16];
            int pn = snprintf(pb, sizeof pb, ":%ld", port);
            eng_buf_add(b, pb, (size_t)pn);
        }
    }
    return ENG_OK;
}

/* Length of "scheme" when s starts with "scheme://", else 0. */
static size_t scheme_len(const char *s) {
    size_t i = 0;
    if (!isalpha((unsigned char)s[0])) return 0;
    while (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.') i++;
    return (i < 32 && !strncmp(s + i, "://", 3)) ? i : 0;
}

static int finish(eng_buf *b, char **out, const char *what, eng_err *err) {
    if (!b->oom && b->n > CACHE_KEY_MAX) {
        eng_buf_free(b);
        return eng_seterr(err, ENG_EINVAL, "cache key: %s longer than %d bytes", what, CACHE_KEY_MAX);
    }
    *out = eng_buf_take(b);   /* NULL after an allocation failed */
    return *out ? ENG_OK : eng_seterr(err, ENG_ENOMEM, "cache key: out of memory");
}

/* Trims ASCII whitespace: *s and *n describe what is left. */
static void trim(const char **s, size_t *n) {
    while (*n && isspace((unsigned char)**s)) { (*s)++; (*n)--; }
    while (*n && isspace((unsigned char)(*s)[*n - 1])) (*n)--;
}

int cache_key_url(const char *url, char **out, eng_err *err) {
    *out = NULL;
    if (!url) return eng_seterr(err, ENG_EINVAL, "cache key: NULL url");
    size_t n = strlen(url);
    trim(&url, &n);
    if (n > 4 * CACHE_KEY_MAX)
        return eng_seterr(err, ENG_EINVAL, "cache key: url longer than %d bytes", 4 * CACHE_KEY_MAX);
    size_t sl = scheme_len(url);
    if (!sl) return eng_seterr(err, ENG_EINVAL, "cache key: \"%.200s\" is not an absolute URL (scheme://...)", url);
    char scheme[32];
    for (size_t i = 0; i < sl; i++) scheme[i] = (char)tolower((unsigned char)url[i]);
    scheme[sl] = 0;
    const char *end = url + n, *hash = memchr(url, '#', n);
    if (hash) end = hash;                                 /* fragment dropped */
    const char *a = url + sl + 3, *ae = a;
    while (ae < end && *ae != '/' && *ae != '?') ae++;
    const char *q = end > ae ? memchr(ae, '?', (size_t)(end - ae)) : NULL;
    const char *pe = q ? q : end;

    eng_buf b = {0};
    eng_buf_add(&b, scheme, sl);
    eng_buf_addc(&b, ':');
    int rc = put_authority(&b, scheme, a, (size_t)(ae - a), url, err);
    if (rc == ENG_OK) {
        size_t start = b.n;
        eng_buf_addc(&b, '/');
        if (pe > ae) norm_escapes(&b, ae + 1, (size_t)(pe - ae - 1), "!$&'()*+,;=:@/");
        if (!b.oom) resolve_path(&b, start);
        if (q) rc = put_query(&b, q + 1, (size_t)(end - q - 1), err);
    }
    if (rc != ENG_OK) { eng_buf_free(&b); return rc; }
    return finish(&b, out, "url", err);
}

int cache_key_search(const char *query, char **out, eng_err *err) {
    *out = NULL;
    if (!query) return eng_seterr(err, ENG_EINVAL, "cache key: NULL search query");
    size_t n = strlen(query);
    trim(&query, &n);
    if (!n) return eng_seterr(err, ENG_EINVAL, "cache key: empty search query");
    eng_buf b = {0};
    eng_buf_add(&b, "search:", 7);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)query[i];
        if (isspace(c)) {
            if (!isspace((unsigned char)query[i - 1])) eng_buf_addc(&b, ' ');  /* i > 0: trimmed */
        } else {
            eng_buf_addc(&b, (char)tolower(c));
        }
    }
    return finish(&b, out, "search query", err);
}

int cache_key(const char *raw, char **out, eng_err *err) {
    *out = NULL;
    if (!raw) return eng_seterr(err, ENG_EINVAL, "cache key: NULL key");
    if (!strncasecmp(raw, "search:", 7)) return cache_key_search(raw + 7, out, err);
    size_t n = strlen(raw);
    trim(&raw, &n);
    if (scheme_len(raw)) return cache_key_url(raw, out, err);
    if (!n) return eng_seterr(err, ENG_EINVAL, "cache key: empty key");
    eng_buf b = {0};
    eng_buf_add(&b, raw, n);
    return finish(&b, out, "key", err);
}
