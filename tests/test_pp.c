/* test_pp.c — ParallelPrompt: schema parsing and validation, template
 * filling, rule-based detection, the proposal validator, model-assisted
 * extraction checks, in-order aggregation, parallel mode's task on the tiny
 * CPU model (run through the scheduler as the server and the replay
 * benchmark run it), and the detector's agreement with the annotated
 * dataset files. */
#include "t.h"
#include <stdint.h>
#include "orc_pp.h"
#include "orc.h"
#include "bench.h"

/* ------------------------------------------------------------ schema */
static void test_schema_good_rows(void) {
    const char *good[] = {
        "{\"template\":\"Extract {data} from: {context}\",\"context\":\"Paris is big.\",\"data\":[\"city\",\"size\"]}",
        "{\"template\":\"Generate {n} name(s)\",\"context\":null,\"n\":10}",
        "{\"template\":\"{context}\\n\\nQuestion: {data}\",\"context\":\"story\",\"data\":[\"Who?\"]}",
        "{\"template\":\"For the sentence \\\"{data}\\\", positive?\",\"data\":[\"a\",\"b\",\"c\"]}",
        /* a template that already writes the context out (dataset rows do) */
        "{\"template\":\"Answer in French: {data}\",\"context\":\"Answer in French:\",\"data\":[\"x\"]}",
        /* {context} with no context: filled with "" */
        "{\"template\":\"{context}\\n{data}\",\"context\":\"\",\"data\":[\"q1\",\"q2\"]}",
        "{\"template\":\"Give {n} {\\\"prompt\\\": text} items\",\"n\":64}",
    };
    const int kinds[] = {ORC_PP_DATA, ORC_PP_N, ORC_PP_DATA, ORC_PP_DATA, ORC_PP_DATA, ORC_PP_DATA, ORC_PP_N};
    const int counts[] = {2, 10, 1, 3, 1, 2, 64};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        orc_pp_schema s;
        eng_err e = {0};
        int rc = orc_pp_schema_parse(good[i], "row 1", &s, &e);
        T_CHECKF(rc == ENG_OK, "good row %zu: %s", i, e.msg);
        if (rc) continue;
        T_CHECK(s.kind == kinds[i]);
        T_CHECK(orc_pp_count(&s) == counts[i]);
        T_CHECK(s.context != NULL);
        orc_pp_schema_free(&s);
    }
}

static void test_schema_malformed_rows(void) {
    /* each: JSON, the field the message must name */
    const char *bad[][2] = {
        {"[1,2]", "not a JSON object"},
        {"{\"context\":\"c\",\"data\":[\"a\"]}", "'template'"},
        {"{\"template\":7,\"data\":[\"a\"]}", "'template'"},
        {"{\"template\":\"Do {data}\"}", "'data' or 'n'"},
        {"{\"template\":\"Do {data} {n}\",\"data\":[\"a\"],\"n\":2}", "'data' and 'n'"},
        {"{\"template\":\"Do {data}\",\"data\":[]}", "'data'"},
        {"{\"template\":\"Do {data}\",\"data\":\"a, b\"}", "'data'"},
        {"{\"template\":\"Do {data}\",\"data\":[\"a\",3]}", "'data'"},
        {"{\"template\":\"Do {data}\",\"data\":[\"a\",\"   \"]}", "'data'"},
        {"{\"template\":\"Do it\",\"data\":[\"a\",\"b\"]}", "{data}"},
        {"{\"template\":\"Make {data} items\",\"n\":3}", "{n}"},
        {"{\"template\":\"Make {n} items\",\"n\":0}", "'n'"},
        {"{\"template\":\"Make {n} items\",\"n\":65}", "'n'"},
        {"{\"template\":\"Make {n} items\",\"n\":2.5}", "'n'"},
        {"{\"template\":\"Make {n} items\",\"n\":\"3\"}", "'n'"},
        {"{\"template\":\"Q: {data}\",\"context\":\"A long story.\",\"data\":[\"a\"]}", "{context}"},
        {"{\"template\":\"Q: {data}\",\"context\":5,\"data\":[\"a\"]}", "'context'"},
        {"{\"template\":\"   \",\"data\":[\"a\"]}", "'template'"},
        {"{\"template\":\"Do {data}\", \"data\":[\"a\"", "bad JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        orc_pp_schema s;
        eng_err e = {0};
        int rc = orc_pp_schema_parse(bad[i][0], "row 12", &s, &e);
        T_CHECKF(rc == ENG_EFORMAT, "malformed row %zu accepted (rc %d)", i, rc);
        T_CHECKF(strstr(e.msg, "row 12") != NULL, "row %zu: message does not name the row: %s", i, e.msg);
        T_CHECKF(strstr(e.msg, bad[i][1]) != NULL, "row %zu: message does not name %s: %s", i, bad[i][1], e.msg);
        T_CHECK(s.tmpl == NULL && s.data == NULL);
    }
    int over = ORC_PP_MAX_ITEMS + 1;      /* too many items */
    char json[4096] = "{\"template\":\"{data}\",\"data\":[";
    for (int i = 0; i < over; i++) strcat(json, i ? ",\"x\"" : "\"x\"");
    strcat(json, "]}");
    orc_pp_schema s;
    eng_err e = {0};
    T_CHECK(orc_pp_schema_parse(json, "row 3", &s, &e) == ENG_EFORMAT);
    T_CHECK(strstr(e.msg, "'data'") != NULL);
}

static const char *const pp_files[] = {"generate_n_lmsys", "keyword_extraction_lmsys",
                                       "reading_comprehension_lmsys"};

/* One of the dataset files under the shared data. */
static int load_file(const char *name, orc_pp_row **rows, int *n, eng_err *e) {
    char path[512];
    snprintf(path, sizeof path, "%s/data/parallelprompt/lmsys_old/%s.json", t_shared(), name);
    return orc_pp_load(path, rows, n, e);
}

static void test_dataset_files_load(void) {
    for (int f = 0; f < 3; f++) {
        orc_pp_row *rows;
        int n, valid = 0;
        eng_err e = {0};
        if (load_file(pp_files[f], &rows, &n, &e)) T_SKIP("ParallelPrompt data under ../shared (optional): %s", e.msg);
        for (int i = 0; i < n; i++) {
            valid += rows[i].valid;
            T_CHECK(rows[i].original != NULL);
            if (!rows[i].valid) T_CHECKF(strstr(rows[i].error, "row ") != NULL, "%s", rows[i].error);
        }
        printf("  %s: %d rows, %d valid\n", pp_files[f], n, valid);
        /* 2 malformed rows per file: template without its item placeholder, or
         * a context the template neither names nor writes out */
        T_CHECKF(n - valid == 2, "%s: %d malformed rows", pp_files[f], n - valid);
        orc_pp_rows_free(rows, n);
    }
    orc_pp_row *rows;
    int n;
    eng_err e = {0};
    T_CHECK(orc_pp_load("/nonexistent/x.json", &rows, &n, &e) == ENG_EIO);
}

/* ------------------------------------------------------------ filling */
static void test_fill_braces(void) {
    orc_pp_schema s;
    eng_err e = {0};
    int rc = orc_pp_schema_parse(
        "{\"template\":\"Format as {\\\"k\\\": v}. {context}\\nItem: {data} ({data})\","
        "\"context\":\"ctx with {data} and {n} inside\","
        "\"data\":[\"a {context} b\",\"{data}\",\"}{\",\"plain\"]}", "row 0", &s, &e);
    T_CHECKF(rc == ENG_OK, "%s", e.msg);
    if (rc) return;
    char **p;
    int k;
    T_CHECK(orc_pp_fill(&s, &p, &k, &e) == ENG_OK);
    T_CHECK(k == 4);
    T_CHECKF(!strcmp(p[0], "Format as {\"k\": v}. ctx with {data} and {n} inside\nItem: a {context} b (a {context} b)"), "%s", p[0]);
    T_CHECKF(!strcmp(p[1], "Format as {\"k\": v}. ctx with {data} and {n} inside\nItem: {data} ({data})"), "%s", p[1]);
    T_CHECKF(!strcmp(p[2], "Format as {\"k\": v}. ctx with {data} and {n} inside\nItem: }{ (}{)"), "%s", p[2]);
    orc_pp_strv_free(p, k);
    orc_pp_schema_free(&s);

    rc = orc_pp_schema_parse("{\"template\":\"Generate {n} joke(s) about {cats}\",\"n\":3}", "row 0", &s, &e);
    T_CHECK(rc == ENG_OK);
    T_CHECK(orc_pp_fill(&s, &p, &k, &e) == ENG_OK);
    T_CHECK(k == 3);
    for (int i = 0; i < k; i++) T_CHECKF(!strcmp(p[i], "Generate 1 joke(s) about {cats}"), "%s", p[i]);
    orc_pp_strv_free(p, k);
    orc_pp_schema_free(&s);
}

static void test_hoist_context(void) {
    char *items[] = {"salary", "benefits"};
    orc_pp_schema s = {.kind = ORC_PP_DATA, .tmpl = "Extract {data} from the job ad: {context}",
                       .context = "Pays 40k {data}.", .data = items, .n_data = 2}, h;
    eng_err e = {0};
    T_CHECK(orc_pp_hoist_context(&s, &h, &e) == ENG_OK);
    T_CHECKF(!strcmp(h.tmpl, "{context}\n\nExtract {data} from the job ad: the text above"), "%s", h.tmpl);
    char **v;
    int k;
    T_CHECK(orc_pp_fill(&h, &v, &k, &e) == ENG_OK && k == 2);
    if (k == 2) T_CHECKF(!strcmp(v[1], "Pays 40k {data}.\n\nExtract benefits from the job ad: the text above"), "%s", v[1]);
    orc_pp_strv_free(v, k);
    orc_pp_schema_free(&h);
    s.tmpl = "{context}\nQ: {data}";                   /* already context first: unchanged */
    T_CHECK(orc_pp_hoist_context(&s, &h, &e) == ENG_OK);
    T_CHECK(!strcmp(h.tmpl, s.tmpl) && h.n_data == 2 && h.data != s.data && !strcmp(h.data[1], "benefits"));
    orc_pp_schema_free(&h);
    s.tmpl = "no placeholder";
    T_CHECK(orc_pp_hoist_context(&s, &h, &e) == ENG_EFORMAT);
}

/* Copy of s with every "from" replaced by "to". */
static char *replace_all(const char *s, const char *from, const char *to) {
    size_t nf = strlen(from), nt = strlen(to), n = 0;
    for (const char *p = strstr(s, from); p; p = strstr(p + nf, from)) n++;
    char *out = malloc(strlen(s) + n * nt + 1), *w = out;
    if (!out) return NULL;
    for (const char *p = s;;) {
        const char *q = strstr(p, from);
        if (!q) { strcpy(w, p); break; }
        memcpy(w, p, (size_t)(q - p));
        w += q - p;
        memcpy(w, to, nt);
        w += nt;
        p = q + nf;
    }
    return out;
}

/* On every annotated row of the dataset: a hoisted subtask prompt is the
 * context, a blank line, then the original subtask prompt with the context
 * read as "the text above"; so each subtask still sees the same context and
 * item, and nothing else changes. */
static void test_hoist_dataset_rows(void) {
    int hoisted = 0, checked = 0;
    for (int f = 0; f < 3; f++) {
        orc_pp_row *rows;
        int n;
        eng_err e = {0};
        if (load_file(pp_files[f], &rows, &n, &e)) T_SKIP("ParallelPrompt data under ../shared (optional): %s", e.msg);
        for (int i = 0; i < n; i++) {
            if (!rows[i].valid) continue;
            orc_pp_schema h;
            char **a = NULL, **b = NULL;
            int ka = 0, kb = 0;
            T_CHECKF(orc_pp_hoist_context(&rows[i].schema, &h, &e) == ENG_OK, "%s row %d: %s", pp_files[f], i, e.msg);
            T_CHECK(orc_pp_fill(&rows[i].schema, &a, &ka, &e) == ENG_OK && orc_pp_fill(&h, &b, &kb, &e) == ENG_OK);
            T_CHECK(ka == kb && ka == orc_pp_count(&rows[i].schema));
            int moved = strcmp(h.tmpl, rows[i].schema.tmpl) != 0;
            hoisted += moved;
            for (int j = 0; moved && j < ka && j < kb; j++) {
                const char *ctx = rows[i].schema.context;
                size_t nc = strlen(ctx);
                T_CHECKF(!strncmp(b[j], ctx, nc) && !strncmp(b[j] + nc, "\n\n", 2), "%s row %d", pp_files[f], i);
                char *back = replace_all(b[j] + nc + 2, "the text above", ctx);
                T_CHECKF(back && !strcmp(back, a[j]), "%s row %d item %d:\n%s\nvs\n%s", pp_files[f], i, j,
                         back ? back : "(oom)", a[j]);
                if (rows[i].schema.kind == ORC_PP_DATA) T_CHECK(strstr(b[j] + nc, rows[i].schema.data[j]) != NULL);
                free(back);
                checked++;
            }
            orc_pp_strv_free(a, ka);
            orc_pp_strv_free(b, kb);
            orc_pp_schema_free(&h);
        }
        orc_pp_rows_free(rows, n);
    }
    printf("  %d rows hoisted, %d subtask prompts checked\n", hoisted, checked);
    T_CHECK(hoisted >= 50);   /* nearly every keyword row puts {data} first */
}

/* ------------------------------------------------------------ detection */
typedef struct dcase {
    const char *prompt;
    int kind, count;
    const char *first, *last;   /* expected first/last item (data), NULL: not checked */
} dcase;

static const dcase det_cases[] = {
    {"Answer the following questions:\n1. What is the capital of France?\n2. Who wrote Hamlet?\n3. What is 2+2?",
     ORC_PP_DATA, 3, "What is the capital of France?", "What is 2+2?"},
    {"Please answer these:\n1) Why is the sky blue?\n2) Why is grass green?", ORC_PP_DATA, 2,
     "Why is the sky blue?", "Why is grass green?"},
    {"Translate each of these into German:\n- Good morning\n- Thank you very much\n- Where is the station?",
     ORC_PP_DATA, 3, "Good morning", "Where is the station?"},
    {"Summarise each of the following in one line:\n* The cat sat on the mat all day.\n* Dogs bark at night.\n"
     "* Birds sing in the morning.\n* Fish swim in the sea.", ORC_PP_DATA, 4, NULL, "Fish swim in the sea."},
    {"Give a one-word answer for each:\n\xe2\x80\xa2 Largest planet?\n\xe2\x80\xa2 Smallest prime?",
     ORC_PP_DATA, 2, "Largest planet?", "Smallest prime?"},
    {"Generate 10 names for a coffee shop.", ORC_PP_N, 10, NULL, NULL},
    {"Write 5 haikus about autumn leaves.", ORC_PP_N, 5, NULL, NULL},
    {"Give me three reasons to learn C.", ORC_PP_N, 3, NULL, NULL},
    {"Can you come up with 2-3 slogans for a bakery?", ORC_PP_N, 3, NULL, NULL},
    {"Extract the name, age, and city from this text: John is 42 and lives in Oslo.", ORC_PP_DATA, 3,
     "name", "city"},
    {"Extract salary, contract type and benefits from the job description: Paid 40k, permanent, free lunch.",
     ORC_PP_DATA, 3, "salary", "benefits"},
    {"For each of the following countries give the capital: France, Japan, Peru", ORC_PP_DATA, 3,
     "France", "Peru"},
    {"Translate the following 3 sentences into French: I am tired. The sun is out. We eat bread.",
     ORC_PP_DATA, 3, "I am tired.", "We eat bread."},
    {"Read the text and answer.\nText: Ann has a red bike and a blue car.\nWhat colour is the bike?\n"
     "What colour is the car?\nWho owns them?", ORC_PP_DATA, 3, "What colour is the bike?", "Who owns them?"},
    {"For the sentence: \"great film, loved it\", is the sentiment positive or negative?\n"
     "For the sentence: \"boring and far too long\", is the sentiment positive or negative?\n"
     "For the sentence: \"a masterpiece of its kind\", is the sentiment positive or negative?",
     ORC_PP_DATA, 3, "great film, loved it", "a masterpiece of its kind"},
    {"Here is a list of questions given in a python list:\n[\"Who won?\", \"When?\", \"Where?\"]\n"
     "Answer them from this: The Reds won in May at Wembley.", ORC_PP_DATA, 3, "Who won?", "Where?"},
    {"Answer the questions about the story: (1) Who is the hero? (2) Where does it happen?",
     ORC_PP_DATA, 2, "Who is the hero?", "Where does it happen?"},
    {"Extract keywords from the following titles: Cheap flights to Rome\nBest pizza in Naples\n"
     "Hiking the Dolomites", ORC_PP_DATA, 3, "Cheap flights to Rome", "Hiking the Dolomites"},
    /* not parallelisable */
    {"Write a poem about the sea.", ORC_PP_NONE, 0, NULL, NULL},
    {"What is the capital of France?", ORC_PP_NONE, 0, NULL, NULL},
    {"Explain the difference between TCP and UDP in simple terms.", ORC_PP_NONE, 0, NULL, NULL},
    {"Compare Python, Java and C++ for backend work.", ORC_PP_NONE, 0, NULL, NULL},
    {"Sort these numbers: 5, 3, 9, 1", ORC_PP_NONE, 0, NULL, NULL},
    {"Write a 3 paragraph essay on climate change.", ORC_PP_NONE, 0, NULL, NULL},
    {"Write 500 words about the history of Rome.", ORC_PP_NONE, 0, NULL, NULL},
    {"Rules:\n1. Be polite.\n2. Be brief.\nNow tell me a joke.", ORC_PP_NONE, 0, NULL, NULL},
    {"My plan for today:\n- wake up\n- go to work\nIs this a good plan?", ORC_PP_NONE, 0, NULL, NULL},
    {"Summarize this article: The council met on Tuesday, and decided to raise taxes by 2%.",
     ORC_PP_NONE, 0, NULL, NULL},
    {"I have 3 apples and eat 1. How many are left?", ORC_PP_NONE, 0, NULL, NULL},
    {"", ORC_PP_NONE, 0, NULL, NULL},
};

static void test_detect_prompts(void) {
    int n_par = 0, n_not = 0;
    for (size_t i = 0; i < sizeof det_cases / sizeof *det_cases; i++) {
        const dcase *c = &det_cases[i];
        orc_pp_schema s;
        eng_err e = {0};
        T_CHECK(orc_pp_detect(c->prompt, &s, &e) == ENG_OK);
        n_par += c->kind != ORC_PP_NONE;
        n_not += c->kind == ORC_PP_NONE;
        T_CHECKF(s.kind == c->kind, "case %zu: kind %d, want %d (rule %s): %.60s", i, s.kind, c->kind,
                 s.rule ? s.rule : "-", c->prompt);
        T_CHECKF(orc_pp_count(&s) == c->count, "case %zu: %d items, want %d (rule %s)", i,
                 orc_pp_count(&s), c->count, s.rule ? s.rule : "-");
        if (s.kind == c->kind && s.kind != ORC_PP_NONE) {
            T_CHECKF(orc_pp_check(&s, c->prompt, &e) == ENG_OK, "case %zu: own check fails: %s", i, e.msg);
            T_CHECKF(s.rule != NULL, "case %zu: no rule", i);
        }
        if (s.kind == ORC_PP_DATA && c->kind == ORC_PP_DATA && s.n_data == c->count) {
            if (c->first) T_CHECKF(!strcmp(s.data[0], c->first), "case %zu: first item '%s'", i, s.data[0]);
            if (c->last) T_CHECKF(!strcmp(s.data[s.n_data - 1], c->last), "case %zu: last item '%s'", i,
                                  s.data[s.n_data - 1]);
        }
        orc_pp_schema_free(&s);
    }
    printf("  %d parallelisable and %d not\n", n_par, n_not);
    T_CHECK(n_par >= 10 && n_not >= 10);
}

/* A detected schema fills into prompts that carry the item and the shared
 * context. */
static void test_detect_template_fills(void) {
    const char *p = "Extract the name, age, and city from this text: John is 42 and lives in Oslo.";
    orc_pp_schema s;
    eng_err e = {0};
    T_CHECK(orc_pp_detect(p, &s, &e) == ENG_OK);
    T_CHECK(s.kind == ORC_PP_DATA);
    char **v;
    int k;
    if (s.kind != ORC_PP_DATA || orc_pp_fill(&s, &v, &k, &e)) { orc_pp_schema_free(&s); return; }
    T_CHECKF(!strcmp(v[1], "Extract the age from this text: John is 42 and lives in Oslo."), "%s", v[1]);
    orc_pp_strv_free(v, k);
    orc_pp_schema_free(&s);

    p = "Answer the following questions:\n1. Who?\n2. Why?";
    T_CHECK(orc_pp_detect(p, &s, &e) == ENG_OK);
    if (s.kind != ORC_PP_DATA || orc_pp_fill(&s, &v, &k, &e)) { T_CHECK(0); orc_pp_schema_free(&s); return; }
    T_CHECKF(!strcmp(v[0], "Answer the following questions:\n\nWho?"), "%s", v[0]);
    orc_pp_strv_free(v, k);
    orc_pp_schema_free(&s);
}

/* ------------------------------------------------------------ validator */
static void test_check_proposals(void) {
    const char *prompt = "Answer: 1. Who is Ann? 2. Where is Bob?";
    char *items[] = {"Who is Ann?", "Where is  Bob?"};            /* spacing differs: still found */
    orc_pp_schema s = {.kind = ORC_PP_DATA, .tmpl = "Q: {data}", .context = "", .data = items, .n_data = 2};
    eng_err e = {0};
    T_CHECKF(orc_pp_check(&s, prompt, &e) == ENG_OK, "%s", e.msg);
    char *invented[] = {"Who is Ann?", "Who is Carl?"};
    s.data = invented;
    T_CHECK(orc_pp_check(&s, prompt, &e) == ENG_EFORMAT);
    T_CHECK(strstr(e.msg, "item 1") != NULL);
    s.data = items;
    s.n_data = 1;
    T_CHECK(orc_pp_check(&s, prompt, &e) == ENG_EFORMAT);        /* one subtask is no split */
    s.n_data = 2;
    s.tmpl = "Q: everything";
    T_CHECK(orc_pp_check(&s, prompt, &e) == ENG_EFORMAT);        /* no {data} */
    orc_pp_schema n = {.kind = ORC_PP_N, .tmpl = "Give {n} names", .context = "", .n = 4};
    T_CHECK(orc_pp_check(&n, "Give 4 names", &e) == ENG_OK);
    n.n = 1;
    T_CHECK(orc_pp_check(&n, "Give 1 name", &e) == ENG_EFORMAT);
}

static void test_extract_prompt_and_answer(void) {
    const char *prompt = "Answer these: 1. Who is Ann? 2. Where is Bob?";
    char *ask = orc_pp_extract_prompt(prompt);
    T_CHECK(ask != NULL);
    if (ask) {
        T_CHECK(strstr(ask, prompt) != NULL);
        T_CHECK(strstr(ask, "{data}") != NULL && strstr(ask, "\"parallel\"") != NULL);
    }
    free(ask);
    orc_pp_schema s;
    eng_err e = {0};
    const char *good = "Sure! ```json\n{\"parallel\": true, \"template\": \"Answer: {data}\", \"context\": \"\","
                       " \"data\": [\"Who is Ann?\", \"Where is Bob?\"]}\n```";
    T_CHECKF(orc_pp_extract_parse(good, prompt, &s, &e) == ENG_OK, "%s", e.msg);
    T_CHECK(s.kind == ORC_PP_DATA && s.n_data == 2);
    orc_pp_schema_free(&s);
    T_CHECK(orc_pp_extract_parse("{\"parallel\": false}", prompt, &s, &e) == ENG_OK);
    T_CHECK(s.kind == ORC_PP_NONE);
    orc_pp_schema_free(&s);
    const char *made_up = "{\"parallel\": true, \"template\": \"{data}\", \"data\": [\"Who is Ann?\", \"Who is Zed?\"]}";
    T_CHECK(orc_pp_extract_parse(made_up, prompt, &s, &e) == ENG_EFORMAT);
    T_CHECK(orc_pp_extract_parse("no json here", prompt, &s, &e) == ENG_EFORMAT);
    T_CHECK(orc_pp_extract_parse("{\"parallel\": true, \"template\": \"x {n}\", \"n\": 3}", "make 3 x", &s, &e) == ENG_OK);
    T_CHECK(s.kind == ORC_PP_N && s.n == 3);
    orc_pp_schema_free(&s);
}

/* ------------------------------------------------------------ agreement */
static void test_items_compare(void) {
    T_CHECK(orc_pp_item_loose("all addresses", "address"));
    T_CHECK(orc_pp_item_loose("driver's license", "drivers license"));
    T_CHECK(orc_pp_item_loose("Describe NAME_1's time in office", "Describe Trump's time in office"));
    T_CHECK(!orc_pp_item_loose("color", "material"));
    T_CHECK(!orc_pp_item_loose("What is the capital of France?", "Who painted the Mona Lisa?"));
    char *n = orc_pp_norm("  \xe2\x80\x9cHello\\n   World.\xe2\x80\x9d ");
    T_CHECKF(n && !strcmp(n, "hello world"), "%s", n ? n : "(null)");
    free(n);
    char *a1[] = {"Name", "Age"}, *a2[] = {"name.", " age "}, *a3[] = {"name", "years of age"};
    orc_pp_schema x = {.kind = ORC_PP_DATA, .tmpl = "{data}", .context = "", .data = a1, .n_data = 2};
    orc_pp_schema y = x, z = x, w = {.kind = ORC_PP_N, .tmpl = "{n}", .context = "", .n = 2};
    y.data = a2;
    z.data = a3;
    orc_pp_agreement g;
    orc_pp_compare(&x, &y, &g);
    T_CHECK(g.kind && g.count && g.exact && g.loose);
    orc_pp_compare(&x, &z, &g);
    T_CHECK(g.kind && g.count && !g.exact && g.loose);
    orc_pp_compare(&x, &w, &g);
    T_CHECK(!g.kind && !g.count && !g.loose);
    z.n_data = 1;
    orc_pp_compare(&x, &z, &g);
    T_CHECK(g.kind && !g.count && !g.loose);
}

/* ------------------------------------------------------------ aggregation */
typedef struct seen { int order[16], n; char text[1024]; } seen;

static void on_section(void *user, int item, const char *section) {
    seen *s = user;
    if (s->n < 16) s->order[s->n++] = item;
    strncat(s->text, section, sizeof s->text - strlen(s->text) - 1);
}

static void test_aggregation_order(void) {
    const char *labels[] = {"first {x}", "second\nline two", NULL, "fourth"};
    orc_pp_agg *a;
    seen s = {0};
    eng_err e = {0};
    T_CHECK(orc_pp_agg_create(4, labels, on_section, &s, &a, &e) == ENG_OK);
    T_CHECK(orc_pp_agg_put(a, 3, "D", &e) == ENG_OK);
    T_CHECK(s.n == 0 && orc_pp_agg_released(a) == 0);
    T_CHECK(orc_pp_agg_put(a, 1, "  B\n", &e) == ENG_OK);
    T_CHECK(s.n == 0);
    T_CHECK(orc_pp_agg_put(a, 0, "A", &e) == ENG_OK);
    T_CHECK(s.n == 2 && s.order[0] == 0 && s.order[1] == 1);
    T_CHECK(orc_pp_agg_put(a, 1, "again", &e) == ENG_EINVAL);    /* twice */
    T_CHECK(orc_pp_agg_put(a, 4, "out", &e) == ENG_EINVAL);      /* no such item */
    T_CHECK(!orc_pp_agg_done(a));
    T_CHECK(orc_pp_agg_put(a, 2, "C", &e) == ENG_OK);
    T_CHECK(orc_pp_agg_done(a) && s.n == 4 && s.order[2] == 2 && s.order[3] == 3);
    const char *want = "1. first {x}\nA\n\n2. second\nB\n\n3.\nC\n\n4. fourth\nD\n\n";
    T_CHECKF(!strcmp(orc_pp_agg_text(a), want), "%s", orc_pp_agg_text(a));
    T_CHECK(!strcmp(s.text, want));
    orc_pp_agg_destroy(a);
    T_CHECK(orc_pp_agg_create(0, NULL, NULL, NULL, &a, &e) == ENG_EINVAL);
}

/* ------------------------------------------------------------ adherence */
static void test_adherence(void) {
    char long_label[200];
    memset(long_label, 'x', sizeof long_label - 1);
    long_label[sizeof long_label - 1] = 0;
    const char *labels[] = {"salary", long_label, "line one\nline two"};
    orc_pp_agg *a;
    eng_err e = {0};
    T_CHECK(orc_pp_agg_create(3, labels, NULL, NULL, &a, &e) == ENG_OK);
    T_CHECK(orc_pp_agg_put(a, 2, "C", &e) == ENG_OK && orc_pp_agg_put(a, 0, "A", &e) == ENG_OK &&
            orc_pp_agg_put(a, 1, " ", &e) == ENG_OK);
    char *outs[] = {"A", " ", "C"};
    int gen[] = {3, 2, 1};
    bench_pp_result r = {.answer = (char *)orc_pp_agg_text(a), .outputs = outs, .n_outputs = 3, .n_gen = gen};
    bench_pp_adherence ad;
    bench_pp_adherence_of(&r, labels, &ad);
    /* item 2's tokens had no visible text: still answered */
    T_CHECKF(ad.items == 3 && ad.answered == 3 && ad.in_order == 3 && ad.nonblank == 2 && ad.ok,
             "%d %d %d %d %d", ad.items, ad.answered, ad.in_order, ad.nonblank, ad.ok);
    gen[1] = 0;                                   /* EOS first: not answered */
    bench_pp_adherence_of(&r, labels, &ad);
    T_CHECK(ad.answered == 2 && ad.in_order == 3 && !ad.ok);
    gen[1] = 2;
    bench_pp_adherence_of(&r, NULL, &ad);           /* headers without labels do not match */
    T_CHECK(ad.in_order == 0 && !ad.ok);
    /* hand-written answers: sections swapped, one missing, all there */
    r.answer = "1. salary\nA\n\n3. line one\nC\n\n2. x\nB\n\n";
    bench_pp_adherence_of(&r, labels, &ad);
    T_CHECK(ad.in_order == 1 && !ad.ok);
    const char *nl[] = {NULL, NULL, NULL};
    T_CHECK(orc_pp_sections_in_order("1.\nA\n\n2.\nB\n\n3.\nC\n\n", 3, nl) == 3);
    T_CHECK(orc_pp_sections_in_order("1.\nA\n\n3.\nC\n\n2.\nB\n\n", 3, NULL) == 2);
    T_CHECK(orc_pp_sections_in_order("1.\nA\n\n3.\nC\n\n", 3, NULL) == 1);
    T_CHECK(orc_pp_sections_in_order("intro\n1.\nA\n\n", 1, NULL) == 0);   /* must start the answer */
    T_CHECK(orc_pp_sections_in_order(NULL, 3, NULL) == 0);
    bench_pp_adherence_of(NULL, labels, &ad);
    T_CHECK(!ad.ok && ad.items == 0);
    r.n_gen = NULL;
    bench_pp_adherence_of(&r, labels, &ad);
    T_CHECK(!ad.ok);
    orc_pp_agg_destroy(a);
}

/* ------------------------------------------------------------ parallel mode, tiny model */
/* The tiny CPU model, an engine for it (2 threads, 8192 KV tokens) and a
 * scheduler: parallel-mode and chat-mode requests run through it as the
 * server runs them (benchmarks/lib/pp.c, the replay's runner). */
typedef struct tiny { eng_model *m; eng_engine *e; orc_sched *s; } tiny;

static int open_tiny(tiny *t, eng_err *err) {
    memset(t, 0, sizeof *t);
    eng_opts o = {.backend = ENG_BACKEND_CPU, .n_threads = 2, .max_seqs = 16, .n_blocks = 512};
    int rc = eng_model_load("tests/fixtures/tiny-qwen2", &t->m, err);
    if (!rc) rc = eng_create(t->m, &o, &t->e, err);
    if (!rc) rc = orc_sched_create(t->e, 4, &t->s, err);
    return rc;
}

static void close_tiny(tiny *t) {
    orc_sched_destroy(t->s);
    eng_destroy(t->e);
    eng_model_free(t->m);
}

/* Each subtask's greedy answer from the forked batch equals its answer as a
 * chat request of its own (the task hoists the context first), the shared
 * prefix is real, the sections come in item order, and no sequence is left. */
static void test_task_equals_alone_tiny(void) {
    tiny T;
    eng_err err = {0};
    if (open_tiny(&T, &err)) T_FAIL("bundled fixture tests/fixtures/tiny-qwen2: %s", err.msg);
    char *items[] = {"red apples", "green pears", "blue plums"};
    orc_pp_schema s = {.kind = ORC_PP_DATA, .tmpl = "Describe {data} briefly, as sold here: {context}",
                       .context = "A market stall sells fruit of many colours.", .data = items, .n_data = 3}, h;
    eng_sampling g = {.temperature = 0};
    bench_pp_result par, one;
    T_CHECK(orc_pp_hoist_context(&s, &h, &err) == ENG_OK);
    int rc = bench_pp_parallel(T.s, T.m, &s, 1, &g, 6, &par, &err);
    T_CHECKF(rc == ENG_OK, "%s", err.msg);
    if (!rc) {
        T_CHECK(par.n_outputs == 3 && par.shared_tokens > 10);
        T_CHECK(eng_n_live(T.e) == 0);
        T_CHECKF(par.ms_encode <= par.ms_prefill && par.ms_prefill <= par.ms_first &&
                 par.ms_first <= par.ms_total, "%.3f %.3f %.3f %.3f", par.ms_encode, par.ms_prefill,
                 par.ms_first, par.ms_total);
        bench_pp_adherence ad;
        bench_pp_adherence_of(&par, (const char *const *)items, &ad);
        T_CHECKF(ad.items == 3 && ad.in_order == 3, "%d sections in order\n%s", ad.in_order, par.answer);
        char **prompts;
        int k, prompt_tokens = 0;
        T_CHECK(orc_pp_fill(&h, &prompts, &k, &err) == ENG_OK && k == 3);
        for (int i = 0; i < k; i++) {
            if (bench_pp_serial(T.s, T.m, prompts[i], &g, 6, &one, &err)) { T_CHECKF(0, "%s", err.msg); break; }
            T_CHECKF(one.n_gen[0] == par.n_gen[i] && !strcmp(one.outputs[0], par.outputs[i]),
                     "item %d: alone '%s' (%d), forked '%s' (%d)", i, one.outputs[0], one.n_gen[0],
                     par.outputs[i], par.n_gen[i]);
            T_CHECK(!strcmp(one.answer, one.outputs[0]));
            prompt_tokens += one.prompt_tokens;
            bench_pp_result_free(&one);
        }
        T_CHECKF(par.prompt_tokens == prompt_tokens, "%d %d", par.prompt_tokens, prompt_tokens);
        orc_pp_strv_free(prompts, k);
        bench_pp_result_free(&par);
    }
    orc_pp_schema_free(&h);
    close_tiny(&T);
}

/* Reference for the task's batched prefill: the same fork off the shared
 * prefix (the prompts as parallel mode renders them: one user turn each),
 * but each child's own prompt tokens go through the model in a pass of
 * their own (eng_seq_prefill per child) before the children decode
 * together.  Greedy; stops where the task stops (the model's end of
 * sequence, max_tokens); out[i] gets the text, n_gen[i] the token count. */
static int one_by_one(eng_engine *e, char **prompts, int k, int max_tokens,
                      char out[][512], int *n_gen, eng_err *err) {
    int *ids[8] = {0}, n[8] = {0}, seq[8], done[8] = {0}, rc = ENG_OK, parent = -1, forked = 0;
    eng_tok_stream st[8];
    if (k < 1 || k > 8) return eng_seterr(err, ENG_EINVAL, "one_by_one: 1..8 prompts");
    memset(st, 0, sizeof st);
    const eng_model *m = eng_engine_model(e);
    const eng_config *c = eng_model_config(m);
    for (int i = 0; i < k && !rc; i++) {
        eng_chat_msg msg = { .role = "user", .content = prompts[i] };
        orc_query q = { .messages = &msg, .n_messages = 1 };
        rc = orc_encode_query(&q, m, &ids[i], &n[i], err);
    }
    int p = n[0];
    for (int i = 1; i < k; i++) {
        int j = 0;
        while (j < p && j < n[i] && ids[i][j] == ids[0][j]) j++;
        p = j;
    }
    eng_sampling g = {0};
    if (!rc) rc = eng_seq_add(e, ids[0], p, &g, &parent, err);
    if (!rc) rc = eng_seq_prefill(e, parent, err);
    for (int i = 0; i < k && !rc; i++) {
        if (!(rc = eng_seq_fork(e, parent, &g, &seq[i], err))) forked++;
        if (!rc && n[i] > p) rc = eng_seq_append(e, seq[i], ids[i] + p, n[i] - p, err);
        if (!rc) rc = eng_seq_prefill(e, seq[i], err);     /* this child alone */
    }
    if (parent >= 0) eng_seq_remove(e, parent);
    for (int live = k; !rc && live > 0;) {
        if ((rc = eng_step(e, err))) break;
        live = 0;
        for (int i = 0; i < k; i++) {
            if (done[i]) continue;
            eng_token t;
            eng_seq_last(e, seq[i], &t);
            int eos = orc_is_eos(c, t.id);
            if (!eos) {
                size_t len = strlen(out[i]);
                eng_tok_stream_put(eng_model_tok(m), &st[i], t.id, 1, out[i] + len, (int)(512 - len));
                n_gen[i]++;
            }
            if (eos || n_gen[i] >= max_tokens) { done[i] = 1; eng_seq_remove(e, seq[i]); }
            else live++;
        }
    }
    for (int i = 0; i < forked; i++) if (!done[i]) eng_seq_remove(e, seq[i]);
    for (int i = 0; i < k; i++) free(ids[i]);
    return rc;
}

/* The task's one batched pass over every child's own tokens gives the same
 * greedy answers as prefilling the children one by one, with the item first
 * (short shared prefix: hoisting off) and with the context hoisted (long one). */
static void test_batched_prefill_tiny(void) {
    tiny T;
    eng_err err = {0};
    if (open_tiny(&T, &err)) T_FAIL("bundled fixture tests/fixtures/tiny-qwen2: %s", err.msg);
    char *items[] = {"the salary", "the contract type", "the benefits", "the location"};
    orc_pp_schema s = {.kind = ORC_PP_DATA, .tmpl = "Extract {data} from the job description: {context}",
                       .context = "We pay 40k a year on a permanent contract, with free lunch, in an office "
                                  "near the station of a small town by the sea.",
                       .data = items, .n_data = 4}, h;
    T_CHECK(orc_pp_hoist_context(&s, &h, &err) == ENG_OK);
    eng_sampling g = {.temperature = 0};
    int shared[2] = {0};
    for (int v = 0; v < 2; v++) {
        bench_pp_result par;
        int rc = bench_pp_parallel(T.s, T.m, &s, v, &g, 12, &par, &err);
        T_CHECKF(rc == ENG_OK, "%s", err.msg);
        if (rc) break;
        shared[v] = par.shared_tokens;
        char **prompts, ref[4][512] = {{0}};
        int k, n_ref[4] = {0};
        T_CHECK(orc_pp_fill(v ? &h : &s, &prompts, &k, &err) == ENG_OK && k == 4);
        rc = one_by_one(T.e, prompts, k, 12, ref, n_ref, &err);
        T_CHECKF(rc == ENG_OK, "%s", err.msg);
        for (int i = 0; !rc && i < k; i++)
            T_CHECKF(n_ref[i] == par.n_gen[i] && !strcmp(ref[i], par.outputs[i]),
                     "%s item %d: one by one '%s' (%d), batched '%s' (%d)", v ? "hoisted" : "plain", i,
                     ref[i], n_ref[i], par.outputs[i], par.n_gen[i]);
        T_CHECK(eng_n_live(T.e) == 0);
        orc_pp_strv_free(prompts, k);
        bench_pp_result_free(&par);
    }
    T_CHECKF(shared[1] > shared[0] + 20, "shared prefix %d plain, %d hoisted", shared[0], shared[1]);
    orc_pp_schema_free(&h);
    close_tiny(&T);
}

/* Repeats (kind N): identical prompts share all but their last token and
 * sample with seed + item, so they differ, and each equals that prompt
 * alone with its seed; they decode in one batch (fewer scheduler steps than
 * tokens).  Limits: max_tokens per subtask, and the model's context (1024
 * positions) for a budget past it. */
static void test_task_repeats_and_limits_tiny(void) {
    tiny T;
    eng_err err = {0};
    if (open_tiny(&T, &err)) T_FAIL("bundled fixture tests/fixtures/tiny-qwen2: %s", err.msg);
    orc_pp_schema s = {.kind = ORC_PP_N, .tmpl = "Write {n} short line about the sea.", .context = "", .n = 3};
    eng_sampling t1 = {.temperature = 1.0f, .seed = 7};
    orc_sched_stats before, after;
    orc_sched_get_stats(T.s, &before);
    bench_pp_result par, one;
    int rc = bench_pp_parallel(T.s, T.m, &s, 1, &t1, 8, &par, &err);
    orc_sched_get_stats(T.s, &after);
    T_CHECKF(rc == ENG_OK, "%s", err.msg);
    if (!rc) {
        long long steps = after.steps - before.steps;
        T_CHECKF(steps <= 8 && par.total_gen > steps, "%lld steps for %d tokens", steps, par.total_gen);
        T_CHECK(par.shared_tokens == par.prompt_tokens / 3 - 1);
        for (int i = 0; i < 3; i++) T_CHECKF(par.n_gen[i] <= 8, "item %d: %d tokens", i, par.n_gen[i]);
        T_CHECK(strcmp(par.outputs[0], par.outputs[1]) || strcmp(par.outputs[1], par.outputs[2]));
        char **prompts;
        int k;
        T_CHECK(orc_pp_fill(&s, &prompts, &k, &err) == ENG_OK && k == 3);
        for (int i = 0; i < k; i++) {
            eng_sampling si = t1;
            si.seed = t1.seed + (uint64_t)i;
            if (bench_pp_serial(T.s, T.m, prompts[i], &si, 8, &one, &err)) { T_CHECKF(0, "%s", err.msg); break; }
            /* the same draws: as many tokens, the same text (a chat choice also
             * writes out the bytes of a character its last token left unfinished,
             * as U+FFFD; a subtask drops them) */
            T_CHECKF(one.n_gen[0] == par.n_gen[i] &&
                     !strncmp(one.outputs[0], par.outputs[i], strlen(par.outputs[i])),
                     "item %d: alone '%s' (%d), forked '%s' (%d)", i, one.outputs[0], one.n_gen[0],
                     par.outputs[i], par.n_gen[i]);
            bench_pp_result_free(&one);
        }
        orc_pp_strv_free(prompts, k);
        bench_pp_result_free(&par);
    }
    /* a budget past the context: every subtask stops at the context's end */
    char *items[] = {"one", "two"};
    orc_pp_schema d = {.kind = ORC_PP_DATA, .tmpl = "Count from {data}.", .context = "", .data = items, .n_data = 2};
    eng_sampling g = {0};
    const int max_pos = eng_model_config(T.m)->max_pos;
    rc = bench_pp_parallel(T.s, T.m, &d, 1, &g, 4 * max_pos, &par, &err);
    T_CHECKF(rc == ENG_OK, "%s", err.msg);
    if (!rc) {
        T_CHECKF(par.total_gen == 2 * max_pos - par.prompt_tokens, "%d tokens, %d prompt tokens",
                 par.total_gen, par.prompt_tokens);
        bench_pp_result_free(&par);
    }
    /* bad arguments */
    T_CHECK(bench_pp_parallel(T.s, T.m, &d, 1, &g, 0, &par, &err) == ENG_EINVAL);
    T_CHECK(bench_pp_serial(T.s, T.m, NULL, &g, 8, &par, &err) == ENG_EINVAL);
    orc_pp_schema bad = {.kind = ORC_PP_DATA, .tmpl = "no placeholder", .context = "", .data = items, .n_data = 2};
    T_CHECK(bench_pp_parallel(T.s, T.m, &bad, 1, &g, 8, &par, &err) == ENG_EFORMAT);
    T_CHECK(eng_n_live(T.e) == 0);
    close_tiny(&T);
}

/* ------------------------------------------------------------ dataset agreement */
/* Floors are the measured figures less about 3 points, so a regression in
 * any rule family fails; the overall floor is the 80% bar. */
static void test_detector_agreement(void) {
    static const double floor_pct[] = {95.0, 76.0, 70.0};
    int all_valid = 0, all_loose = 0;
    for (int f = 0; f < 3; f++) {
        orc_pp_row *rows;
        int n;
        eng_err e = {0};
        if (load_file(pp_files[f], &rows, &n, &e)) T_SKIP("ParallelPrompt data under ../shared (optional): %s", e.msg);
        int valid = 0, kind = 0, count = 0, exact = 0, loose = 0;
        for (int i = 0; i < n; i++) {
            if (!rows[i].valid) continue;
            orc_pp_schema d;
            T_CHECK(orc_pp_detect(rows[i].original, &d, &e) == ENG_OK);
            if (d.kind) T_CHECKF(orc_pp_check(&d, rows[i].original, &e) == ENG_OK, "%s row %d: %s", pp_files[f], i, e.msg);
            orc_pp_agreement a;
            orc_pp_compare(&rows[i].schema, &d, &a);
            valid++;
            kind += a.kind;
            count += a.count;
            exact += a.exact;
            loose += a.loose;
            orc_pp_schema_free(&d);
        }
        double p = 100.0 * loose / valid;
        printf("  %-28s valid %3d  kind %5.1f%%  count %5.1f%%  exact %5.1f%%  loose %5.1f%%\n", pp_files[f], valid,
               100.0 * kind / valid, 100.0 * count / valid, 100.0 * exact / valid, p);
        T_CHECKF(p >= floor_pct[f], "%s: %.1f%% < %.1f%%", pp_files[f], p, floor_pct[f]);
        all_valid += valid;
        all_loose += loose;
        orc_pp_rows_free(rows, n);
    }
    double all = 100.0 * all_loose / all_valid;
    printf("  all three files: loose agreement %.1f%% over %d rows\n", all, all_valid);
    T_CHECKF(all >= 80.0, "overall %.1f%%", all);
}

int main(void) {
    T_RUN(test_schema_good_rows);
    T_RUN(test_schema_malformed_rows);
    T_RUN(test_dataset_files_load);
    T_RUN(test_fill_braces);
    T_RUN(test_hoist_context);
    T_RUN(test_hoist_dataset_rows);
    T_RUN(test_detect_prompts);
    T_RUN(test_detect_template_fills);
    T_RUN(test_check_proposals);
    T_RUN(test_extract_prompt_and_answer);
    T_RUN(test_items_compare);
    T_RUN(test_aggregation_order);
    T_RUN(test_adherence);
    T_RUN(test_task_equals_alone_tiny);
    T_RUN(test_batched_prefill_tiny);
    T_RUN(test_task_repeats_and_limits_tiny);
    T_RUN(test_detector_agreement);
    T_DONE();
}
