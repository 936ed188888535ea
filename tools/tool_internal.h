/* tool_internal.h — helpers shared by the files of the tools module only. */
#ifndef TOOL_INTERNAL_H
#define TOOL_INTERNAL_H
#include <stddef.h>
#include "tool.h"

char *tool_strdup(const char *s);            /* NULL on NULL or no memory */
char *tool_strndup(const char *s, size_t n);
/* Length of the longest prefix of s (n bytes) that ends on a UTF-8
 * character boundary, at most cap. */
size_t tool_utf8_cut(const char *s, size_t n, size_t cap);
/* Appends code point cp as UTF-8. */
int  tool_add_utf8(eng_buf *b, unsigned cp);

/* Resolves ref against base (either may be relative/NULL) into a malloc'd
 * absolute http(s) URL without fragment, or NULL when it is not one. */
char *tool_url_resolve(const char *base, const char *ref);
/* Percent-encodes s for a query string. malloc'd. */
char *tool_url_encode(const char *s);

/* One plain GET with libcurl for the tools (not the page logic):
 * body in *body (malloc'd), content type in *ctype (malloc'd or NULL). */
typedef struct tool_http_req {
    const char *url;
    double connect_timeout_s, timeout_s;
    size_t max_bytes;
    int    max_redirects;          /* < 0: none followed */
    const char *user_agent;
    const tool_ctx *ctx;
    int    refuse_private;         /* no connection to loopback, link-local, private or
                                    * unspecified addresses (tool_fetch_opts.allow_private) */
} tool_http_req;
typedef struct tool_http_resp {
    long status;
    char *body; size_t n_body;
    char *ctype;
    char *final_url;
    double elapsed_s;
} tool_http_resp;
/* accept_types: NULL-terminated list of acceptable media types (checked as
 * soon as the headers arrive), or NULL for any. */
int  tool_http_get(const tool_http_req *q, const char *const *accept_types,
                   tool_http_resp *r, eng_err *err);
void tool_http_resp_free(tool_http_resp *r);

/* Corpus database (tool_corpus.c), shared with the web environment. */
struct sqlite3;
int tool_corpus_open(const char *path, int readonly, struct sqlite3 **db, eng_err *err);
int tool_corpus_put(struct sqlite3 *db, const char *url, const char *title, const char *html,
                    eng_err *err);
/* Best k pages for q as a JSON array of {"title","url","snippet"}; urls
 * are base_url + the page's path. */
int tool_corpus_search(struct sqlite3 *db, const char *q, int k, const char *base_url,
                       cJSON **out, eng_err *err);

double   tool_rng_unit(uint64_t *s);        /* uniform in (0, 1) */
#endif
