/* cmd_grade.c — `brisk grade`: is a model's answer to a MATH-style problem
 * right?  The rules are brisk's grader (orchestrator/orc_math.h), the one
 * that scores `brisk bench math500`, for outputs of other systems too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "eng.h"
#include "orc_math.h"
#include "cmds.h"
#include "args.h"

static void usage(FILE *f) {
    fprintf(f,
        "usage: brisk grade --gold G --answer A [--json]\n"
        "       brisk grade --jsonl FILE|-\n"
        "  --gold G     the reference answer: bare (\"\\frac{1}{2}\", \"(3,2)\", \"x>2\") or a text\n"
        "               with \\boxed{} or $...$, from which it is taken as from an answer\n"
        "  --answer A   the model's output; its final answer is extracted: the boxes of the\n"
        "               final answer (\\boxed{1}\\boxed{2} is \"1, 2\"), else the math after \"final\n"
        "               answer is\" / \"answer is\" / \"answer:\", else the last $...$ / \\(...\\) /\n"
        "               \\[...\\], else the text whole when it is a bare answer, or its last number\n"
        "  --json       print {\"correct\":..,\"gold\":..,\"answer\":..} (the extracted answers)\n"
        "               instead of \"correct\" / \"incorrect\"\n"
        "  --jsonl F    grade every line of F (\"-\": standard input), each an object\n"
        "               {\"gold\": G, \"answer\": A} (an \"id\" is echoed); prints one JSON line\n"
        "               per input line: {\"correct\":..,\"gold\":..,\"answer\":..,\"line\":N}, or\n"
        "               {\"error\":..,\"line\":N} for a bad line, which does not stop the run;\n"
        "               blank lines are skipped; a count goes to standard error\n"
        "Answers match when equivalent: LaTeX forms, units and \\text aside; lists and sets\n"
        "in any order, tuples and intervals in order; \"x=5\" in the reference matches \"5\";\n"
        "\"x>2\" in the reference matches \"(2,\\infty)\"; percent \"50\\%%\" matches 50 and 0.5;\n"
        "numbers exactly, a decimal to 6 places; expressions at probe points.\n"
        "Exit status: single pair 0 correct, 1 incorrect; --jsonl 0 when the file was read;\n"
        "2 for a usage error or an unreadable file.\n");
}

/* Grades every line of text; prints one JSON line each. */
static int grade_lines(char *text, size_t len) {
    long lineno = 0, graded = 0, correct = 0, bad = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        text[e] = 0;
        lineno++;
        const char *l = text + i;
        i = e + 1;
        while (*l == ' ' || *l == '\t' || *l == '\r') l++;
        if (!*l) continue;
        char *res = orc_math_grade_line(l, lineno);
        if (!res) { fprintf(stderr, "brisk grade: out of memory\n"); return 2; }
        cJSON *r = cJSON_Parse(res);
        const cJSON *ok = cJSON_GetObjectItemCaseSensitive(r, "correct");
        if (cJSON_IsBool(ok)) { graded++; correct += cJSON_IsTrue(ok); } else bad++;
        cJSON_Delete(r);
        puts(res);
        free(res);
    }
    fprintf(stderr, "brisk grade: %ld graded, %ld correct, %ld bad line%s\n", graded, correct, bad,
            bad == 1 ? "" : "s");
    return 0;
}

static int grade_file(const char *path) {
    char *text = NULL;
    size_t len = 0;
    if (!strcmp(path, "-")) {
        eng_buf b = {0};
        char chunk[65536];
        size_t k;
        while ((k = fread(chunk, 1, sizeof chunk, stdin)) > 0) eng_buf_add(&b, chunk, k);
        len = b.n;
        text = eng_buf_take(&b);
        if (!text) { fprintf(stderr, "brisk grade: out of memory\n"); return 2; }
    } else {
        eng_err err = {0};
        if (eng_read_file(path, 0, &text, &len, &err)) {
            fprintf(stderr, "brisk grade: %s\n", err.msg);
            return 2;
        }
    }
    int rc = grade_lines(text, len);
    free(text);
    return rc;
}

int cmd_grade(int argc, char **argv) {
    const char *gold = NULL, *answer = NULL, *jsonl = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) { usage(stdout); return 0; }
        if (!strcmp(k, "--json")) { json = 1; continue; }
        if (strcmp(k, "--gold") && strcmp(k, "--answer") && strcmp(k, "--jsonl")) {
            arg_unknown("grade", k);
            usage(stderr);
            return 2;
        }
        if (!v) { arg_missing("grade", k); usage(stderr); return 2; }
        if (!strcmp(k, "--gold")) gold = v;
        else if (!strcmp(k, "--answer")) answer = v;
        else jsonl = v;
        i++;
    }
    if (jsonl && !gold && !answer) return grade_file(jsonl);
    if (jsonl || !gold || !answer) { usage(stderr); return 2; }
    cJSON *o = orc_math_grade_obj(gold, answer);
    if (!o) { fprintf(stderr, "brisk grade: out of memory\n"); return 2; }
    int ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "correct"));
    if (json) {
        char *s = cJSON_PrintUnformatted(o);
        if (s) puts(s);
        free(s);
    } else {
        puts(ok ? "correct" : "incorrect");
    }
    cJSON_Delete(o);
    return ok ? 0 : 1;
}
