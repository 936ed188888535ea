/* math_int.h — what the MATH grader's stages share; not API (see orc_math.h).
 *
 *   math_norm.c     LaTeX tokens, normalisation (orc_math_normalize)
 *   math_eval.c     evaluation with exact rationals (orc_math_eval)
 *   math_cmp.c      equivalence (orc_math_equiv, orc_math_equiv_gold)
 *   math_extract.c  the final answer in a text (orc_math_extract, _grade) */
#ifndef MATH_INT_H
#define MATH_INT_H
#include <stddef.h>
#include "orc_math.h"

typedef struct { const char *p; size_t n; } span;

static inline int mth_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static inline int mth_digit(char c) { return c >= '0' && c <= '9'; }
static inline int mth_alnum(char c) { return mth_alpha(c) || mth_digit(c); }
static inline int mth_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
static inline char mth_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }

/* ------------------------------------------------ tokens (math_norm.c) */

/* Length of the LaTeX token starting at s[i] == '\\': a control word
 * ("\frac" -> 5), a control symbol ("\," -> 2) or a lone trailing "\" (1). */
size_t mth_macro_len(const char *s, size_t i, size_t n);
/* Length of the token at s[i]: one char, "\\" (a matrix row break) or a macro. */
size_t mth_tok_len(const char *s, size_t i, size_t n);
int    mth_name_eq(const char *m, size_t len, const char *name);
int    mth_in_list(const char *m, size_t len, const char *const *list);
/* Bracket depth change of a token: ( [ { \{ open, ) ] } \} close. */
int    mth_tok_delta(const char *t, size_t len);
/* Splits s[0..n) at top-level tokens equal to sep (",", "=", "&", "\\\\",
 * "\\cup").  Returns the number of parts (>= 1) with a malloc'd array in
 * *out, or 0 with *out NULL when out of memory. */
size_t mth_split_top(const char *s, size_t n, const char *sep, span **out);
/* If s[0..n) is one bracketed group ("(..)", "[..)", "\{..\}"), gives its
 * open and close tokens and the inside. */
int    mth_group_of(const char *s, size_t n, span *open, span *close, span *inner);
/* Is s[0..n) a function name the evaluator knows ("sin", "ln", ...)? */
int    mth_is_func_name(const char *s, size_t n);

/* --------------------------------------------- evaluation (math_eval.c) */

/* A value: v always; p/q too (reduced, q > 0, 128-bit) when exact, i.e.
 * reached from integers and decimals by + - * / and rational powers that
 * stay rational and fit. */
typedef struct { double v; __int128 p, q; int exact; } mth_num;

/* Evaluates a normalised string without variables.  1 and *out, or 0. */
int mth_eval_const(const char *s, mth_num *out);
/* Evaluates with every variable (a letter, "x_{1}", "\theta") set to a
 * value drawn for probe number `probe`; *used gets a 64-bit signature of
 * the variables read (0: none). */
int mth_eval_probe(const char *s, int probe, double *out, unsigned long long *used);

#endif
