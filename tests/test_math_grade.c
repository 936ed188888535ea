/* test_math_grade.c — MATH answer extraction and equivalence (orc_math). */
#include "t.h"
#include "orc_math.h"
#include "orc_tts.h"
#include "eng.h"
#include <cjson/cJSON.h>
#include <stdint.h>

/* Pairs that must be judged equivalent (checked in both directions). */
static const char *const EQ[][2] = {
    /* whitespace */
    {"1 + 2i", "1+2i"}, {"x^2 + 1", "x^2+1"}, {"  42  ", "42"}, {"3,\n5", "3, 5"},
    /* \left \right */
    {"\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"},
    {"\\left[ 1, 2 \\right]", "[1,2]"},
    {"\\left\\{ 1, 2 \\right\\}", "\\{1,2\\}"},
    {"\\left. 5 \\right.", "5"},
    /* spacing macros */
    {"10,\\!080", "10080"}, {"3\\,\\sqrt{2}", "3\\sqrt{2}"}, {"2\\;x", "2x"},
    {"7\\quad", "7"}, {"4\\:5", "45"}, {"1~2", "12"},
    /* \text and friends keep their content */
    {"\\text{Evelyn}", "Evelyn"}, {"\\textbf{east}", "east"}, {"\\mbox{(B)}", "B"},
    {"\\text{(C)}", "(C)"}, {"\\textbf{\\text{ellipse}}", "ellipse"}, {"\\mathrm{5}", "5"},
    {"\\text{(E)}", "E"},
    /* unit words after numbers */
    {"5.4 \\text{ cents}", "5.4"}, {"864 \\mbox{ inches}^2", "864"},
    {"15\\mbox{ cm}^2", "15"}, {"\\frac{270}7\\text{ degrees}", "\\frac{270}{7}"},
    {"12 inches", "12"}, {"4 \\text{ ways}", "4"}, {"20 \\text{ square units}", "20"},
    {"7 dollars", "7"}, {"3 hours", "3"}, {"100 \\text{ meters}", "100"},
    {"5\\:\\text{cm}", "5"}, {"2\\pi \\text{ inches}", "2\\pi"},
    /* degrees */
    {"90^\\circ", "90"}, {"30^{\\circ}", "30"}, {"120^\\circ", "120^{\\circ}"},
    {"45\xc2\xb0", "45"}, {"36\\degree", "36"},
    /* dollars */
    {"\\$32,\\!348", "32348"}, {"$\\$18.90$", "18.9"}, {"\\$36", "36"}, {"$5$", "5"},
    {"\\$ 5.00", "5"},
    /* trailing period */
    {"5.", "5"}, {"\\frac{1}{2}.", "\\frac12"},
    /* leading variable assignments */
    {"x=5", "5"}, {"y = -3", "-3"}, {"k = \\frac{1}{2}", "0.5"},
    {"x \\in [-2,7]", "[-2,7]"}, {"\\theta = \\frac{\\pi}{4}", "\\frac{\\pi}{4}"},
    {"x_1 = 4", "4"}, {"x = 1, y = 2", "1,2"},
    /* thousands separators */
    {"1,000", "1000"}, {"11,\\! 111,\\! 111,\\! 100", "11111111100"},
    {"58,500", "58500"}, {"1{,}234.5", "1234.5"}, {"-12,345", "-12345"},
    /* dfrac / tfrac / shorthand fractions and roots */
    {"\\dfrac{17}{50}", "\\frac{17}{50}"}, {"\\tfrac{3}{4}", "\\frac34"},
    {"\\frac12", "\\frac{1}{2}"}, {"\\frac 59", "\\frac{5}{9}"}, {"\\frac9{19}", "\\frac{9}{19}"},
    {"\\frac{270}7", "\\frac{270}{7}"}, {"\\sqrt2", "\\sqrt{2}"}, {"11\\sqrt2", "11\\sqrt{2}"},
    {"\\frac{\\sqrt3}{3}", "\\frac{\\sqrt{3}}{3}"}, {"\\frac\\pi2", "\\frac{\\pi}{2}"},
    /* numbers */
    {"0.5", "\\frac{1}{2}"}, {"1/2", "\\frac{1}{2}"}, {"0.5", "1/2"}, {".5", "0.5"},
    {"-.25", "-\\frac{1}{4}"}, {"-0", "0"}, {"007", "7"}, {".0000672", "6.72\\times10^{-5}"}, {"1.25", "\\frac{5}{4}"},
    {"-\\frac{35}{9}", "\\frac{-35}{9}"}, {"-\\frac{35}{9}", "-35/9"}, {"2.50", "2.5"},
    {"\\frac{3\\sqrt{3}}{4}", "\\frac{3}{4}\\sqrt{3}"}, {"2\\sqrt{5}", "\\sqrt{20}"},
    {"\\sqrt{51}", "51^{1/2}"}, {"\\pi", "pi"}, {"288 \\pi", "288\\pi"},
    {"\\frac{20000}{\\pi}", "20000/\\pi"}, {"1\\frac{4}{5}", "\\frac{9}{5}"},
    {"137 \\frac{1}{2}", "137.5"}, {"\\frac{1}{3}", "0.3333333"}, {"2^{10}", "1024"},
    {"4.5", "\\frac{9}{2}"}, {"18+2\\pi", "2\\pi+18"}, {"-\\sqrt{3}", "-1\\cdot\\sqrt{3}"},
    {"\\sqrt[3]{8}", "2"}, {"3\\times 4", "12"}, {"10^{-2}", "0.01"},
    {"\\frac{-1}{2}", "-0.5"}, {"+5", "5"}, {"5!", "120"}, {"\\frac{\\sqrt{21}}{5}", "\\sqrt{21}/5"},
    {"\\displaystyle\\frac{1}{4}", "0.25"}, {"0.15", "\\frac{3}{20}"}, {"-\\frac{24}{25}", "-0.96"},
    {"\\frac{1997}{2}", "998.5"}, {"3.21", "3.210"}, {"12 \\div 4", "3"}, {"2(3+4)", "14"},
    {"\\sqrt[3]{-27}", "-3"},
    /* percent */
    {"50\\%", "50"}, {"12.5%", "12.5"},
    /* infinity */
    {"(2,\\infty)", "(2, \\infty)"}, {"(-\\infty, 0]", "(-\\infty,0]"},
    {"(2,\xe2\x88\x9e)", "(2,\\infty)"},
    /* matrices */
    {"\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
     "\\begin{pmatrix}-1&0\\\\0&-1\\end{pmatrix}"},
    {"\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}",
     "\\begin{pmatrix} -\\frac{1}{3} \\\\ \\frac{2}{3} \\\\ \\frac53 \\end{pmatrix}"},
    {"\\begin{bmatrix} 1 & 2 \\end{bmatrix}", "\\begin{pmatrix} 1 & 2 \\end{pmatrix}"},
    {"\\begin{pmatrix} 1 \\\\ 2 \\\\ \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"},
    /* tuples, points and intervals */
    {"(1,2)", "(1, 2)"}, {"(6,31,-1)", "(6, 31, -1)"}, {"(3,4]", "\\left( 3, 4 \\right]"},
    {"\\left(\\frac{3}{5},\\frac{8}{3}\\right]", "(0.6, 8/3]"},
    {"(0,9) \\cup (9,36)", "(0, 9)\\cup(9, 36)"},
    {"(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty,2)\\cup(3,\\infty)"},
    {"\\left[ \\frac{\\pi^2}{8}, \\frac{5 \\pi^2}{4} \\right]", "[\\pi^2/8, 5\\pi^2/4]"},
    {"(15,-29)", "(15.0, -29)"}, {"(1,2),(3,4)", "(1, 2), (3, 4)"},
    /* sets and lists */
    {"3, 5, 7", "3,5,7"}, {"1,-2", "1, -2"},
    {"\\{1\\pm\\sqrt{5},-2\\}", "\\{-2, 1\\pm\\sqrt5\\}"}, {"\\{1,2,3\\}", "\\{3,2,1\\}"},
    {"\\{1,2\\}", "1, 2"}, {"3 \\text{ and } 5", "3, 5"}, {"1, \\text{and } 2", "1, 2"},
    {"x = 3 \\text{ or } x = 5", "3, 5"},
    /* a \\pm names two values */
    {"1 \\pm \\sqrt{19}", "1+\\sqrt{19}, 1-\\sqrt{19}"}, {"3 \\pm 2 \\sqrt{2}", "3-2\\sqrt2, 3+2\\sqrt2"},
    {"\\{1\\pm\\sqrt{5},-2\\}", "-2, 1+\\sqrt{5}, 1-\\sqrt{5}"}, {"\\pm 2", "\\pm\\sqrt{4}"},
    {"\\frac{1\\pm\\sqrt{5}}{2}", "\\frac{1-\\sqrt5}{2},\\frac{1+\\sqrt5}{2}"},
    /* subscripts and superscripts */
    {"4210_{5}", "4210_5"}, {"52_8", "52_{8}"}, {"5r^5", "5r^{5}"}, {"3R^2", "3 R^{2}"},
    /* expressions in variables */
    {"2k+2", "2(k+1)"}, {"x^3+3x-6", "3x + x^3 - 6"}, {"(a+5)(b+2)", "(b+2)(a+5)"},
    {"6r^2-4r-24", "2(3r^2-2r-12)"}, {"\\frac{11+9a}{20}", "\\frac{9a+11}{20}"},
    {"y = 2x + 3", "y=3+2x"}, {"2x+3=y", "y=2x+3"}, {"6 - 5i", "6-5i"}, {"-2 + 7i", "7i-2"},
    {"x^8 + x^7 + x^6 + x^5 + x^4 + x^3 + x^2 + x + 1", "\\frac{x^9-1}{x-1}"},
    {"\\cot x", "\\cot  x"}, {"x \\le 3", "x\\leq3"}, {"1 \\pm \\sqrt{19}", "1\\pm\\sqrt{19}"},
    /* unicode */
    {"\xe2\x88\x92" "5", "-5"}, {"2\xcf\x80", "2\\pi"}, {"\xe2\x88\x9a" "2", "\\sqrt{2}"},
    {"\xcf\x80 r^2", "\\pi r^2"}, {"x\xc2\xb2+1", "x^{2}+1"},
    /* boxed inside an answer */
    {"\\boxed{7}", "7"}, {"\\$1,\\!000", "1000"},
    /* forms Math-Verify also accepts: lists in any order, a point without
     * brackets, percent as a fraction, an assignment by its value, a unit in
     * \text, a matrix in brackets */
    {"1,-2", "-2,1"}, {"(1,2)", "1,2"}, {"5\\%", "0.05"}, {"2x+3", "y=2x+3"},
    {"x=1, y=2", "2, 1"}, {"2 \\text{ apples}", "2"},
    {"\\left[\\begin{matrix}1&2\\\\3&4\\end{matrix}\\right]", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"},
};

/* Pairs that must not be judged equivalent (checked in both directions). */
static const char *const NE[][2] = {
    {"1", "2"}, {"0.5", "0.51"}, {"\\frac{1}{2}", "\\frac{1}{3}"}, {"\\frac{1}{2}", "\\frac{2}{1}"},
    {"1/2", "2"}, {"-5", "5"}, {"\\sqrt{2}", "2"}, {"\\sqrt{2}", "1.41"},
    {"3\\sqrt{13}", "13\\sqrt{3}"}, {"\\pi", "3.14"}, {"2\\pi", "\\pi"},
    {"90^\\circ", "\\frac{\\pi}{2}"}, {"(1,2)", "(2,1)"}, {"(1,2)", "(1,2,3)"},
    {"[0,1)", "[0,1]"}, {"(0,1)", "[0,1]"}, {"(3,4]", "(3,4)"}, {"(2,\\infty)", "[2,\\infty)"},
    {"(0,9)\\cup(9,36)", "(0,36)"},
    {"(-\\infty,2)\\cup(3,\\infty)", "(-\\infty,3)\\cup(2,\\infty)"},
    {"3,5,7", "3,5"}, {"\\{1,2\\}", "\\{1,3\\}"},
    {"1,000", "1"}, {"1,000", "(1,000)"}, {"x=5", "x=6"}, {"x=5", "6"},
    {"y=2x+3", "y=2x-3"}, {"2k+2", "2k+1"}, {"2k", "2n"}, {"x^2", "x^3"},
    {"(a+5)(b+2)", "(a+2)(b+5)"}, {"6-5i", "6+5i"}, {"1+2i", "2+i"},
    {"\\text{Evelyn}", "\\text{Navin}"}, {"east", "west"}, {"\\text{(C)}", "\\text{(D)}"},
    {"even", "neve"}, {"52_8", "52"}, {"52_8", "52_9"},
    {"\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}"},
    {"\\begin{pmatrix}1&2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"},
    {"\\begin{pmatrix}1\\\\2\\end{pmatrix}", "(1,2)"},
    {"\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{vmatrix}1&2\\\\3&4\\end{vmatrix}"},
    {"\\infty", "-\\infty"}, {"0", "\\text{}"}, {"5", "5x"},
    {"1\\frac{1}{2}", "\\frac{1}{2}"}, {"10080", "1008"}, {"2,500", "2.5"},
    {"0.00000672", "0.000067"}, {"1e5", "100000"}, {"\\frac{1}{0}", "\\infty"},
    {"x \\in [-2,7]", "[-2,7)"}, {"\\sqrt[3]{8}", "\\sqrt{8}"}, {"2^{10}", "2^{11}"},
    {"1\\pm\\sqrt{19}", "1+\\sqrt{19}"}, {"5x-7y+11z+4=0", "5x-7y+11z-4=0"},
    {"p-q", "q-p"}, {"\\cot x", "\\tan x"}, {"3", "33"}, {"12", "1,2"},
    {"0.333", "\\frac{1}{3}"}, {"100", "100.001"}, {"1000000", "1000001"}, {"x", "y"},
    {"11111111100", "11111111101"}, {"-0", "1"},
    {"3R^2", "3r^2"}, {"5 cm", "5 m"}, {"\\frac{11+9a}{20}", "\\frac{11+9b}{20}"},
    {"4210_5", "4210"}, {"(1,2)", "[1,2]"}, {"\\{1,2\\}", "\\{1,2,3\\}"},
    {"\\text{even}", "\\text{odd}"}, {"\\sqrt{-4}", "2"},
    {"1\\pm 2", "3, 1"}, {"1\\pm 2", "3, -1, 0"}, {"\\pm 2", "2"}, {"2\\pm 1 \\pm 1", "3, 1"},
};

static void test_pairs_equal(void) {
    int n = (int)(sizeof EQ / sizeof EQ[0]), ok = 0;
    for (int i = 0; i < n; i++) {
        int ab = orc_math_equiv(EQ[i][0], EQ[i][1]), ba = orc_math_equiv(EQ[i][1], EQ[i][0]);
        if (ab && ba) { ok++; continue; }
        char *x = orc_math_normalize(EQ[i][0]), *y = orc_math_normalize(EQ[i][1]);
        T_CHECKF(0, "[%s] vs [%s] should be equal (ab=%d ba=%d; normalised [%s] [%s])",
                 EQ[i][0], EQ[i][1], ab, ba, x ? x : "(null)", y ? y : "(null)");
        free(x);
        free(y);
    }
    printf("  %d/%d equivalent pairs judged equal\n", ok, n);
    T_CHECK(n >= 100);
}

static void test_pairs_different(void) {
    int n = (int)(sizeof NE / sizeof NE[0]), ok = 0;
    for (int i = 0; i < n; i++) {
        int ab = orc_math_equiv(NE[i][0], NE[i][1]), ba = orc_math_equiv(NE[i][1], NE[i][0]);
        if (!ab && !ba) { ok++; continue; }
        char *x = orc_math_normalize(NE[i][0]), *y = orc_math_normalize(NE[i][1]);
        T_CHECKF(0, "[%s] vs [%s] should differ (ab=%d ba=%d; normalised [%s] [%s])",
                 NE[i][0], NE[i][1], ab, ba, x ? x : "(null)", y ? y : "(null)");
        free(x);
        free(y);
    }
    printf("  %d/%d non-equivalent pairs judged different\n", ok, n);
    T_CHECK(n >= 60);
}

static void test_list_order(void) {
    orc_math_opts ord = {.ordered = 1};
    T_CHECK(orc_math_equiv("1,-2", "-2,1"));
    T_CHECK(!orc_math_equiv_opts("1,-2", "-2,1", &ord));
    T_CHECK(orc_math_equiv_opts("1,-2", "1, -2", &ord));
    T_CHECK(orc_math_equiv("3, 5, 7", "7,3,5"));
    T_CHECK(orc_math_equiv("x=1, x=-2", "-2, 1"));
    T_CHECK(!orc_math_equiv("1,-2", "-2,2"));
    /* multisets: a repeated root is not dropped */
    T_CHECK(!orc_math_equiv("1,1,2", "1,2,2"));
    T_CHECK(!orc_math_equiv("1,1,2", "1,2"));
    T_CHECK(!orc_math_equiv("1,2", "1,2,3"));
    /* tuples and intervals stay ordered; sets never are, even with ordered */
    T_CHECK(!orc_math_equiv("(1,2)", "(2,1)"));
    T_CHECK(orc_math_equiv("(1,2), (3,4)", "(3,4),(1,2)"));
    T_CHECK(orc_math_equiv_opts("\\{1,2\\}", "\\{2,1\\}", &ord));
}

static void test_normalize_forms(void) {
    static const char *const CASES[][2] = {
        {"\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"},
        {"10,\\!080", "10080"},
        {"\\frac 59", "\\frac{5}{9}"},
        {"\\dfrac{17}{50}", "\\frac{17}{50}"},
        {"11\\sqrt2", "11\\sqrt{2}"},
        {".0000672", "0.0000672"},
        {"x \\in [-2,7]", "x\\in[-2,7]"},
        {"x=5", "x=5"},
        {"y = 2x + 3", "y=2x+3"},
        {"\\text{(C)}", "C"},
        {"90^\\circ", "90"},
        {"\\$32,\\!348", "32348"},
        {"864 \\mbox{ inches}^2", "864"},
        {"\\frac{270}7\\text{ degrees}", "\\frac{270}{7}"},
        {"4343_6", "4343_{6}"},
        {"\\pi r^2", "\\pi r^{2}"},
        {"\\begin{pmatrix} 1 & 2 \\end{pmatrix}", "\\begin{pmatrix}1&2\\end{pmatrix}"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char *n = orc_math_normalize(CASES[i][0]);
        T_CHECKF(n && strcmp(n, CASES[i][1]) == 0, "normalize(%s) = [%s], want [%s]",
                 CASES[i][0], n ? n : "(null)", CASES[i][1]);
        free(n);
    }
    T_CHECK(orc_math_normalize(NULL) == NULL);
    T_CHECK(!orc_math_equiv(NULL, "1") && !orc_math_equiv("1", NULL) && !orc_math_equiv(NULL, NULL));
    T_CHECK(!orc_math_equiv("", ""));
}

static void test_eval(void) {
    static const struct { const char *s; double v; } OK[] = {
        {"\\frac{3\\sqrt{3}}{4}", 1.299038105676658}, {"1\\frac{4}{5}", 1.8}, {"2^{10}", 1024},
        {"-2^2", -4}, {"(1+2)(3+4)", 21}, {"\\sqrt[3]{27}", 3}, {"2\\pi", 6.283185307179586},
        {"6.72\\times10^{-5}", 6.72e-5}, {"10!", 3628800}, {"\\frac12+\\frac13", 5.0 / 6},
        {"1/2/2", 0.25}, {"2^3^2", 64}, {"-(-3)", 3}, {"x=4", 4},
    };
    for (size_t i = 0; i < sizeof OK / sizeof OK[0]; i++) {
        double v = 0;
        int ok = orc_math_eval(OK[i].s, &v);
        T_CHECKF(ok && fabs(v - OK[i].v) <= 1e-9 * fmax(1, fabs(OK[i].v)),
                 "eval(%s) ok=%d v=%.17g want %.17g", OK[i].s, ok, v, OK[i].v);
    }
    static const char *const BAD[] = {"x+1", "\\infty", "1/0", "\\sqrt{-1}", "2^{10000}",
                                      "(1,2)", "\\text{east}", "1e5", "3!!!!!", "", "(((", "5_8",
                                      "\\frac{1}", "inf", "nan", "0x10"};
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        double v;
        T_CHECKF(!orc_math_eval(BAD[i], &v), "eval(%s) should fail", BAD[i]);
    }
}

/* extract(text) must be want (NULL: nothing). */
static void check_extract(const char *text, const char *want) {
    char *got = orc_math_extract(text);
    if (!want) T_CHECKF(got == NULL, "extract(%s) = [%s], want NULL", text, got);
    else T_CHECKF(got && strcmp(got, want) == 0, "extract(%s) = [%s], want [%s]",
                  text, got ? got : "(null)", want);
    free(got);
}

static void test_extract(void) {
    check_extract("The answer is $\\boxed{5}$.", "5");
    check_extract("so $\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}");
    check_extract("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)");
    check_extract("\\boxed{\\{1\\pm\\sqrt{5},-2\\}}", "\\{1\\pm\\sqrt{5},-2\\}");
    check_extract("\\boxed{\\}}", "\\}");
    check_extract("\\boxed{a{b{c}}d}", "a{b{c}}d");
    check_extract("first \\boxed{1}, then \\boxed{2}.", "1, 2");
    check_extract("\\boxed{1} \\fbox{3}", "1, 3");
    check_extract("We first try \\boxed{1}, but that fails the check in the second equation, so we start again from the top and find \\boxed{2}.", "2");
    check_extract("\\fbox{7}", "7");
    check_extract("no answer here", NULL);
    check_extract("", NULL);
    check_extract(NULL, NULL);
    check_extract("$\\boxed 5$.", "5");
    check_extract("so \\boxed 42\nmore", "42");
    check_extract("\\[\\boxed x=3\\]", "x=3");
    check_extract("\\boxed { 12 }", "12");
    check_extract("\\boxed{5", NULL);
    check_extract("\\boxed{3} and later \\boxed{4", "3");
    check_extract("\\boxed{}", "");
    check_extract("\\boxed", NULL);
    check_extract("\\boxedx{5}", NULL);
    check_extract("}}}{{{\\boxed{9}", "9");
    check_extract("\\boxed{\\boxed{6}}", "6");
    /* fallbacks */
    check_extract("So the answer is 12.", "12");
    check_extract("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.",
                  "\\frac{1}{2}");
    check_extract("final answer: 3, 5, 7\nmore text", "3, 5, 7");
    check_extract("The answer is: **x=5**", "x=5");
    check_extract("The answer is $\\$32,\\!348$.", "\\$32,\\!348");
    check_extract("The answer is 3.21. Done", "3.21");
    check_extract("the answer is \\(\\sqrt{2}\\)", "\\sqrt{2}");
    check_extract("The answer is", NULL);
    /* a box wins over a later marker */
    check_extract("\\boxed{4} ... the answer is 5", "4");
    /* a reasoning model's answer follows its thinking (Qwen3 <think>) */
    check_extract("<think>\nMaybe \\boxed{3}? No: 2+2 is 4.\n</think>\n\nSo the sum is \\boxed{4}.", "4");
    check_extract("<think>\nfirst \\boxed{1}\n</think>\n\nThe answer is 7.", "7");
    check_extract("<think>\nonly \\boxed{5} drafted\n</think>\n\nI could not finish.", NULL);
    check_extract("<think>\nstill thinking, \\boxed{6} so far", "6");   /* open thought: probes read it */
    check_extract("<think></think>\n\n\\boxed{8}", "8");   /* thinking off: an empty block */
}

static void test_grade(void) {
    T_CHECK(orc_math_grade("Thus $x = \\boxed{\\dfrac{1}{2}}$.", "\\frac12"));
    T_CHECK(orc_math_grade("The answer is 0.5", "\\frac{1}{2}"));
    T_CHECK(!orc_math_grade("\\boxed{3}", "4"));
    T_CHECK(!orc_math_grade("no answer", "4"));
    T_CHECK(!orc_math_grade(NULL, "4"));
}

/* ------------------------------------------- families of real outputs */

/* A model output against a reference, graded as `brisk grade` does. */
typedef struct { const char *gold, *output; int correct; } grade_case;

static void check_grades(const grade_case *c, size_t n, const char *family) {
    int ok = 0;
    for (size_t i = 0; i < n; i++) {
        int got = orc_math_grade(c[i].output, c[i].gold);
        if (got == c[i].correct) { ok++; continue; }
        char *x = orc_math_extract(c[i].output), *g = orc_math_extract_gold(c[i].gold);
        T_CHECKF(0, "%s: gold [%s] output [%s]: graded %d, want %d (extracted [%s] vs [%s])", family,
                 c[i].gold, c[i].output, got, c[i].correct, x ? x : "(null)", g ? g : "(null)");
        free(x);
        free(g);
    }
    printf("  %s: %d/%zu\n", family, ok, n);
}
#define CHECK_GRADES(arr, family) check_grades(arr, sizeof arr / sizeof arr[0], family)

static void test_final_answer_formats(void) {
    static const grade_case C[] = {
        /* Minerva: the answer between the dollar signs */
        {"$\\frac{5}{3}$", "Adding gives $\\frac{10}{6}$.\nFinal Answer: The final answer is $\\frac{5}{3}$. "
                           "I hope it is correct.", 1},
        {"$7$", "Final Answer: The final answer is $8$. I hope it is correct.", 0},
        /* a Minerva line after a box wins over the box */
        {"$24$", "We guess \\boxed{12} first, then recount.\nFinal Answer: The final answer is $24$. "
                 "I hope it is correct.", 1},
        {"$x=4$", "so the answer is: \\[ \\boxed{x = 4} \\]", 1},
        {"$-3$", "The answer is: \\[\n\\boxed{-3}\n\\]", 1},
        /* several boxes in one answer */
        {"$3, 8$", "The roots are $\\boxed{3}\\boxed{8}$.", 1},
        {"$(2,5),(5,2)$", "The pairs are $\\boxed{(2, 5)}, \\boxed{(5, 2)}$.", 1},
        {"$p=7, q=3$", "Hence $\\boxed{p = 7} \\quad \\text{and} \\quad \\boxed{q = 3}$.", 1},
        {"$7, 3$", "Hence $\\boxed{p = 7} \\quad \\text{and} \\quad \\boxed{q = 3}$.", 1},
        {"$3$", "Hence $\\boxed{p = 7} \\quad \\text{and} \\quad \\boxed{q = 3}$.", 0},
        /* a box far before the last one is an earlier attempt */
        {"$9$", "At first I got \\boxed{6}, but the second case was counted twice, so I redo the "
                "whole count from the start: \\boxed{9}.", 1},
        /* markers and plain math */
        {"$\\frac{1}{4}$", "The probability that both are red is therefore $\\frac{1}{4}$.", 1},
        {"$15$", "The answer to part (b) is $15$, as computed above.", 1},
        {"$x=2$ and $y=-1$", "Solving, we find $x = 2$ and $y = -1$.", 1},
        {"$42$", "After all the steps the total comes to 42.", 1},
        {"$1/8$", "So the chance is 1/8.", 1},
        {"$12$", "**Answer:** 12", 1},
        /* the last math, and what comes after it */
        {"$\\frac{2}{7}$", "Both counts agree, so the ratio is $\\frac{4}{14} = \\frac{2}{7}.$", 1},
        {"$9$", "There are $9$ ways to choose $k.$", 1},            /* a lone variable is not it */
        {"$9$", "We need $n \\geq 3$, and in all there are 9 of them.", 1},
        {"$\\frac{5}{6}$", "Then\n\\begin{align*}\nP &= 1 - \\frac{1}{6} \\\\\n&= \\frac{5}{6}.\n\\end{align*}", 1},
        {"$84$", "Summing, \\[\\begin{aligned} S &= 40 + 44 \\\\ &= 84. \\end{aligned}\\]", 1},
        {"$6$", "Hence $2x = 12 \\implies x = 6$.", 1},
        {"$4$", "So $n \\equiv 11 \\equiv 4 \\pmod{7}$.", 1},
        {"$0.3$", "It comes to $\\frac{3}{10} \\approx 0.30 = 30\\%$.", 1},
        /* math joined by "and" / "or" / "," is one answer; ", and" starts a clause */
        {"$2, 5$", "The roots are $2$ and $5$.", 1},
        {"$5$", "We get $a = 3,$ and $b = 5.$", 1},
        {"$2$", "We get $a = 1$, and then $b = 2$.", 1},
        /* a bare answer is taken whole */
        {"$x^2+1$", "x^2+1", 1},
        {"$(1,3),(3,1)$", "(1,3) or (3,1)", 1},
        {"\\frac{9}{4}", "$\\dfrac94$", 1},
        {"$12$", "no idea", 0},
    };
    CHECK_GRADES(C, "final answer formats");
}

static void test_solution_sets(void) {
    static const grade_case C[] = {
        {"$(4,9),(9,4)$", "\\boxed{(9,4) \\text{ or } (4,9)}", 1},
        {"$(4,9),(9,4)$", "\\boxed{(9,4), (4,9)}", 1},
        {"$(4,9),(9,4)$", "\\boxed{(4;9);(9;4)}", 1},
        {"$(4,9),(9,4)$", "\\boxed{\\left(4, 9\\right), \\left(9, 4\\right)}", 1},
        {"$(4,9),(9,4)$", "\\boxed{(4,9)}", 0},
        {"$(4,9),(9,4)$", "\\boxed{(4,9),(9,4),(1,1)}", 0},
        {"$\\{-3,-2,-1,\\dots\\}$", "\\boxed{-3;-2;-1;...}", 1},
        {"$\\{-3,-2,-1,\\dots\\}$", "\\boxed{-3, -2, -1, \\ldots}", 1},
        {"$\\{-3,-2,-1,\\dots\\}$", "\\boxed{-3, -2, \\ldots}", 0},
        {"$-1, 5$", "\\boxed{5, -1}", 1},
        {"$-1, 5$", "\\boxed{\\{5,-1\\}}", 1},
        {"$-1, 5$", "\\boxed{x=5 \\text{ or } x=-1}", 1},
        {"$-1, 5$", "\\boxed{5}", 0},
        {"$1, 1, 2$", "\\boxed{1, 2}", 0},              /* a double root counts twice */
        {"$(1,-1,2)$", "\\boxed{(1,-1,2)}", 1},
        {"$(1,-1,2)$", "\\boxed{(-1,1,2)}", 0},         /* a tuple keeps its order */
        {"$(3,2)$", "\\boxed{3, 2}", 1},                /* a point written without brackets */
        {"$(3,2)$", "\\boxed{2, 3}", 0},
        {"$(0,1)\\cup(2,3)$", "\\boxed{(2,3)\\cup(0,1)}", 1},
        {"$2 \\pm \\sqrt{3}$", "\\boxed{2+\\sqrt3, 2-\\sqrt3}", 1},
    };
    CHECK_GRADES(C, "solution sets");
}

static void test_assignments(void) {
    static const grade_case C[] = {
        {"$(3,2)$", "\\boxed{(p,q)=(3,2)}", 1},
        {"$(p,q)=(3,2)$", "\\boxed{(3, 2)}", 1},
        {"$(3,2)$", "\\boxed{(p,q)=(2,3)}", 0},
        {"$6, 10$", "\\boxed{AB = 6, BC = 10}", 1},
        {"$AB=6, BC=10$", "\\boxed{BC = 10, AB = 6}", 1},
        {"$AB=6, BC=10$", "\\boxed{AB = 10, BC = 6}", 0},
        {"$a_2 = 5, a_{12} = 35$", "\\boxed{a_{12} = 35, a_2 = 5}", 1},
        {"$a_2 = 5, a_{12} = 35$", "\\boxed{a_{12} = 5, a_2 = 35}", 0},
        {"$x=7$", "\\boxed{7}", 1},
        {"$7$", "\\boxed{x = 7}", 1},
        {"$7$", "\\boxed{x = 3 + 4 = 7}", 1},           /* a chain: its last side */
        {"$x=7$", "\\boxed{y = 7}", 0},                 /* another variable */
        {"$y = 3x - 2$", "\\boxed{y=-2+3x}", 1},
        {"$y = 3x - 2$", "\\boxed{3x - y - 2 = 0}", 1},
        {"$y = 3x - 2$", "\\boxed{3x - 2}", 1},
        {"$0$", "\\boxed{3x - y - 2 = 0}", 0},          /* an equation is not the value 0 */
        {"$x \\in [1,4]$", "\\boxed{[1,4]}", 1},
        {"$2x+3y=6$", "\\boxed{6}", 0},
    };
    CHECK_GRADES(C, "assignments");
}

static void test_number_forms(void) {
    static const grade_case C[] = {
        {"$20{,}736$", "\\boxed{20736}", 1},
        {"$20736$", "\\boxed{20,736}", 1},
        {"$20736$", "\\boxed{20,\\!736}", 1},
        {"$20736$", "\\boxed{20\\,736}", 1},
        {"$20736$", "\\boxed{20, 736}", 0},             /* a pair, not a number */
        {"$20, 736$", "\\boxed{736, 20}", 1},
        {"$35\\%$", "\\boxed{35}", 1},
        {"$35\\%$", "\\boxed{0.35}", 1},
        {"$35$", "\\boxed{35\\%}", 1},
        {"$35\\%$", "\\boxed{35 \\text{ percent}}", 1},
        {"$35\\%$", "\\boxed{35 percent}", 1},
        {"$35\\%$", "\\boxed{3.5}", 0},
        {"$\\frac{2}{3}$", "\\boxed{0.666667}", 1},      /* six decimal places */
        {"$\\frac{2}{3}$", "\\boxed{0.67}", 0},
        {"$2.75$", "\\boxed{\\frac{11}{4}}", 1},
        {"$2.75$", "\\boxed{2.750}", 1},
        {"$0.000125$", "\\boxed{1.25\\times 10^{-4}}", 1},
        {"$0.000125$", "\\boxed{0.000126}", 0},
        {"$18$", "\\boxed{18 \\text{ cm}^2}", 1},
        {"$18$", "\\boxed{18\\,\\mathrm{m}}", 1},
        {"$18$", "\\boxed{18 \\text{ marbles}}", 1},
        {"$18$", "\\boxed{\\$18}", 1},
        {"$18$", "\\boxed{18 \\text{ and } 2}", 0},
        {"$120$", "\\boxed{120^\\circ}", 1},
        {"$120^\\circ$", "\\boxed{120 \\text{ degrees}}", 1},
        {"$\\text{Tuesday}$", "\\boxed{\\text{tuesday}}", 1},
        {"$\\text{Tuesday}$", "\\boxed{\\text{Thursday}}", 0},
        {"$1000001$", "\\boxed{10^6}", 0},               /* exact, not within 1e-6 */
        {"$1000000$", "\\boxed{10^6}", 1},
        {"$2^{70}$", "\\boxed{1180591620717411303424}", 1},
        {"$2^{70}$", "\\boxed{1180591620717411303425}", 0},
    };
    CHECK_GRADES(C, "number forms");
}

static void test_expressions(void) {
    static const grade_case C[] = {
        {"$-3(x+2)^2+7$", "\\boxed{-3x^2-12x-5}", 1},
        {"$-3(x+2)^2+7$", "\\boxed{-3x^2-12x+5}", 0},
        {"$\\frac{3}{4}\\sqrt{2}$", "\\boxed{\\dfrac{3\\sqrt2}{4}}", 1},
        {"$\\frac{3}{4}\\sqrt{2}$", "\\boxed{\\tfrac34\\sqrt{2}}", 1},
        {"$4ab^2$", "\\boxed{4 b \\cdot a b}", 1},
        {"$4ab^2$", "\\boxed{4a^2b}", 0},
        {"$\\frac{x+1}{x-1}$", "\\boxed{1+\\frac{2}{x-1}}", 1},
        {"$\\sqrt{x^2}$", "\\boxed{|x|}", 1},
        {"$|x|$", "\\boxed{x}", 0},                      /* negative points tell them apart */
        {"$\\sin^2\\theta+\\cos^2\\theta$", "\\boxed{1}", 1},
        {"$\\sin 2x$", "\\boxed{2\\sin x\\cos x}", 1},
        {"$\\log_3 81$", "\\boxed{4}", 1},
        {"$\\ln(x^3)$", "\\boxed{3\\ln x}", 1},
        {"$\\binom{7}{3}$", "\\boxed{35}", 1},
        {"$e^2$", "\\boxed{e \\cdot e}", 1},
        {"$\\sqrt[3]{-8}$", "\\boxed{-2}", 1},
        {"$x^{1/3}$", "\\boxed{\\sqrt[3]{x}}", 1},
    };
    CHECK_GRADES(C, "expressions");
}

static void test_refusals(void) {
    static const grade_case C[] = {
        {"$1, 2, 3$", "\\boxed{1, 2}", 0},               /* a different number of elements */
        {"$(1,2,3)$", "\\boxed{(1,2)}", 0},
        {"$[2,5]$", "\\boxed{\\{2,5\\}}", 0},            /* an interval is not a set */
        {"$\\{2,5\\}$", "\\boxed{[2,5]}", 0},
        {"$[2,5]$", "\\boxed{2, 5}", 0},
        {"$x \\le 4$", "\\boxed{x = 4}", 0},              /* an inequality is not an equation */
        {"$x = 4$", "\\boxed{x < 4}", 0},
        {"$x < 4$", "\\boxed{x \\le 4}", 0},
        {"$(2,5)$", "\\boxed{[2,5)}", 0},
    };
    CHECK_GRADES(C, "refusals");
}

/* Which side is the reference matters in two rules (and orc_math_equiv,
 * for votes, accepts either). */
static void test_gold_direction(void) {
    static const struct { const char *gold, *answer; int directed, sym; } C[] = {
        {"2 < x \\le 5", "(2,5]", 1, 1},
        {"(2,5]", "2 < x \\le 5", 0, 1},
        {"x > 1", "(1, \\infty)", 1, 1},
        {"x < -1 \\text{ or } x > 1", "(-\\infty,-1)\\cup(1,\\infty)", 1, 1},
        {"x > 1 \\text{ and } x < 3", "(1, 3)", 1, 1},
        {"x > 1", "(1, 3)", 0, 0},
        {"x=5", "5", 1, 1},
        {"5", "x=5", 1, 1},
        {"5", "x+y=5", 1, 1},
        {"3x+1=0", "-\\frac{1}{3}", 0, 0},
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        int d = orc_math_equiv_gold(C[i].gold, C[i].answer), s = orc_math_equiv(C[i].gold, C[i].answer);
        T_CHECKF(d == C[i].directed && s == C[i].sym, "gold [%s] answer [%s]: directed %d sym %d, want %d %d",
                 C[i].gold, C[i].answer, d, s, C[i].directed, C[i].sym);
        T_CHECK(s == orc_math_equiv(C[i].answer, C[i].gold));
    }
}

static void test_grade_lines(void) {
    static const struct { const char *line, *want; } C[] = {
        {"{\"gold\":\"$\\\\frac12$\",\"answer\":\"so \\\\boxed{0.5}\",\"id\":\"a\"}",
         "{\"correct\":true,\"gold\":\"\\\\frac12\",\"answer\":\"0.5\",\"line\":1,\"id\":\"a\"}"},
        {"{\"gold\":4,\"answer\":\"The answer is 5.\"}",
         "{\"correct\":false,\"gold\":\"4\",\"answer\":\"5\",\"line\":1}"},
        {"{\"gold\":\"4\",\"answer\":\"I cannot tell\"}",
         "{\"correct\":false,\"gold\":\"4\",\"answer\":null,\"line\":1}"},
        {"{\"gold\":\"4\"}", "{\"error\":\"no \\\"answer\\\" field\",\"line\":1}"},
        {"{\"gold\":[4],\"answer\":\"4\"}", "{\"error\":\"\\\"gold\\\" is not a string or a number\",\"line\":1}"},
        {"[1,2]", "{\"error\":\"not a JSON object\",\"line\":1}"},
        {"{\"gold\": \"4\", \"answer\": ", "{\"error\":\"not a JSON object\",\"line\":1}"},
        {NULL, "{\"error\":\"not a JSON object\",\"line\":1}"},
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        char *got = orc_math_grade_line(C[i].line, 1);
        T_CHECKF(got && !strcmp(got, C[i].want), "line %s -> %s, want %s", C[i].line ? C[i].line : "(null)",
                 got ? got : "(null)", C[i].want);
        free(got);
    }
}

/* The majority vote clusters answers with the same equivalence. */
static void test_vote_clusters(void) {
    const char *outputs[] = {
        "so $\\boxed{(2,1)}$ or $\\boxed{(1,2)}$",
        "The pairs are $(1,2)$ and $(2,1)$.",
        "\\boxed{(1, 2) \\text{ or } (2, 1)}",
        "\\boxed{(x,y)=(1,2)}",
        "\\boxed{(1,2)}",
    };
    orc_tts_cand c[5];
    char *ans[5];
    for (int i = 0; i < 5; i++) {
        ans[i] = orc_math_extract(outputs[i]);
        c[i] = (orc_tts_cand){ans[i], -1.0 * (i + 1), 1};
    }
    int votes = 0, v = orc_tts_vote(c, 5, &votes);
    T_CHECKF(v == 0 && votes == 3, "vote %d with %d votes", v, votes);
    for (int i = 0; i < 5; i++) free(ans[i]);
}

/* ------------------------------------------------------- robustness */

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static const char *const PIECES[] = {
    "\\boxed{", "\\boxed ", "\\fbox{", "{", "}", "\\{", "\\}", "\\", "\\\\", "\\frac", "\\sqrt",
    "\\sqrt[", "]", "[", "(", ")", ",", "=", "^", "_", "\\text{", "\\left", "\\right", "$",
    "\\$", "%", ".", "-", "+", "/", "1", "2", "0", "9", "x", "y", "i", "pi", "\\pi", "\\infty",
    "\\cup", "&", "\\begin{pmatrix}", "\\end{pmatrix}", "\\!", " ", "\n", "cm", " and ",
    "The answer is ", "final answer:", "\\circ", "!", "\xff", "\xc3", "\x80", "\xe2\x88",
    "\xcf\x80", "\\in", "1,000", "\\dfrac12", "\\times", "\\cdot", "*", "e", "\\pm",
    "\\begin{aligned}", "\\end{aligned}", "\\implies", "\\pmod{", "\\approx", "<", "\\leq",
    ";", "\\text{ and }", " or ", "\\sin", "\\log_", "|", "\\binom", "\\lfloor", "\\rfloor",
    "\\ldots", "...", "x_", "a_{3}", "Final Answer: The final answer is ", " I hope it is correct.",
    "answer", "percent", "\\text{ cm}", "\\mathbb{R}", ", and ", "^{1/3}", "10^{30}",
};
#define PIECE_MAX 40                               /* no piece is longer */

static char *random_text(size_t max_pieces) {
    size_t np = sizeof PIECES / sizeof PIECES[0], k = rng() % (max_pieces + 1), len = 0;
    char *s = malloc(k * PIECE_MAX + 1);
    if (!s) return NULL;
    for (size_t i = 0; i < k; i++) {
        if (rng() % 8 == 0) {                      /* a raw random byte now and then */
            char c = (char)(rng() % 255 + 1);
            s[len++] = c;
            continue;
        }
        const char *p = PIECES[rng() % np];
        size_t l = strlen(p);
        memcpy(s + len, p, l);
        len += l;
    }
    s[len] = 0;
    return s;
}

static void test_fuzz(void) {
    int asym = 0, refl_fail = 0, extracted = 0, equal = 0;
    for (int it = 0; it < 10000; it++) {
        char *a = random_text(40), *b = random_text(40);
        if (!a || !b) { free(a); free(b); T_CHECK(0); return; }
        char *x = orc_math_extract(a);
        if (x) { extracted++; free(x); }
        char *na = orc_math_normalize(a);
        if (na && *na && !orc_math_equiv(a, a)) refl_fail++;
        free(na);
        int ab = orc_math_equiv(a, b), ba = orc_math_equiv(b, a);
        if (ab != ba) asym++;
        equal += ab;
        orc_math_opts ord = {.ordered = 1};
        (void)orc_math_equiv_opts(a, b, &ord);
        (void)orc_math_equiv_gold(a, b);
        double v;
        (void)orc_math_eval(a, &v);
        free(a);
        free(b);
    }
    printf("  10000 random pairs: %d extracted, %d judged equal, %d asymmetric, %d not reflexive\n",
           extracted, equal, asym, refl_fail);
    T_CHECK(asym == 0);
    T_CHECK(refl_fail == 0);

    /* mutations of real answers reach the deeper comparison paths */
    int n_eq = (int)(sizeof EQ / sizeof EQ[0]), still = 0, masym = 0;
    size_t np = sizeof PIECES / sizeof PIECES[0];
    for (int it = 0; it < 10000; it++) {
        const char *src = EQ[it % n_eq][0], *other = EQ[it % n_eq][1];
        const char *piece = PIECES[rng() % np];
        size_t l = strlen(src), at = rng() % (l + 1), pl = strlen(piece);
        char *m = malloc(l + pl + 1);
        if (!m) { T_CHECK(0); return; }
        memcpy(m, src, at);
        memcpy(m + at, piece, pl);
        memcpy(m + at + pl, src + at, l - at + 1);
        int ab = orc_math_equiv(m, other), ba = orc_math_equiv(other, m);
        still += ab;
        masym += ab != ba;
        char *x = orc_math_extract(m);
        free(x);
        free(m);
    }
    printf("  10000 mutated answers: %d still judged equal, %d asymmetric\n", still, masym);
    T_CHECK(masym == 0);
}

static char *repeat(const char *piece, size_t times, const char *tail) {
    size_t l = strlen(piece), tl = strlen(tail);
    char *s = malloc(l * times + tl + 1);
    if (!s) return NULL;
    for (size_t i = 0; i < times; i++) memcpy(s + i * l, piece, l);
    memcpy(s + l * times, tail, tl + 1);
    return s;
}

/* "\{x,x,...,x,last\}" nested three times, x being the previous level. */
static char *nest_sets(const char *last) {
    char *cur = strdup("1");
    for (int level = 0; level < 3 && cur; level++) {
        size_t l = strlen(cur), cap = (l + 1) * 30 + strlen(last) + 8, len = 0;
        char *next = malloc(cap);
        if (next) {
            len += (size_t)snprintf(next, cap, "\\{");
            for (int k = 0; k < 30; k++) len += (size_t)snprintf(next + len, cap - len, "%s,", cur);
            snprintf(next + len, cap - len, "%s\\}", level == 0 ? last : "2");
        }
        free(cur);
        cur = next;
    }
    return cur;
}

static void test_huge_inputs(void) {
    struct { const char *piece; size_t times; const char *tail; } H[] = {
        {"{", 2000000, ""},              /* unbalanced, over the length limit */
        {"\\boxed{", 100000, "x}"},      /* deep unclosed boxes, innermost complete */
        {"(", 200000, "1"},              /* deep parentheses */
        {"\\frac{", 100000, "1"},
        {"1,", 200000, "1"},             /* a very long list */
        {"\\sqrt", 100000, "2"},
        {"-", 300000, "1"},
        {"\\{", 100000, "\\}"},
        {"\xff\xfe", 300000, ""},        /* invalid UTF-8 */
        {"x^", 100000, "2"},
        {"\\boxed{1}\\boxed{2}", 50000, ""},     /* a long run of adjacent boxes */
        {"$1$ and ", 100000, "$2$"},             /* a long run of joined math */
        {"\\begin{aligned}&=1\\\\", 50000, ""},
        {"\\[", 200000, ""},                     /* math that never closes */
        {"\\begin{", 100000, ""},
    };
    for (size_t i = 0; i < sizeof H / sizeof H[0]; i++) {
        char *s = repeat(H[i].piece, H[i].times, H[i].tail);
        T_CHECK(s != NULL);
        if (!s) continue;
        char *x = orc_math_extract(s);
        if (i == 1) T_CHECKF(x && strcmp(x, "x") == 0, "deep boxes gave [%.20s]", x ? x : "(null)");
        free(x);
        char *n = orc_math_normalize(s);
        free(n);
        (void)orc_math_equiv(s, "1");
        (void)orc_math_equiv(s, s);
        free(s);
    }
    /* nested unordered sets, 30 wide and 3 deep, differing only in the
     * innermost last element */
    char *set_a = nest_sets("2"), *set_b = nest_sets("3");
    T_CHECK(set_a && set_b && !orc_math_equiv(set_a, set_b));
    free(set_a);
    free(set_b);

    char *big = repeat("1,", 300000, "1");
    T_CHECK(big && orc_math_equiv(big, big));   /* under the limit: compared element-wise */
    free(big);
}

/* ------------------------------------------------------------ MATH-500 */

static char *read_file(const char *path) {
    char *b = NULL;
    eng_read_file(path, 0, &b, NULL, NULL);
    return b;
}

/* Reads the "answer" and "solution" fields of every row; returns the count. */
static int load_rows(const char *path, char ***answers, char ***solutions) {
    char *text = read_file(path);
    if (!text) return -1;
    int n = 0, cap = 0;
    char **ans = NULL, **sol = NULL;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *row = cJSON_Parse(line);
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(row, "answer");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(row, "solution");
        if (cJSON_IsString(a) && cJSON_IsString(s)) {
            if (n == cap) {
                cap = cap ? cap * 2 : 512;
                char **na = realloc(ans, (size_t)cap * sizeof *na);
                if (na) ans = na;
                char **ns = na ? realloc(sol, (size_t)cap * sizeof *ns) : NULL;
                if (ns) sol = ns;
                if (!na || !ns) { cJSON_Delete(row); break; }
            }
            ans[n] = strdup(a->valuestring);
            sol[n++] = strdup(s->valuestring);
        }
        cJSON_Delete(row);
    }
    free(text);
    *answers = ans;
    *solutions = sol;
    return n;
}

static void test_math500(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/data/math500/test.jsonl", t_shared());
    char **ans = NULL, **sol = NULL;
    int n = load_rows(path, &ans, &sol);
    if (n < 0) T_SKIP("%s not found; MATH-500 checks skipped", path);
    T_CHECKF(n == 500, "%d rows", n);

    /* every reference solution, graded as a model output, is right */
    int sol_ok = 0;
    for (int i = 0; i < n; i++) {
        int g = orc_math_grade(sol[i], ans[i]);
        sol_ok += g;
        if (!g) {
            char *x = orc_math_extract(sol[i]);
            T_CHECKF(0, "row %d: the reference solution gives [%s], the answer is [%s]", i, x ? x : "(null)", ans[i]);
            free(x);
        }
    }
    printf("  reference solutions graded right: %d/%d\n", sol_ok, n);

    int exact = 0, same = 0, idem = 0, marker = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(ans[i]);
        char *boxed = malloc(l + 32), *said = malloc(l + 32);
        if (!boxed || !said) { free(boxed); free(said); T_CHECK(0); break; }
        snprintf(boxed, l + 32, "\\boxed{%s}", ans[i]);
        snprintf(said, l + 32, "The answer is $%s$.", ans[i]);
        char *x = orc_math_extract(boxed), *y = orc_math_extract(said);
        exact += x && strcmp(x, ans[i]) == 0;
        int eq = x && orc_math_equiv(x, ans[i]);
        same += eq;
        T_CHECKF(eq, "row %d: boxed [%s] extracted as [%s] is not equal", i, ans[i], x ? x : "(null)");
        marker += y && orc_math_equiv(y, ans[i]);
        char *n1 = orc_math_normalize(ans[i]), *n2 = n1 ? orc_math_normalize(n1) : NULL;
        int id = n1 && n2 && strcmp(n1, n2) == 0;
        idem += id;
        T_CHECKF(id, "row %d: normalize not idempotent: [%s] -> [%s]", i, n1 ? n1 : "(null)",
                 n2 ? n2 : "(null)");
        free(boxed); free(said); free(x); free(y); free(n1); free(n2);
    }
    printf("  boxed extraction: %d/%d exact, %d/%d equal; \"The answer is\": %d/%d equal; "
           "normalize idempotent %d/%d\n", exact, n, same, n, marker, n, idem, n);
    T_CHECK(exact == n && same == n && marker == n && idem == n);

    /* 500 random pairs of different rows with different normalised answers */
    char **norm = calloc((size_t)n, sizeof *norm);
    T_CHECK(norm != NULL);
    for (int i = 0; norm && i < n; i++) norm[i] = orc_math_normalize(ans[i]);
    int tried = 0, judged_equal = 0, guard = 0;
    while (norm && n > 1 && tried < 500 && guard++ < 100000) {
        int i = (int)(rng() % (uint64_t)n), j = (int)(rng() % (uint64_t)n);
        if (i == j || !norm[i] || !norm[j] || strcmp(norm[i], norm[j]) == 0) continue;
        tried++;
        if (orc_math_equiv(ans[i], ans[j])) {
            judged_equal++;
            printf("  random pair judged equal: [%s] [%s]\n", ans[i], ans[j]);
        }
    }
    printf("  random distinct pairs: %d/%d judged equal\n", judged_equal, tried);
    T_CHECK(tried == 500);
    T_CHECK(judged_equal * 100 <= tried);

    /* every pair of rows with different normalised answers, for the report */
    long pairs = 0, all_equal = 0;
    for (int i = 0; norm && i < n; i++)
        for (int j = i + 1; j < n; j++) {
            if (!norm[i] || !norm[j] || strcmp(norm[i], norm[j]) == 0) continue;
            pairs++;
            if (orc_math_equiv(ans[i], ans[j])) {
                if (all_equal < 10) printf("  pair judged equal: [%s] [%s]\n", ans[i], ans[j]);
                all_equal++;
            }
        }
    printf("  all %ld distinct pairs: %ld judged equal\n", pairs, all_equal);
    T_CHECK(all_equal * 100 <= pairs);

    for (int i = 0; i < n; i++) { free(ans[i]); free(sol[i]); if (norm) free(norm[i]); }
    free(norm);
    free(ans);
    free(sol);
}

int main(void) {
    T_RUN(test_pairs_equal);
    T_RUN(test_pairs_different);
    T_RUN(test_list_order);
    T_RUN(test_normalize_forms);
    T_RUN(test_eval);
    T_RUN(test_extract);
    T_RUN(test_grade);
    T_RUN(test_final_answer_formats);
    T_RUN(test_solution_sets);
    T_RUN(test_assignments);
    T_RUN(test_number_forms);
    T_RUN(test_expressions);
    T_RUN(test_refusals);
    T_RUN(test_gold_direction);
    T_RUN(test_grade_lines);
    T_RUN(test_vote_clusters);
    T_RUN(test_fuzz);
    T_RUN(test_huge_inputs);
    T_RUN(test_math500);
    T_DONE();
}
