/* tool_util.c — small helpers of the tools module: buffers, strings, UTF-8,
 * clock, URLs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>
#include "tool_internal.h"

double tool_ctx_left(const tool_ctx *c) {
    if (!c || c->deadline <= 0) return 1e9;
    double left = c->deadline - eng_now_s();
    return left > 0 ? left : 0;
}

char *tool_strndup(const char *s, size_t n) {
    if (!s) return NULL;
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *tool_strdup(const char *s) { return s ? tool_strndup(s, strlen(s)) : NULL; }

size_t tool_utf8_cut(const char *s, size_t n, size_t cap) {
    if (n <= cap) return n;
    size_t i = cap;
    /* back up over continuation bytes to the start of the cut character */
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

int tool_add_utf8(eng_buf *b, unsigned cp) {
    char u[4];
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
    if (cp < 0x80) return eng_buf_addc(b, (char)cp);
    if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F));
        return eng_buf_add(b, u, 2);
    }
    if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        return eng_buf_add(b, u, 3);
    }
    u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F));
    return eng_buf_add(b, u, 4);
}

/* -------------------------------------------------------------------- URLs */
static int is_http_url(const char *u) {
    return u && (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0);
}

char *tool_url_resolve(const char *base, const char *ref) {
    if (!ref) return NULL;
    while (*ref == ' ' || *ref == '\t' || *ref == '\n' || *ref == '\r') ref++;
    if (!*ref || *ref == '#') return NULL;
    CURLU *h = curl_url();
    if (!h) return NULL;
    char *out = NULL, *url = NULL;
    int ok;
    if (is_http_url(ref) || !base) {
        ok = curl_url_set(h, CURLUPART_URL, ref, 0) == CURLUE_OK;
    } else {
        /* a relative reference set on a handle holding a URL is resolved */
        ok = curl_url_set(h, CURLUPART_URL, base, 0) == CURLUE_OK &&
             curl_url_set(h, CURLUPART_URL, ref, 0) == CURLUE_OK;
    }
    if (ok) ok = curl_url_set(h, CURLUPART_FRAGMENT, NULL, 0) == CURLUE_OK;
    if (ok && curl_url_get(h, CURLUPART_URL, &url, 0) == CURLUE_OK && is_http_url(url))
        out = tool_strdup(url);
    curl_free(url);
    curl_url_cleanup(h);
    return out;
}

char *tool_url_encode(const char *s) {
    eng_buf b = {0};
    static const char hex[] = "0123456789ABCDEF";
    if (eng_buf_add(&b, "", 0)) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || strchr("-_.~", *p);
        char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
        if (plain ? eng_buf_addc(&b, (char)*p) : eng_buf_add(&b, esc, 3)) {
            eng_buf_free(&b);
            return NULL;
        }
    }
    return eng_buf_take(&b);
}
