/* test_tok.c — the BPE tokenizer against ids recorded from Hugging Face
 * `tokenizers` (tests/fixtures/tok_ids_*.json, made by scripts/gen_fixtures.py),
 * plus decoding, streaming, special tokens, the chat template, NFC and bad
 * input. */
#include <glob.h>
#include <cJSON.h>
#include "t.h"
#include "eng.h"
#include "unicode.h"
#include "pretok.h"

static char *slurp(const char *path, size_t *n) {
    char *b = NULL;
    eng_read_file(path, 0, &b, n, NULL);
    return b;
}

static cJSON *load_json(const char *path) {
    char *s = slurp(path, NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    return j;
}

static void print_ids(const char *label, const int *ids, int n) {
    printf("    %s (%d):", label, n);
    for (int i = 0; i < n && i < 40; i++) printf(" %d", ids[i]);
    printf(n > 40 ? " ...\n" : "\n");
}

/* Decodes ids one token at a time through eng_tok_stream_put (then a flush)
 * into a malloc'd string. */
static char *stream_decode(const eng_tok *t, const int *ids, int n, int skip_special) {
    size_t cap = 64, len = 0;
    char *all = malloc(cap), buf[4096];
    eng_tok_stream st = { .n_pend = 0 };
    for (int i = 0; i <= n && all; i++) {
        int k = eng_tok_stream_put(t, &st, i < n ? ids[i] : -1, skip_special, buf, sizeof buf);
        if (len + (size_t)k + 1 > cap) {
            while (len + (size_t)k + 1 > cap) cap *= 2;
            char *p = realloc(all, cap);
            if (!p) { free(all); return NULL; }
            all = p;
        }
        memcpy(all + len, buf, (size_t)k);
        len += (size_t)k;
    }
    if (all) all[len] = 0;
    return all;
}

/* Encodes every fixture string; ids, decode and streaming decode must match
 * the reference exactly. */
static void check_fixture(const char *name) {
    char tpath[256], ipath[256];
    snprintf(tpath, sizeof tpath, "tests/fixtures/tok-%s/tokenizer.json", name);
    snprintf(ipath, sizeof ipath, "tests/fixtures/tok_ids_%s.json", name);
    eng_tok *t;
    eng_err err = {0};
    int rc = eng_tok_load(tpath, &t, &err);
    T_CHECKF(rc == ENG_OK, "%s", err.msg);
    if (rc) return;
    cJSON *rows = load_json(ipath);
    T_CHECKF(cJSON_IsArray(rows), "cannot read %s", ipath);
    int total = 0, ok_ids = 0, ok_dec = 0, ok_stream = 0, shown = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) {
        const char *text = cJSON_GetObjectItem(row, "text")->valuestring;
        const char *want_dec = cJSON_GetObjectItem(row, "decoded")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(row, "ids");
        int nw = cJSON_GetArraySize(want), *w = malloc(sizeof(int) * (size_t)(nw + 1)), i = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, want) w[i++] = v->valueint;
        int *ids = NULL, n = 0;
        total++;
        rc = eng_tok_encode(t, text, strlen(text), 1, &ids, &n, &err);
        T_CHECKF(rc == ENG_OK, "%s", err.msg);
        int same = rc == ENG_OK && n == nw && !memcmp(ids, w, sizeof(int) * (size_t)n);
        ok_ids += same;
        if (!same && shown++ < 5) {
            printf("  %s: ids differ for \"%.120s\"\n", name, text);
            print_ids("want", w, nw);
            print_ids("got ", ids, n);
        }
        /* decode and streaming decode of the reference ids */
        char *dec = eng_tok_decode(t, w, nw, 0), *sdec = stream_decode(t, w, nw, 0);
        ok_dec += dec && !strcmp(dec, want_dec);
        ok_stream += sdec && !strcmp(sdec, want_dec);
        if ((!dec || strcmp(dec, want_dec)) && shown++ < 5)
            printf("  %s: decode differs: \"%.80s\" vs \"%.80s\"\n", name, dec ? dec : "(null)", want_dec);
        free(dec); free(sdec); free(ids); free(w);
    }
    printf("  %s: ids %d/%d, decode %d/%d, stream %d/%d\n", name, ok_ids, total, ok_dec, total,
           ok_stream, total);
    T_CHECK(total == 249);
    T_CHECK(ok_ids == total);
    T_CHECK(ok_dec == total);
    T_CHECK(ok_stream == total);
    cJSON_Delete(rows);
    eng_tok_free(t);
}

static void test_qwen2(void) { check_fixture("qwen2"); }
static void test_smol(void) { check_fixture("smol"); }
static void test_llama3(void) { check_fixture("llama3"); }

/* Id of an added token as the tokenizer.json lists it (not hard-coded). */
static int json_added_id(const char *path, const char *content) {
    cJSON *j = load_json(path);
    int id = -1;
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItem(j, "added_tokens"))
        if (!strcmp(cJSON_GetObjectItem(a, "content")->valuestring, content))
            id = cJSON_GetObjectItem(a, "id")->valueint;
    cJSON_Delete(j);
    return id;
}

static void test_special(void) {
    const char *path = "tests/fixtures/tok-qwen2/tokenizer.json";
    eng_tok *t;
    eng_err err = {0};
    T_CHECKF(eng_tok_load(path, &t, &err) == ENG_OK, "%s", err.msg);
    if (!t) return;
    int end = json_added_id(path, "<|im_end|>"), start = json_added_id(path, "<|im_start|>");
    T_CHECK(end >= 0 && start >= 0);
    T_CHECK(eng_tok_find(t, "<|im_end|>") == end);
    T_CHECK(eng_tok_find(t, "no such token") == -1);
    T_CHECK(eng_tok_vocab_size(t) == 1027);
    int *ids, n;
    const char *s = "<|im_end|>";
    T_CHECK(eng_tok_encode(t, s, strlen(s), 1, &ids, &n, &err) == ENG_OK);
    T_CHECK(n == 1 && ids[0] == end);
    free(ids);
    T_CHECK(eng_tok_encode(t, s, strlen(s), 0, &ids, &n, &err) == ENG_OK);
    T_CHECKF(n > 1, "n=%d", n);
    for (int i = 0; i < n; i++) T_CHECK(ids[i] != end);
    char *back = eng_tok_decode(t, ids, n, 0);
    T_CHECK(back && !strcmp(back, s));       /* the text survives as text */
    free(back);
    free(ids);
    s = "<|im_start|>user\nhi<|im_end|>";
    T_CHECK(eng_tok_encode(t, s, strlen(s), 1, &ids, &n, &err) == ENG_OK);
    T_CHECK(n >= 3 && ids[0] == start && ids[n - 1] == end);
    back = eng_tok_decode(t, ids, n, 1);
    T_CHECKF(back && !strcmp(back, "user\nhi"), "%s", back);
    free(back);
    back = eng_tok_decode(t, ids, n, 0);
    T_CHECK(back && !strcmp(back, s));
    free(back);
    char out[256];
    eng_tok_stream st = {0};
    T_CHECK(eng_tok_stream_put(t, &st, end, 1, out, sizeof out) == 0 && !out[0]);
    T_CHECK(eng_tok_stream_put(t, &st, end, 0, out, sizeof out) == 10 && !strcmp(out, s + 19));
    T_CHECK(eng_tok_stream_put(t, &st, 999999, 0, out, sizeof out) == 0);   /* bad id */
    int len;
    T_CHECK(eng_tok_piece(t, -1, &len) == NULL && eng_tok_piece(t, 5000, &len) == NULL);
    const char *p = eng_tok_piece(t, end, &len);
    T_CHECK(p && len == 10 && !memcmp(p, "<|im_end|>", 10));
    free(ids);
    eng_tok_free(t);
}

/* Streaming holds back partial characters and replaces invalid bytes. */
static void test_stream_bytes(void) {
    eng_tok *t;
    eng_err err = {0};
    T_CHECKF(eng_tok_load("tests/fixtures/tok-smol/tokenizer.json", &t, &err) == ENG_OK, "%s", err.msg);
    if (!t) return;
    int byte_id[256];
    for (int b = 0; b < 256; b++) byte_id[b] = -1;
    for (int id = 0; id < eng_tok_vocab_size(t); id++) {
        int len;
        const char *p = eng_tok_piece(t, id, &len);
        if (p && len == 1) byte_id[(unsigned char)p[0]] = id;
    }
    int all = 1;
    for (int b = 0; b < 256; b++) all &= byte_id[b] >= 0;
    T_CHECK(all);
    if (!all) { eng_tok_free(t); return; }
    const unsigned char text[] = "a\xC3\xA9\xF0\x9F\x98\x80z";   /* a é 😀 z */
    int want[] = {1, 0, 2, 0, 0, 0, 4, 1};                       /* bytes out per token */
    eng_tok_stream st = {0};
    char out[64];
    for (int i = 0; i < 8; i++) {
        int k = eng_tok_stream_put(t, &st, byte_id[text[i]], 0, out, sizeof out);
        T_CHECKF(k == want[i], "byte %d: %d", i, k);
    }
    /* invalid: a lone continuation byte, then a truncated sequence cut short
     * by ASCII, then a truncated sequence at the end, flushed */
    memset(&st, 0, sizeof st);
    T_CHECK(eng_tok_stream_put(t, &st, byte_id[0x80], 0, out, sizeof out) == 3 &&
            !strcmp(out, "\xEF\xBF\xBD"));
    T_CHECK(eng_tok_stream_put(t, &st, byte_id[0xE4], 0, out, sizeof out) == 0);
    T_CHECK(eng_tok_stream_put(t, &st, byte_id[0xBD], 0, out, sizeof out) == 0);
    T_CHECK(eng_tok_stream_put(t, &st, byte_id['x'], 0, out, sizeof out) == 4 &&
            !strcmp(out, "\xEF\xBF\xBDx"));
    T_CHECK(eng_tok_stream_put(t, &st, byte_id[0xF0], 0, out, sizeof out) == 0);
    T_CHECK(eng_tok_stream_put(t, &st, -1, 0, out, sizeof out) == 3 && !strcmp(out, "\xEF\xBF\xBD"));
    /* decode agrees with the stream on the same bytes */
    int ids[] = {byte_id[0x80], byte_id[0xE4], byte_id[0xBD], byte_id['x'], byte_id[0xF0]};
    char *d = eng_tok_decode(t, ids, 5, 0);
    T_CHECK(d && !strcmp(d, "\xEF\xBF\xBD\xEF\xBF\xBDx\xEF\xBF\xBD"));
    free(d);
    /* a small output buffer never overflows and stays NUL-terminated */
    memset(&st, 0, sizeof st);
    out[2] = 'Z';
    T_CHECK(eng_tok_stream_put(t, &st, byte_id['q'], 0, out, 2) == 1 && out[1] == 0 && out[2] == 'Z');
    eng_tok_free(t);
}

static void test_chat(void) {
    eng_chat_msg m[] = {{"system", "Be brief."}, {"user", "What is 2+2?"}};
    char *s = eng_chat_format(m, 2, 1);
    T_CHECK(s && !strcmp(s, "<|im_start|>system\nBe brief.<|im_end|>\n"
                            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"));
    free(s);
    s = eng_chat_format(m + 1, 1, 0);
    T_CHECK(s && !strcmp(s, "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"));
    free(s);
    s = eng_chat_format(NULL, 0, 1);
    T_CHECK(s && !strcmp(s, "<|im_start|>assistant\n"));
    free(s);
    T_CHECK(eng_chat_format(NULL, 3, 1) == NULL);
}

/* Writes text to a temporary file and tries to load it. */
static int load_text(const char *text, eng_err *err) {
    char path[] = "/tmp/test_tok_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    eng_tok *t = NULL;
    int rc = eng_tok_load(path, &t, err);
    if (rc == ENG_OK) eng_tok_free(t);
    remove(path);
    return rc;
}

/* A small byte-level BPE: vocabulary a b c ab bc abc, merges given. */
#define TINY(merges, extra) \
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"bc\":4,\"abc\":5," \
    "\"\\u0120\":6}, \"merges\": " merges extra "}, \"pre_tokenizer\": {\"type\": \"ByteLevel\", " \
    "\"add_prefix_space\": false, \"use_regex\": true}, \"decoder\": {\"type\": \"ByteLevel\"}}"

static void test_malformed(void) {
    eng_err err = {0};
    struct { const char *json, *needle; int code; } cases[] = {
        {"{\"model\": {", "malformed JSON", ENG_EFORMAT},
        {"", "malformed JSON", ENG_EFORMAT},
        {"[1, 2]", "not a JSON object", ENG_EFORMAT},
        {"{\"added_tokens\": []}", "model", ENG_EFORMAT},
        {TINY("[\"a\"]", ""), "merges[0]", ENG_EFORMAT},
        {TINY("[[\"a\", 3]]", ""), "merges[0]", ENG_EFORMAT},
        {TINY("[\"a b\", \"b x\"]", ""), "\"x\" is not in the vocabulary", ENG_EFORMAT},
        {TINY("[\"c a\"]", ""), "merge of", ENG_EFORMAT},
        {TINY("7", ""), "merges", ENG_EFORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}", "vocab", ENG_EFORMAT},
        {"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "WordPiece", ENG_EUNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\":0}, \"merges\": []}, "
         "\"pre_tokenizer\": {\"type\": \"Whitespace\"}}", "Whitespace", ENG_EUNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\":0}, \"merges\": []}, "
         "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
         "\"pattern\": {\"Regex\": \"\\\\w+\"}, \"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\"}]}}",
         "\\w+", ENG_EUNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\":0}, \"merges\": []}, "
         "\"normalizer\": {\"type\": \"Lowercase\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
         "Lowercase", ENG_EUNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\":0}, \"merges\": []}, "
         "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"Metaspace\"}}",
         "Metaspace", ENG_EUNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\":0}, \"merges\": []}}", "ByteLevel",
         ENG_EUNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\":0}, \"merges\": []}, \"added_tokens\": "
         "[{\"content\": \"x\"}], \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", "added_tokens[0]",
         ENG_EFORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&err, 0, sizeof err);
        int rc = load_text(cases[i].json, &err);
        T_CHECKF(rc == cases[i].code && strstr(err.msg, cases[i].needle),
                 "case %zu: rc %d, \"%s\"", i, rc, err.msg);
    }
    eng_tok *t = (eng_tok *)&err;
    T_CHECK(eng_tok_load("/nonexistent/tokenizer.json", &t, &err) == ENG_EIO && t == NULL);
    /* a sane file does load */
    T_CHECKF(load_text(TINY("[\"a b\"]", ""), &err) == ENG_OK, "%s", err.msg);
}

static int *encode_tiny(const char *json, const char *text, int *n) {
    char path[] = "/tmp/test_tok_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "w");
    fputs(json, f);
    fclose(f);
    eng_tok *t;
    eng_err err = {0};
    int *ids = NULL;
    *n = -1;
    if (eng_tok_load(path, &t, &err) == ENG_OK) {
        if (eng_tok_encode(t, text, strlen(text), 1, &ids, n, &err)) *n = -1;
        eng_tok_free(t);
    } else {
        printf("  load: %s\n", err.msg);
    }
    remove(path);
    return ids;
}

/* Both merges formats, and ignore_merges. */
static void test_merge_formats(void) {
    int n1, n2, n3, n4;
    int *a = encode_tiny(TINY("[\"b c\", \"a b\"]", ""), "abc abc", &n1);
    int *b = encode_tiny(TINY("[[\"b\", \"c\"], [\"a\", \"b\"]]", ""), "abc abc", &n2);
    /* "b c" ranks first, so abc -> a bc; " " is its own pre-token (Ġ = 6) */
    T_CHECKF(n1 == 5 && a[0] == 0 && a[1] == 4 && a[2] == 6 && a[3] == 0 && a[4] == 4, "n1=%d", n1);
    T_CHECK(n2 == n1 && b && !memcmp(a, b, sizeof(int) * (size_t)n1));
    int *c = encode_tiny(TINY("[\"b c\", \"a b\"]", ", \"ignore_merges\": true"), "abc", &n3);
    T_CHECKF(n3 == 1 && c[0] == 5, "n3=%d", n3);   /* whole word found in the vocabulary */
    int *d = encode_tiny(TINY("[\"a b\", \"b c\"]", ""), "abc", &n4);
    T_CHECKF(n4 == 2 && d[0] == 3 && d[1] == 2, "n4=%d", n4);
    free(a); free(b); free(c); free(d);
}

/* Writes j to a temporary file and loads it as a tokenizer. */
static eng_tok *load_cjson(const cJSON *j, eng_err *err) {
    char path[] = "/tmp/test_tok_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    char *s = cJSON_PrintUnformatted(j);
    FILE *f = fdopen(fd, "w");
    if (s) fputs(s, f);
    fclose(f);
    free(s);
    eng_tok *t = NULL;
    eng_tok_load(path, &t, err);
    remove(path);
    return t;
}

static int same_ids(const cJSON *want, const int *ids, int n) {
    if (cJSON_GetArraySize(want) != n) return 0;
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, want) if (v->valueint != ids[i++]) return 0;
    return 1;
}

/* The Qwen2 fixture with its merges rewritten in the older "a b" form must
 * still give the reference ids. */
static void test_legacy_merges(void) {
    cJSON *j = load_json("tests/fixtures/tok-qwen2/tokenizer.json");
    cJSON *rows = load_json("tests/fixtures/tok_ids_qwen2.json");
    T_CHECK(j && rows);
    if (!j || !rows) return;
    cJSON *merges = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "merges"), *legacy = cJSON_CreateArray();
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s %s", m->child->valuestring, m->child->next->valuestring);
        cJSON_AddItemToArray(legacy, cJSON_CreateString(buf));
    }
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "model"), "merges", legacy);
    eng_err err = {0};
    eng_tok *t = load_cjson(j, &err);
    T_CHECKF(t != NULL, "%s", err.msg);
    int ok = 0, total = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) {
        const char *text = cJSON_GetObjectItem(row, "text")->valuestring;
        int *ids = NULL, n = 0;
        total++;
        if (t && eng_tok_encode(t, text, strlen(text), 1, &ids, &n, &err) == ENG_OK)
            ok += same_ids(cJSON_GetObjectItem(row, "ids"), ids, n);
        free(ids);
    }
    printf("  legacy merges: ids %d/%d\n", ok, total);
    T_CHECK(ok == total && total == 249);
    eng_tok_free(t);
    cJSON_Delete(j);
    cJSON_Delete(rows);
}

/* Random strings of tricky characters (tests/fixtures/tok_fuzz.json, from
 * scripts/tok_fuzz_ref.py) through the fixture tokenizers and variants:
 * GPT-2 style ByteLevel with add_prefix_space, contiguous Digits + NFC,
 * ignore_merges, added tokens with lstrip/rstrip/single_word/normalized.
 * Checks ids with and without allow_special, decode and decode skipping
 * special tokens. */
static void test_fuzz(void) {
    cJSON *r = load_json("tests/fixtures/tok_fuzz.json");
    if (!r) T_FAIL("bundled fixture tests/fixtures/tok_fuzz.json did not load");
    const cJSON *strs = cJSON_GetObjectItem(r, "strings"), *tj;
    int ns = cJSON_GetArraySize(strs), n_tok = 0;
    cJSON_ArrayForEach(tj, cJSON_GetObjectItem(r, "tokenizers")) {
        const char *name = tj->string;
        eng_err err = {0};
        eng_tok *t = load_cjson(tj, &err);
        T_CHECKF(t != NULL, "%s: %s", name, err.msg);
        if (!t) continue;
        n_tok++;
        const cJSON *ids = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "ids"), name);
        const cJSON *nosp = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "ids_nospecial"), name);
        const cJSON *dec = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "decoded"), name);
        const cJSON *skip = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "decoded_skip"), name);
        int ok[4] = {0}, shown = 0;
        for (int i = 0; i < ns; i++) {
            const char *text = cJSON_GetArrayItem(strs, i)->valuestring;
            const cJSON *want = cJSON_GetArrayItem(ids, i), *want_ns = cJSON_GetArrayItem(nosp, i);
            const cJSON *d = cJSON_GetArrayItem(dec, i), *ds = cJSON_GetArrayItem(skip, i);
            const char *want_dec = cJSON_IsString(d) ? d->valuestring : text;
            const char *want_skip = cJSON_IsString(ds) ? ds->valuestring : want_dec;
            if (cJSON_IsNull(want_ns)) want_ns = want;
            int *got = NULL, n = 0, *w = malloc(sizeof(int) * (size_t)(cJSON_GetArraySize(want) + 1)), nw = 0;
            const cJSON *v;
            cJSON_ArrayForEach(v, want) w[nw++] = v->valueint;
            int good = eng_tok_encode(t, text, strlen(text), 1, &got, &n, &err) == ENG_OK &&
                       same_ids(want, got, n);
            ok[0] += good;
            if (!good && shown++ < 3) {
                printf("  %s: ids differ for \"%.100s\"\n", name, text);
                print_ids("got", got, n);
            }
            free(got);
            got = NULL;
            good = eng_tok_encode(t, text, strlen(text), 0, &got, &n, &err) == ENG_OK &&
                   same_ids(want_ns, got, n);
            ok[1] += good;
            if (!good && shown++ < 3) printf("  %s: ids without specials differ for \"%.100s\"\n", name, text);
            free(got);
            char *a = eng_tok_decode(t, w, nw, 0), *b = eng_tok_decode(t, w, nw, 1);
            ok[2] += a && !strcmp(a, want_dec);
            ok[3] += b && !strcmp(b, want_skip);
            free(a); free(b); free(w);
        }
        printf("  %-16s ids %d/%d, without specials %d/%d, decode %d/%d, skipping specials %d/%d\n",
               name, ok[0], ns, ok[1], ns, ok[2], ns, ok[3], ns);
        for (int k = 0; k < 4; k++) T_CHECK(ok[k] == ns);
        eng_tok_free(t);
    }
    T_CHECK(n_tok == 7 && ns > 0);
    cJSON_Delete(r);
}

/* The split patterns alone, against pieces recorded from `tokenizers`'
 * Split(Regex(...), "isolated").pre_tokenize_str (pieces separated by \x01):
 * case-insensitive contractions (U+017F folds to s, the Kelvin sign and
 * U+FB06 do not count), whitespace runs before words, digits, marks. */
static void test_pretok(void) {
    static const struct { int pat; const char *in, *want; } cases[] = {
        {ENG_PT_QWEN2, "'\xc5\xbfing",
         "'\xc5\xbf\x01ing"},
        {ENG_PT_QWEN2, "'\xc5\xbf",
         "'\xc5\xbf"},
        {ENG_PT_QWEN2, "'\xc5\xbfx y",
         "'\xc5\xbf\x01x\x01 y"},
        {ENG_PT_QWEN2, "I'\xc5\xbf" "a",
         "I\x01'\xc5\xbf\x01" "a"},
        {ENG_PT_QWEN2, "'\xe2\x84\xaa" "a",
         "'\xe2\x84\xaa" "a"},
        {ENG_PT_QWEN2, "'\xef\xac\x86x",
         "'\xef\xac\x86x"},
        {ENG_PT_QWEN2, "'SSx",
         "'S\x01Sx"},
        {ENG_PT_QWEN2, "'LLx",
         "'LL\x01x"},
        {ENG_PT_QWEN2, "'lLx",
         "'lL\x01x"},
        {ENG_PT_QWEN2, "\x0a hello\xe2\x80\xaf",
         "\x0a\x01 hello\x01\xe2\x80\xaf"},
        {ENG_PT_LLAMA3, "\x0a hello\xe2\x80\xaf",
         "\x0a\x01 hello\x01\xe2\x80\xaf"},
        {ENG_PT_GPT2, "\x0a hello\xe2\x80\xaf",
         "\x0a\x01 hello\x01\xe2\x80\xaf"},
        {ENG_PT_QWEN2, "hellob\x0d the're",
         "hellob\x01\x0d\x01 the\x01're"},
        {ENG_PT_LLAMA3, "hellob\x0d the're",
         "hellob\x01\x0d\x01 the\x01're"},
        {ENG_PT_GPT2, "hellob\x0d the're",
         "hellob\x01\x0d\x01 the\x01're"},
        {ENG_PT_QWEN2, "e\xcc\x81\xc4\xb0" "9'VE'x}'T\x0d\xe3\x82\xa2\xe0\xa4\x95\xe0\xa4\xbc the\xe1\xa0\x8e%",
         "e\x01\xcc\x81\xc4\xb0\x01" "9\x01'VE\x01'x\x01}'\x01T\x01\x0d\x01\xe3\x82\xa2\xe0\xa4\x95\x01\xe0\xa4\xbc\x01 the\x01\xe1\xa0\x8e%"},
        {ENG_PT_LLAMA3, "e\xcc\x81\xc4\xb0" "9'VE'x}'T\x0d\xe3\x82\xa2\xe0\xa4\x95\xe0\xa4\xbc the\xe1\xa0\x8e%",
         "e\x01\xcc\x81\xc4\xb0\x01" "9\x01'VE\x01'x\x01}'\x01T\x01\x0d\x01\xe3\x82\xa2\xe0\xa4\x95\x01\xe0\xa4\xbc\x01 the\x01\xe1\xa0\x8e%"},
        {ENG_PT_GPT2, "e\xcc\x81\xc4\xb0" "9'VE'x}'T\x0d\xe3\x82\xa2\xe0\xa4\x95\xe0\xa4\xbc the\xe1\xa0\x8e%",
         "e\x01\xcc\x81\x01\xc4\xb0\x01" "9\x01'\x01VE\x01'\x01x\x01}'\x01T\x01\x0d\x01\xe3\x82\xa2\xe0\xa4\x95\x01\xe0\xa4\xbc\x01 the\x01\xe1\xa0\x8e%"},
        {ENG_PT_QWEN2, "\xe2\x80\x8d)\xf0\x9f\x98\x80+\xe0\xa4\x83\xc2\xaa\xc2\xaa\x0d\x0a\xd9\xa1\x0d\x0a\"\xe0\xa5\x98 ",
         "\xe2\x80\x8d)\xf0\x9f\x98\x80+\xe0\xa4\x83\x01\xc2\xaa\xc2\xaa\x01\x0d\x0a\x01\xd9\xa1\x01\x0d\x0a\x01\"\xe0\xa5\x98\x01 "},
        {ENG_PT_LLAMA3, "\xe2\x80\x8d)\xf0\x9f\x98\x80+\xe0\xa4\x83\xc2\xaa\xc2\xaa\x0d\x0a\xd9\xa1\x0d\x0a\"\xe0\xa5\x98 ",
         "\xe2\x80\x8d)\xf0\x9f\x98\x80+\xe0\xa4\x83\x01\xc2\xaa\xc2\xaa\x01\x0d\x0a\x01\xd9\xa1\x01\x0d\x0a\x01\"\xe0\xa5\x98\x01 "},
        {ENG_PT_GPT2, "\xe2\x80\x8d)\xf0\x9f\x98\x80+\xe0\xa4\x83\xc2\xaa\xc2\xaa\x0d\x0a\xd9\xa1\x0d\x0a\"\xe0\xa5\x98 ",
         "\xe2\x80\x8d)\xf0\x9f\x98\x80+\xe0\xa4\x83\x01\xc2\xaa\xc2\xaa\x01\x0d\x01\x0a\x01\xd9\xa1\x01\x0d\x01\x0a\x01\"\x01\xe0\xa5\x98\x01 "},
        {ENG_PT_QWEN2, "}   \xe2\x85\xab" "12345678",
         "}\x01  \x01 \x01\xe2\x85\xab\x01" "1\x01" "2\x01" "3\x01" "4\x01" "5\x01" "6\x01" "7\x01" "8"},
        {ENG_PT_LLAMA3, "}   \xe2\x85\xab" "12345678",
         "}\x01  \x01 \x01\xe2\x85\xab" "12\x01" "345\x01" "678"},
        {ENG_PT_GPT2, "}   \xe2\x85\xab" "12345678",
         "}\x01  \x01 \xe2\x85\xab" "12345678"},
        {ENG_PT_QWEN2, "\xc2\xbd'LL/.  \xc2\xbd\xed\x95\x9c" "1\xc2\xaa/\xd9\xa1\\#",
         "\xc2\xbd\x01'LL\x01/.\x01 \x01 \x01\xc2\xbd\x01\xed\x95\x9c\x01" "1\x01\xc2\xaa\x01/\x01\xd9\xa1\x01\\#"},
        {ENG_PT_LLAMA3, "\xc2\xbd'LL/.  \xc2\xbd\xed\x95\x9c" "1\xc2\xaa/\xd9\xa1\\#",
         "\xc2\xbd\x01'LL\x01/.\x01 \x01 \x01\xc2\xbd\x01\xed\x95\x9c\x01" "1\x01\xc2\xaa\x01/\x01\xd9\xa1\x01\\#"},
        {ENG_PT_GPT2, "\xc2\xbd'LL/.  \xc2\xbd\xed\x95\x9c" "1\xc2\xaa/\xd9\xa1\\#",
         "\xc2\xbd\x01'\x01LL\x01/.\x01 \x01 \xc2\xbd\x01\xed\x95\x9c\x01" "1\x01\xc2\xaa\x01/\x01\xd9\xa1\x01\\#"},
        {ENG_PT_QWEN2, "'d  \xd9\xa1\x0d\x0a\xed\x95\x9c?a\xe3\x80\x80\xe0\xa5\xa7" "c\xef\xb8\x8f' ",
         "'d\x01 \x01 \x01\xd9\xa1\x01\x0d\x0a\x01\xed\x95\x9c\x01?a\x01\xe3\x80\x80\x01\xe0\xa5\xa7\x01" "c\x01\xef\xb8\x8f'\x01 "},
        {ENG_PT_LLAMA3, "'d  \xd9\xa1\x0d\x0a\xed\x95\x9c?a\xe3\x80\x80\xe0\xa5\xa7" "c\xef\xb8\x8f' ",
         "'d\x01 \x01 \x01\xd9\xa1\x01\x0d\x0a\x01\xed\x95\x9c\x01?a\x01\xe3\x80\x80\x01\xe0\xa5\xa7\x01" "c\x01\xef\xb8\x8f'\x01 "},
        {ENG_PT_GPT2, "'d  \xd9\xa1\x0d\x0a\xed\x95\x9c?a\xe3\x80\x80\xe0\xa5\xa7" "c\xef\xb8\x8f' ",
         "'d\x01 \x01 \xd9\xa1\x01\x0d\x01\x0a\x01\xed\x95\x9c\x01?\x01" "a\x01\xe3\x80\x80\x01\xe0\xa5\xa7\x01" "c\x01\xef\xb8\x8f'\x01 "},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *s = cases[c].in;
        size_t len = strlen(s);
        eng_pt_char ch[64];
        int n = 0;
        for (size_t i = 0; i < len && n < 64;) {
            uint32_t cp;
            int k = eng_utf8_next((const unsigned char *)s + i, len - i, &cp);
            ch[n++] = (eng_pt_char){ cp, (uint32_t)i, (uint8_t)eng_uni_class(cp) };
            i += (size_t)k;
        }
        char got[256];
        size_t g = 0;
        for (int i = 0; i < n && g + 64 < sizeof got;) {
            int k = eng_pt_match(cases[c].pat, ch, n, i);
            size_t a = ch[i].off, b = i + k < n ? ch[i + k].off : len;
            if (i) got[g++] = '\x01';
            memcpy(got + g, s + a, b - a);
            g += b - a;
            i += k;
        }
        got[g] = 0;
        T_CHECKF(!strcmp(got, cases[c].want), "case %zu (pattern %d)", c, cases[c].pat);
    }
}

static void check_nfc(const char *in, const char *want) {
    char *out;
    size_t n;
    T_CHECK(eng_uni_nfc(in, strlen(in), &out, &n) == 0);
    T_CHECKF(n == strlen(want) && !memcmp(out, want, n), "\"%s\" -> \"%s\"", in, out);
    free(out);
}

/* Expected values are Python's unicodedata.normalize("NFC", ...). */
static void test_nfc(void) {
    check_nfc("plain ascii", "plain ascii");
    check_nfc("A\xCC\x8A", "\xC3\x85");                            /* A + ring -> Å */
    check_nfc("\xE2\x84\xAB", "\xC3\x85");                         /* Angstrom sign -> Å */
    check_nfc("\xE2\x84\xA6", "\xCE\xA9");                         /* Ohm -> Omega */
    check_nfc("d\xCC\x87\xCC\xA3", "\xE1\xB8\x8D\xCC\x87");        /* reordered, then composed */
    check_nfc("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB", "\xED\x95\x9C");  /* jamo -> 한 */
    check_nfc("\xE0\xA4\x95\xE0\xA4\xBC", "\xE0\xA4\x95\xE0\xA4\xBC"); /* exclusion stays */
    check_nfc("\xE0\xA5\x98", "\xE0\xA4\x95\xE0\xA4\xBC");            /* U+0958 decomposes */
    check_nfc("\xCC\x81" "a", "\xCC\x81" "a");                     /* leading mark */
    check_nfc("e\xCC\x81\xCC\x81", "\xC3\xA9\xCC\x81");            /* blocked second acute */
    check_nfc("a\xCC\x96\xCC\xA3", "a\xCC\x96\xCC\xA3");           /* blocked by equal class */
    check_nfc("a\xCC\xA3\xCC\x96", "\xE1\xBA\xA1\xCC\x96");           /* ... but not when first */
    check_nfc("bad\xFF\xC3", "bad\xFF\xC3");                       /* invalid bytes pass */
}

/* Load time and encode speed on the Qwen2 fixture (sanity bounds only). */
static void test_speed(void) {
    cJSON *rows = load_json("tests/fixtures/tok_strings.json");
    T_CHECK(cJSON_IsArray(rows));
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap);
    const cJSON *r;
    for (int rep = 0; rep < 8 && text; rep++)
        cJSON_ArrayForEach(r, rows) {
            size_t k = strlen(r->valuestring);
            if (len + k + 2 > cap) break;
            memcpy(text + len, r->valuestring, k);
            len += k;
            text[len++] = '\n';
        }
    cJSON_Delete(rows);
    eng_tok *t;
    eng_err err;
    double t0 = eng_now_s();
    T_CHECK(eng_tok_load("tests/fixtures/tok-qwen2/tokenizer.json", &t, &err) == ENG_OK);
    double t1 = eng_now_s();
    int *ids = NULL, n = 0;
    T_CHECK(eng_tok_encode(t, text, len, 1, &ids, &n, &err) == ENG_OK);
    double t2 = eng_now_s();
    printf("  load %.1f ms; encode %zu bytes -> %d tokens in %.1f ms (%.1f MB/s)\n",
           (t1 - t0) * 1e3, len, n, (t2 - t1) * 1e3, len / (t2 - t1) / 1e6);
    T_CHECK(t2 - t1 < 5.0);
    char *back = eng_tok_decode(t, ids, n, 0);
    T_CHECK(back != NULL);
    free(back); free(ids); free(text);
    eng_tok_free(t);
}

/* Real model tokenizers under ../shared/models/tokenizers, when present. */
static void test_real_models(void) {
    char pat[512];
    snprintf(pat, sizeof pat, "%s/models/tokenizers/*/tokenizer.json", t_shared());
    glob_t g;
    if (glob(pat, 0, NULL, &g) != 0)
        T_SKIP("no %s (real tokenizers live in ../shared, which is optional)", pat);
    cJSON *rows = load_json("tests/fixtures/tok_strings.json");
    for (size_t i = 0; i < g.gl_pathc; i++) {
        eng_tok *t;
        eng_err err = {0};
        double t0 = eng_now_s();
        int rc = eng_tok_load(g.gl_pathv[i], &t, &err);
        double ms = (eng_now_s() - t0) * 1e3;
        if (rc == ENG_EUNSUPPORTED) { printf("  %s: unsupported: %s\n", g.gl_pathv[i], err.msg); continue; }
        T_CHECKF(rc == ENG_OK, "%s", err.msg);
        if (rc) continue;
        int ok = 0, total = 0;
        const cJSON *r;
        cJSON_ArrayForEach(r, rows) {
            const char *s = r->valuestring;
            char *nfc;
            size_t nn;
            if (eng_uni_nfc(s, strlen(s), &nfc, &nn)) continue;
            int same = !strcmp(nfc, s);
            free(nfc);
            if (!same) continue;      /* the round trip would give the NFC form */
            int *ids, n;
            total++;
            if (eng_tok_encode(t, s, strlen(s), 1, &ids, &n, &err)) continue;
            char *back = eng_tok_decode(t, ids, n, 0);
            ok += back && !strcmp(back, s);
            free(back); free(ids);
        }
        printf("  %s: vocab %d, load %.0f ms, round trip %d/%d\n", g.gl_pathv[i],
               eng_tok_vocab_size(t), ms, ok, total);
        T_CHECK(ok == total);
        T_CHECK(ms < 2000);
        eng_tok_free(t);
    }
    cJSON_Delete(rows);
    globfree(&g);
}

int main(void) {
    T_RUN(test_qwen2);
    T_RUN(test_smol);
    T_RUN(test_llama3);
    T_RUN(test_special);
    T_RUN(test_stream_bytes);
    T_RUN(test_chat);
    T_RUN(test_malformed);
    T_RUN(test_merge_formats);
    T_RUN(test_legacy_merges);
    T_RUN(test_fuzz);
    T_RUN(test_pretok);
    T_RUN(test_nfc);
    T_RUN(test_speed);
    T_RUN(test_real_models);
    T_DONE();
}
