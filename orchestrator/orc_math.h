/* orc_math.h — answer extraction and grading for MATH-style benchmarks
 * (MATH-500), used to score test-time-scaling runs.
 *
 * The rules follow the usual MATH graders (Hendrycks' math_equivalence and the
 * PRM800K / "minerva" normalisation): LaTeX noise is stripped, then answers are
 * compared as strings, element-wise for tuples / intervals / sets / lists /
 * matrices / equations, and numerically (relative tolerance 1e-6) when both
 * sides evaluate to numbers.  Expressions in single-letter variables are
 * compared by evaluating both at a few fixed points.  No code is executed:
 * a small recursive-descent evaluator reads numbers, + - * / ^ !, \frac,
 * \sqrt, \pi, \cdot, \times, \div, parentheses and braces.
 *
 * Every function accepts any byte string (NULL, empty, unbalanced braces,
 * invalid UTF-8, megabytes) without crashing.  Returned strings are malloc'd;
 * the caller frees them.  Answers longer than ORC_MATH_MAX_LEN bytes are not
 * answers: normalize returns NULL for them and equiv says 0. */
#ifndef ORC_MATH_H
#define ORC_MATH_H

#define ORC_MATH_MAX_LEN (1u << 20)

typedef struct orc_math_opts {
    int unordered;   /* compare bare comma lists ("1, -2") as multisets;
                        default 0: order matters.  \{...\} sets never care. */
} orc_math_opts;

/* The final answer in a model's output: the content of the last complete
 * \boxed{...} or \fbox{...} (nested and escaped braces respected; also
 * "\boxed 5$" without braces), else the text after the last "final answer
 * is", "final answer:", "the answer is" or "answer:".  NULL when there is
 * none (or out of memory). */
char *orc_math_extract(const char *text);

/* The canonical form that equiv compares (see the rules above); NULL for NULL
 * input, over-long input or out of memory. */
char *orc_math_normalize(const char *s);

/* 1 when the two answers are equivalent, else 0 (also for NULL or empty). */
int orc_math_equiv(const char *a, const char *b);
int orc_math_equiv_opts(const char *a, const char *b, const orc_math_opts *o);

/* Evaluates a constant answer ("\frac{3\sqrt{3}}{4}", "1\frac{4}{5}", "2^{10}")
 * after normalisation.  Returns 1 and sets *out, or 0 when it is not a number. */
int orc_math_eval(const char *s, double *out);

/* extract(response) compared with gold: 1 correct, 0 otherwise. */
int orc_math_grade(const char *response, const char *gold);

#endif
