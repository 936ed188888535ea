/* pp_internal.h — helpers shared by the ParallelPrompt files (pp*.c); not API. */
#ifndef PP_INTERNAL_H
#define PP_INTERNAL_H
#include <stddef.h>
#include "orc_pp.h"

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
