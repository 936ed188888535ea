/* orc_math.h — answer extraction and grading for MATH-style benchmarks
 * (MATH-500), used to score test-time-scaling runs, to cluster answers for
 * majority votes and by `brisk grade`.
 *
 * The rules follow the usual MATH graders (Hendrycks' math_equivalence, the
 * PRM800K / "minerva" normalisation) and Hugging Face's Math-Verify: LaTeX
 * noise, units and \text are stripped, then answers are compared as
 * strings, structurally (lists and sets in any order, tuples / intervals /
 * matrices in order, equations and inequalities, assignments such as
 * "x=5" by their value), numerically (exact rationals exactly; a decimal
 * to 6 places) and, for expressions in variables, at probe points.  No code
 * is executed and there is no CAS: a small evaluator reads numbers,
 * + - * / ^ !, \frac, \sqrt, \binom, |x|, \pi, e, \sin ... \ln and
 * parentheses.  Where brisk departs from Math-Verify on purpose is listed in
 * docs/math_grading.md.
 *
 * Every function accepts any byte string (NULL, empty, unbalanced braces,
 * invalid UTF-8, megabytes) without crashing.  Returned strings are malloc'd;
 * the caller frees them.  Answers longer than ORC_MATH_MAX_LEN bytes are not
 * answers: normalize returns NULL for them and equiv says 0. */
#ifndef ORC_MATH_H
#define ORC_MATH_H
#include <cjson/cJSON.h>

#define ORC_MATH_MAX_LEN (1u << 20)

typedef struct orc_math_opts {
    int ordered;     /* compare bare comma lists ("1, -2") in order; default
                        0: as multisets.  Sets never care, tuples always do. */
} orc_math_opts;

/* The final answer in a model's output: the boxes of the final answer
 * (the last \boxed{} / \fbox{} with the boxes right before it, joined by
 * ", "), else the math or text after "final answer is" / "answer is" /
 * "answer:", else the last math ($..$, \(..\), \[..\]) in the text, else
 * its last number.  After a reasoning model's thinking: with "</think>" in
 * the text, only what follows the last one is read.  NULL when there is
 * none (or out of memory). */
char *orc_math_extract(const char *text);

/* The same for a reference answer, except that a text without box, marker
 * or math is the answer whole ("\frac{1}{2}", "x^2+1"). */
char *orc_math_extract_gold(const char *text);

/* The canonical form that equiv compares; NULL for NULL input, over-long
 * input or out of memory. */
char *orc_math_normalize(const char *s);

/* Is answer the same as the reference gold?  Two rules look at which side is
 * the reference: an assignment there ("x=5") matches its value ("5") while
 * an equation in the answer ("x = 2+3 = 5") is read by its last side, and an
 * inequality there ("x>2") matches the interval "(2,\infty)", not the
 * reverse.  1 or 0 (also for NULL or empty). */
int orc_math_equiv_gold(const char *gold, const char *answer);

/* Symmetric: a and b are the same with either as the reference (for
 * clustering answers in a majority vote). */
int orc_math_equiv(const char *a, const char *b);
int orc_math_equiv_opts(const char *a, const char *b, const orc_math_opts *o);

/* Evaluates a constant answer ("\frac{3\sqrt{3}}{4}", "1\frac{4}{5}", "2^{10}",
 * "x=4") after normalisation.  Returns 1 and sets *out, or 0 when it is not
 * a number. */
int orc_math_eval(const char *s, double *out);

/* orc_math_extract(response) against orc_math_extract_gold(gold) with
 * orc_math_equiv_gold: 1 correct, 0 otherwise. */
int orc_math_grade(const char *response, const char *gold);

/* One pair graded as orc_math_grade does, with what was extracted:
 * {"correct":bool,"gold":"..."|null,"answer":"..."|null}.  NULL when out of
 * memory; the caller deletes it. */
cJSON *orc_math_grade_obj(const char *gold, const char *answer);

/* One line of a JSON-lines batch: {"gold": G, "answer": A} (strings or
 * numbers; an "id" is echoed).  Returns one line of JSON, malloc'd: the
 * object above plus "line":lineno (and "id"), or, for a line that is not
 * such an object, {"error":"why","line":N}.  NULL only when out of memory. */
char *orc_math_grade_line(const char *line, long lineno);

#endif
