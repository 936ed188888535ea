/* pp_internal.h — helpers shared by the ParallelPrompt files (pp*.c); not API. */
#ifndef PP_INTERNAL_H
#define PP_INTERNAL_H
#include <stddef.h>
#include "orc_pp.h"

/* Growable byte buffer.  After a failed allocation oom is set and further
 * appends do nothing, so callers check once at the end. */
typedef struct pp_buf { char *p; size_t n, cap; int oom; } pp_buf;
void  pp_buf_add(pp_buf *b, const char *s, size_t len);
void  pp_buf_str(pp_buf *b, const char *s);
void  pp_buf_fmt(pp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Returns the NUL-terminated text (caller frees), or NULL after oom. */
char *pp_buf_take(pp_buf *b);
void  pp_buf_free(pp_buf *b);

char *pp_strndup(const char *s, size_t n);
char *pp_strdup(const char *s);
/* Trimmed copy of s[0..n) (white space at both ends removed). */
char *pp_trimdup(const char *s, size_t n);
int   pp_is_blank(const char *s);
/* Case-insensitive (ASCII) search for needle in hay[0..n); returns offset or -1. */
long  pp_ci_find(const char *hay, size_t n, const char *needle);
/* A copy of text with literal "\n", "\t", "\r" escapes turned into the
 * characters, done only when the text has no real newline (prompts pasted
 * from logs); otherwise a plain copy. */
char *pp_unescape(const char *text);
#endif
