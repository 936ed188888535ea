/* test_tok.c — the BPE tokenizer against ids recorded from Hugging Face
 * `tokenizers` (tests/fixtures/tok_ids_*.json, made by scripts/gen_fixtures.py),
 * plus decoding, streaming, special tokens, NFC and bad input (the chat
 * template: test_chat.c); SentencePiece-style BPE (tok-spm-*, made by
 * scripts/gen_tok_spm.py); the real tokenizers (SmolLM2 and Gemma 3 from
 * their GGUF files, Qwen3's tokenizer.json) against Hugging Face on
 * tests/fixtures/tok_real_strings.json (scripts/record_tok_real.py); the
 * GGUF tokenizer loader's checks; and `brisk tokenize` (app/cmd_tokenize.c
 * is linked into this test). */
#include <glob.h>
#include <stdarg.h>
#include <unistd.h>
#include <cJSON.h>
#include "t.h"
#include "t_util.h"
#include "eng.h"
#include "gguf.h"
#include "gguf_write.h"
#include "cmds.h"
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

/* s and want equal once leading spaces are skipped in both. */
static int same_but_lead(const char *s, const char *want) {
    while (*s == ' ') s++;
    while (*want == ' ') want++;
    return !strcmp(s, want);
}

/* Encodes every fixture string of the tokenizer at tpath (eng_tok_open: a
 * tokenizer.json or a GGUF file); ids, decode and streaming decode must match
 * the reference (tests/fixtures/tok_ids_<name>.json) exactly.  With
 * lead_free, the stream may differ in leading spaces: a stream continues a
 * text, so the decoder's Strip and Metaspace first-token rule do not apply. */
static void check_fixture_at(const char *name, const char *tpath, int lead_free) {
    char ipath[256];
    snprintf(ipath, sizeof ipath, "tests/fixtures/tok_ids_%s.json", name);
    eng_tok *t;
    eng_err err = {0};
    int rc = eng_tok_open(tpath, &t, &err);
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
        ok_stream += sdec && (!strcmp(sdec, want_dec) || (lead_free && same_but_lead(sdec, want_dec)));
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

static void check_fixture(const char *name) {
    char tpath[256];
    snprintf(tpath, sizeof tpath, "tests/fixtures/tok-%s/tokenizer.json", name);
    check_fixture_at(name, tpath, 0);
}

static void test_qwen2(void) { check_fixture("qwen2"); }
static void test_smol(void) { check_fixture("smol"); }
static void test_llama3(void) { check_fixture("llama3"); }

/* SentencePiece-style BPE (scripts/gen_tok_spm.py): one small vocabulary
 * with byte_fallback in the forms such models come in, as tokenizer.json
 * (Gemma's Replace normalizer; Metaspace with split and its decoder; Llama's
 * Metaspace first with Strip; Llama 2's older Prepend + Replace) and as GGUF
 * metadata without merges (architecture gemma3: merges ranked by position;
 * llama: by score), against `tokenizers` and transformers' GGUF conversion. */
static void test_spm(void) {
    check_fixture("spm-gemma");
    check_fixture_at("spm-meta", "tests/fixtures/tok-spm-meta/tokenizer.json", 1);
    check_fixture_at("spm-llama", "tests/fixtures/tok-spm-llama/tokenizer.json", 1);
    check_fixture_at("spm-legacy", "tests/fixtures/tok-spm-legacy/tokenizer.json", 1);
    check_fixture_at("spm-gguf-gemma3", "tests/fixtures/tok-spm-gguf/gemma3.gguf", 0);
    check_fixture_at("spm-gguf-llama", "tests/fixtures/tok-spm-gguf/llama.gguf", 1);
}

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
            ok += t_ids_equal(cJSON_GetObjectItem(row, "ids"), ids, n);
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
                       t_ids_equal(want, got, n);
            ok[0] += good;
            if (!good && shown++ < 3) {
                printf("  %s: ids differ for \"%.100s\"\n", name, text);
                print_ids("got", got, n);
            }
            free(got);
            got = NULL;
            good = eng_tok_encode(t, text, strlen(text), 0, &got, &n, &err) == ENG_OK &&
                   t_ids_equal(want_ns, got, n);
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

/* engine/unicode.c against what `tokenizers` does for every code point
 * (tests/fixtures/tok_unicode.json, scripts/record_tok_unicode.py): the
 * regexes' \p{L} \p{N} \s, Digits' digits, single_word's \w, and NFC of each
 * character alone, after "a" and before a class-1 mark, and of every
 * canonical pair. */
enum { N_CP = 0x110000 };

/* Marks the code points of a [[first, last], ...] list in set. */
static int mark_ranges(const cJSON *list, unsigned char *set, unsigned char bit) {
    const cJSON *r;
    int n = 0;
    cJSON_ArrayForEach(r, list) {
        int a = cJSON_GetArrayItem(r, 0)->valueint, b = cJSON_GetArrayItem(r, 1)->valueint;
        for (int c = a; c <= b && c < N_CP; c++) set[c] |= bit;
        n++;
    }
    return n;
}

/* NFC of the code points cps[0..n) equals want (NULL: the text unchanged). */
static int nfc_is(const uint32_t *cps, int n, const char *want) {
    unsigned char in[32];
    size_t k = 0;
    for (int i = 0; i < n; i++) k += (size_t)eng_utf8_put(cps[i], in + k);
    char *out;
    size_t nout;
    if (eng_uni_nfc((const char *)in, k, &out, &nout)) return 0;
    int ok = want ? nout == strlen(want) && !memcmp(out, want, nout) : nout == k && !memcmp(out, in, k);
    free(out);
    return ok;
}

static void test_unicode(void) {
    cJSON *r = load_json("tests/fixtures/tok_unicode.json");
    unsigned char *set = calloc(N_CP, 1);
    const char **one = calloc(N_CP, sizeof *one), **mark = calloc(N_CP, sizeof *mark);
    if (!r || !set || !one || !mark) {
        cJSON_Delete(r); free(set); free(one); free(mark);
        T_FAIL("cannot read tests/fixtures/tok_unicode.json");
    }
    static const char *const keys[] = {"letter", "number", "space", "numeric", "word"};
    for (int k = 0; k < 5; k++) T_CHECK(mark_ranges(cJSON_GetObjectItem(r, keys[k]), set, (unsigned char)(1 << k)) > 0);
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(r, "nfc_one")) one[atoi(it->string)] = it->valuestring;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(r, "nfc_mark")) mark[atoi(it->string)] = it->valuestring;
    int bad[4] = {0}, shown = 0, total = 0;
    for (uint32_t c = 0; c < N_CP; c++) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        total++;
        int want = set[c] & 1 ? ENG_UNI_LETTER : set[c] & 2 ? ENG_UNI_NUMBER : set[c] & 4 ? ENG_UNI_SPACE : ENG_UNI_OTHER;
        int b[4] = { eng_uni_class(c) != want, eng_uni_is_numeric(c) != !!(set[c] & 8),
                     eng_uni_is_word(c) != !!(set[c] & 16), 0 };
        uint32_t m[3] = {'a', c, 0x334};
        b[3] = !nfc_is(&c, 1, one[c]) || !nfc_is(m, 3, mark[c]);
        for (int k = 0; k < 4; k++) {
            bad[k] += b[k];
            if (b[k] && shown++ < 8) printf("  U+%04X: %s differs\n", c, (const char *[]){"class", "numeric", "word", "NFC"}[k]);
        }
    }
    int pairs = 0, bad_pairs = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(r, "nfc_pair")) {
        uint32_t ab[2] = {(uint32_t)cJSON_GetArrayItem(it, 0)->valueint, (uint32_t)cJSON_GetArrayItem(it, 1)->valueint};
        pairs++;
        int ok = nfc_is(ab, 2, cJSON_GetArrayItem(it, 2)->valuestring);
        bad_pairs += !ok;
        if (!ok && shown++ < 8) printf("  pair U+%04X U+%04X differs\n", ab[0], ab[1]);
    }
    printf("  %d code points: class differs %d, numeric %d, word %d, NFC %d; %d canonical pairs: NFC differs %d\n",
           total, bad[0], bad[1], bad[2], bad[3], pairs, bad_pairs);
    T_CHECK(total == N_CP - 2048 && pairs > 900);
    for (int k = 0; k < 4; k++) T_CHECK(bad[k] == 0);
    T_CHECK(bad_pairs == 0);
    cJSON_Delete(r);
    free(set); free(one); free(mark);
}

/* ------------------------------------------------------------ GGUF loader */

/* Loads the tokenizer of the GGUF file w describes (gguf_write.h; the file
 * is removed again, tmp_path keeps its name) and frees w. */
static int gw_load(gw *w, eng_tok **t, eng_err *err) {
    eng_gguf *g;
    *t = NULL;
    int rc = open_gw(w, &g, err);
    gw_free(w);
    if (rc) return rc;
    rc = eng_tok_load_gguf(g, t, err);
    eng_gguf_close(g);
    return rc;
}

/* Writes the GGUF file w describes to path and frees w; 0 on success. */
static int gw_write(gw *w, const char *path) {
    size_t n;
    uint8_t *p = gw_image(w, &n);
    int rc = p ? write_bytes(path, p, n) : -1;
    free(p);
    gw_free(w);
    return rc;
}

/* The tiny vocabulary: a b c ab bc abc Ġ, a control token and a
 * user-defined one. */
static const char *const TINY_TOKENS[] = {"a", "b", "c", "ab", "bc", "abc", "\xc4\xa0", "<|x|>", "<u>"};
static const int32_t TINY_TYPES[] = {1, 1, 1, 1, 1, 1, 1, 3, 4};
static const char *const TINY_MERGES[] = {"b c", "a b"};

/* A tiny GGUF tokenizer with one thing changed: what (0 = nothing). */
static void tiny_gguf(gw *w, int what) {
    gw_init(w);
    gw_str(w, "general.architecture", "llama");
    gw_str(w, "tokenizer.ggml.model", what == 1 ? "bert" : "gpt2");
    gw_str(w, "tokenizer.ggml.pre", what == 2 ? "nonesuch" : "smollm");
    if (what != 3) gw_arr_str(w, "tokenizer.ggml.tokens", TINY_TOKENS, what == 4 ? 8 : 9);
    gw_arr_i32(w, "tokenizer.ggml.token_type", TINY_TYPES, what == 5 ? 3 : 9);
    const char *bad_merges[] = {"b c", "a x"}, *nospace[] = {"bc"};
    if (what == 6) gw_arr_str(w, "tokenizer.ggml.merges", bad_merges, 2);
    else if (what == 7) gw_arr_str(w, "tokenizer.ggml.merges", nospace, 1);
    else if (what == 10) gw_arr_i32(w, "tokenizer.ggml.merges", TINY_TYPES, 2);
    else gw_arr_str(w, "tokenizer.ggml.merges", TINY_MERGES, 2);
    gw_u32(w, "tokenizer.ggml.bos_token_id", what == 8 ? 99 : 7);
    gw_u32(w, "tokenizer.ggml.eos_token_id", 7);
    gw_scalar(w, "tokenizer.ggml.add_bos_token", ENG_GGUF_BOOL, what != 9, 1);
}

static void test_gguf_tiny(void) {
    gw w;
    eng_tok *t;
    eng_err err = {0};
    tiny_gguf(&w, 0);
    T_CHECKF(gw_load(&w, &t, &err) == ENG_OK, "%s", err.msg);
    if (!t) return;
    T_CHECK(eng_tok_vocab_size(t) == 9 && eng_tok_bos(t) == 7);
    int *ids, n;
    const char *s = "abc<|x|>ab <u>";
    /* smollm: ByteLevel regex; "b c" ranks first; the control token only
     * with allow_special, the user-defined one always */
    T_CHECK(eng_tok_encode(t, s, strlen(s), 1, &ids, &n, &err) == ENG_OK);
    int want1[] = {0, 4, 7, 3, 6, 8};
    T_CHECKF(n == 6 && !memcmp(ids, want1, sizeof want1), "n=%d", n);
    char *back = eng_tok_decode(t, ids, n, 1);
    T_CHECKF(back && !strcmp(back, "abcab <u>"), "%s", back);
    free(back);
    free(ids);
    /* as text, <|x|>'s bytes are not in the vocabulary: dropped, as
     * `tokenizers` does without an unknown token */
    T_CHECK(eng_tok_encode(t, s, strlen(s), 0, &ids, &n, &err) == ENG_OK);
    int want0[] = {0, 4, 3, 6, 8};
    T_CHECKF(n == 5 && !memcmp(ids, want0, sizeof want0), "n=%d", n);
    free(ids);
    eng_tok_free(t);
    tiny_gguf(&w, 9);
    T_CHECKF(gw_load(&w, &t, &err) == ENG_OK && eng_tok_bos(t) == -1, "%s", err.msg);
    eng_tok_free(t);
}

/* Broken or unsupported GGUF tokenizers: clear errors naming the file. */
static void test_gguf_malformed(void) {
    static const struct { int what, code; const char *needle; } cases[] = {
        {1, ENG_EUNSUPPORTED, "tokenizer.ggml.model \"bert\""},
        {2, ENG_EUNSUPPORTED, "tokenizer.ggml.pre \"nonesuch\""},
        {3, ENG_EFORMAT, "missing metadata tokenizer.ggml.tokens"},
        {4, ENG_EFORMAT, "token_type has 9 entries for 8 tokens"},
        {5, ENG_EFORMAT, "token_type has 3 entries for 9 tokens"},
        {6, ENG_EFORMAT, "tokenizer.ggml.merges[1]: \"x\" is not in the vocabulary"},
        {7, ENG_EFORMAT, "tokenizer.ggml.merges[0]: expected \"a b\""},
        {8, ENG_EFORMAT, "bos_token_id = 99 is out of range (9 tokens)"},
        {10, ENG_EFORMAT, "tokenizer.ggml.merges is not an array of strings"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw w;
        eng_tok *t;
        eng_err err = {0};
        tiny_gguf(&w, cases[i].what);
        int rc = gw_load(&w, &t, &err);
        T_CHECKF(rc == cases[i].code && t == NULL && strstr(err.msg, cases[i].needle) && strstr(err.msg, tmp_path),
                 "case %d: rc %d, \"%s\"", cases[i].what, rc, err.msg);
    }
    /* a token type out of 0-6, and add_bos_token without a BOS id */
    gw w;
    gw_init(&w);
    eng_tok *t;
    eng_err err = {0};
    int32_t types[] = {1, 1, 1, 1, 1, 1, 1, 3, 9};
    gw_str(&w, "tokenizer.ggml.model", "gpt2");
    gw_arr_str(&w, "tokenizer.ggml.tokens", TINY_TOKENS, 9);
    gw_arr_i32(&w, "tokenizer.ggml.token_type", types, 9);
    gw_arr_str(&w, "tokenizer.ggml.merges", TINY_MERGES, 2);
    T_CHECKF(gw_load(&w, &t, &err) == ENG_EFORMAT && strstr(err.msg, "token_type[8] = 9"), "%s", err.msg);
    gw_init(&w);
    gw_str(&w, "tokenizer.ggml.model", "gpt2");
    gw_arr_str(&w, "tokenizer.ggml.tokens", TINY_TOKENS, 9);
    gw_arr_str(&w, "tokenizer.ggml.merges", TINY_MERGES, 2);
    gw_scalar(&w, "tokenizer.ggml.add_bos_token", ENG_GGUF_BOOL, 1, 1);
    T_CHECKF(gw_load(&w, &t, &err) == ENG_EFORMAT && strstr(err.msg, "bos_token_id is missing"),
             "%s", err.msg);
    T_CHECK(eng_tok_load_gguf(NULL, &t, &err) == ENG_EINVAL);
}

/* A tiny SentencePiece GGUF tokenizer (architecture arch): <unk> <s> </s>,
 * the 256 byte tokens, then "▁" "a" "b" "▁a" "ab" and a user-defined "  ",
 * with one thing changed: what (0 = nothing). */
static void spm_gguf(gw *w, const char *arch, int what) {
    static char bytes[256][8];
    const char *toks[265];
    int32_t types[265];
    float scores[265];
    int n = 0;
    toks[n] = "<unk>", types[n++] = 2;
    toks[n] = "<s>", types[n++] = 3;
    toks[n] = "</s>", types[n++] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[n] = bytes[b], types[n++] = 6;
    }
    const char *rest[] = {"\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "a", "ab", "  "};
    for (int i = 0; i < 6; i++) toks[n] = rest[i], types[n++] = i == 5 ? 4 : 1;
    for (int i = 0; i < n; i++) scores[i] = -(float)i;
    if (what == 1) toks[3 + 0x41] = "A", types[3 + 0x41] = 1;     /* <0x41> missing */
    if (what == 2) toks[3 + 0x41] = "A";                           /* typed byte, spelled otherwise */
    gw_init(w);
    gw_str(w, "general.architecture", arch);
    gw_str(w, "tokenizer.ggml.model", "llama");
    gw_arr_str(w, "tokenizer.ggml.tokens", toks, n);
    gw_arr_i32(w, "tokenizer.ggml.token_type", types, n);
    if (what == 3) gw_arr_f32(w, "tokenizer.ggml.scores", scores, 3);
    else if (what == 4) gw_arr_str(w, "tokenizer.ggml.scores", toks, n);
    else if (what != 5) gw_arr_f32(w, "tokenizer.ggml.scores", scores, n);
    gw_u32(w, "tokenizer.ggml.bos_token_id", 1);
}

/* SentencePiece GGUF metadata: what loads, and clear errors naming the file
 * for what is broken. */
static void test_gguf_spm(void) {
    gw w;
    eng_tok *t;
    eng_err err = {0};
    int *ids, n;
    /* Gemma: " " -> "▁", merges by position ("▁a" before "ab"), the
     * respelled "  " is "▁▁" and not an added token, "é" falls back to its
     * bytes; BOS added by default */
    spm_gguf(&w, "gemma3", 0);
    T_CHECKF(gw_load(&w, &t, &err) == ENG_OK, "%s", err.msg);
    if (!t) return;
    T_CHECK(eng_tok_bos(t) == 1 && eng_tok_find(t, "\xe2\x96\x81\xe2\x96\x81") == 264);
    const char *s = "ab a\xc3\xa9";
    T_CHECK(eng_tok_encode(t, s, strlen(s), 1, &ids, &n, &err) == ENG_OK);
    int want[] = {263, 262, 3 + 0xC3, 3 + 0xA9};
    T_CHECKF(n == 4 && !memcmp(ids, want, sizeof want), "n=%d", n);
    char *back = eng_tok_decode(t, ids, n, 0);
    T_CHECKF(back && !strcmp(back, s), "%s", back);
    free(back);
    free(ids);
    /* a byte token alone is no character: one U+FFFD per byte, as ByteFallback gives */
    int lone[] = {3 + 0xC3, 260, 3 + 0xE6, 3 + 0x97};
    back = eng_tok_decode(t, lone, 4, 0);
    T_CHECKF(back && !strcmp(back, "\xef\xbf\xbd" "a" "\xef\xbf\xbd\xef\xbf\xbd"), "%s", back);
    free(back);
    eng_tok_free(t);
    static const struct { int what; const char *arch, *needle; } bad[] = {
        {1, "gemma3", "byte tokens for only 255 of the 256 bytes (<0x41> is missing)"},
        {2, "gemma3", "tokenizer.ggml.tokens[68] \"A\" has token type 6 (byte) but is not spelled <0xHH>"},
        {3, "gemma3", "tokenizer.ggml.scores has 3 entries for 265 tokens"},
        {4, "llama", "tokenizer.ggml.scores is not an array of numbers"},
        {5, "llama", "missing metadata tokenizer.ggml.scores"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        spm_gguf(&w, bad[i].arch, bad[i].what);
        int rc = gw_load(&w, &t, &err);
        T_CHECKF(rc == ENG_EFORMAT && t == NULL && strstr(err.msg, bad[i].needle) && strstr(err.msg, tmp_path),
                 "case %d: rc %d, \"%s\"", bad[i].what, rc, err.msg);
    }
    /* Gemma ranks merges by position and needs no scores */
    spm_gguf(&w, "gemma3", 5);
    T_CHECKF(gw_load(&w, &t, &err) == ENG_OK, "%s", err.msg);
    eng_tok_free(t);
}

/* A fixture tokenizer.json (vocabulary, merges, added tokens) written as GGUF
 * metadata naming pre-tokenizer pre: must give the `tokenizers` ids recorded
 * for the fixture (tok_ids_<fixture>.json), i.e. pre stands for the same
 * steps and normalizer as the fixture's tokenizer.json. */
static void check_gguf_as_json(const char *fixture, const char *pre) {
    char jpath[256], ipath[256];
    snprintf(jpath, sizeof jpath, "tests/fixtures/tok-%s/tokenizer.json", fixture);
    snprintf(ipath, sizeof ipath, "tests/fixtures/tok_ids_%s.json", fixture);
    cJSON *j = load_json(jpath), *rows = load_json(ipath);
    const cJSON *vocab = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "vocab"), *it;
    const cJSON *merges = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "merges");
    int n = 0;
    cJSON_ArrayForEach(it, vocab) if (it->valueint >= n) n = it->valueint + 1;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "added_tokens"))
        if (cJSON_GetObjectItem(it, "id")->valueint >= n) n = cJSON_GetObjectItem(it, "id")->valueint + 1;
    const char **toks = calloc((size_t)n, sizeof *toks);
    int32_t *types = calloc((size_t)n, sizeof *types);
    int nm = cJSON_GetArraySize(merges), k = 0;
    char **ms = calloc((size_t)nm + 1, sizeof *ms);
    cJSON_ArrayForEach(it, vocab) { toks[it->valueint] = it->string; types[it->valueint] = 1; }
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "added_tokens")) {
        int id = cJSON_GetObjectItem(it, "id")->valueint;
        toks[id] = cJSON_GetObjectItem(it, "content")->valuestring;
        types[id] = cJSON_IsTrue(cJSON_GetObjectItem(it, "special")) ? 3 : 4;
    }
    int dense = 1;
    for (int i = 0; i < n; i++) dense &= toks[i] != NULL;
    T_CHECKF(dense, "%s: ids are not dense", jpath);
    cJSON_ArrayForEach(it, merges) {
        ms[k] = malloc(strlen(it->child->valuestring) + strlen(it->child->next->valuestring) + 2);
        sprintf(ms[k++], "%s %s", it->child->valuestring, it->child->next->valuestring);
    }
    gw w;
    gw_init(&w);
    gw_str(&w, "tokenizer.ggml.model", "gpt2");
    gw_str(&w, "tokenizer.ggml.pre", pre);
    if (dense) gw_arr_str(&w, "tokenizer.ggml.tokens", toks, n);
    gw_arr_i32(&w, "tokenizer.ggml.token_type", types, n);
    gw_arr_str(&w, "tokenizer.ggml.merges", (const char *const *)ms, nm);
    eng_tok *t;
    eng_err err = {0};
    T_CHECKF(gw_load(&w, &t, &err) == ENG_OK, "%s", err.msg);
    int ok = 0, total = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) {
        const char *text = cJSON_GetObjectItem(row, "text")->valuestring;
        int *ids = NULL, ng = 0;
        total++;
        if (t && eng_tok_encode(t, text, strlen(text), 1, &ids, &ng, &err) == ENG_OK)
            ok += t_ids_equal(cJSON_GetObjectItem(row, "ids"), ids, ng);
        free(ids);
    }
    printf("  GGUF pre \"%s\" on the %s fixture's vocabulary: ids %d/%d\n", pre, fixture, ok, total);
    T_CHECK(ok == total && total == 249);
    eng_tok_free(t);
    for (int i = 0; i < nm; i++) free(ms[i]);
    free(ms); free(toks); free(types);
    cJSON_Delete(j);
    cJSON_Delete(rows);
}

static void test_gguf_pre(void) {
    check_gguf_as_json("smol", "smollm");
    check_gguf_as_json("qwen2", "qwen2");
    check_gguf_as_json("qwen2", "deepseek-r1-qwen");
    check_gguf_as_json("llama3", "llama3");
    check_gguf_as_json("llama3", "llama-bpe");
    check_gguf_as_json("llama3", "llama-v3");
}

/* BOS from the tokenizer.json post-processor (what Hugging Face adds with
 * add_special_tokens=True). */
static void test_bos(void) {
    static const struct { const char *post; int bos, code; } cases[] = {
        {"null", -1, ENG_OK},
        {"{\"type\": \"ByteLevel\"}", -1, ENG_OK},
        {"{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, "
         "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", "
         "\"ids\": [7], \"tokens\": [\"<s>\"]}}}", 7, ENG_OK},
        {"{\"type\": \"Sequence\", \"processors\": [{\"type\": \"ByteLevel\"}, {\"type\": \"TemplateProcessing\", "
         "\"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", "
         "\"type_id\": 0}}], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [7], \"tokens\": "
         "[\"<s>\"]}}}]}", 7, ENG_OK},
        {"{\"type\": \"TemplateProcessing\", \"single\": [{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
         "{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", "
         "\"ids\": [7], \"tokens\": [\"<s>\"]}}}", -1, ENG_OK},
        {"{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, "
         "{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "
         "\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [7], \"tokens\": [\"<s>\"]}}}", -1,
         ENG_EUNSUPPORTED},
        {"{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<t>\", \"type_id\": 0}}, "
         "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"special_tokens\": {}}", -1, ENG_EFORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[2048];
        snprintf(json, sizeof json, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\":0,\"b\":1,\"c\":2,"
                 "\"ab\":3,\"bc\":4,\"abc\":5,\"\\u0120\":6}, \"merges\": []}, \"added_tokens\": [{\"id\": 7, "
                 "\"content\": \"<s>\", \"special\": true}], \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, "
                 "\"post_processor\": %s}", cases[i].post);
        cJSON *j = cJSON_Parse(json);
        eng_err err = {0};
        eng_tok *t = load_cjson(j, &err);
        int rc = t ? ENG_OK : err.code;
        T_CHECKF(j && rc == cases[i].code && eng_tok_bos(t) == cases[i].bos, "case %zu: rc %d bos %d %s", i, rc,
                 eng_tok_bos(t), err.msg);
        eng_tok_free(t);
        cJSON_Delete(j);
    }
}

/* Runs `brisk tokenize` with args (NULL-terminated); its output and errors
 * into out / err_out (malloc'd); returns its exit status. */
static int run_tokenize(char **out, char **err_out, ...) {
    char *argv[16] = {"tokenize"};
    int argc = 1;
    va_list ap;
    va_start(ap, err_out);
    for (char *a; argc < 15 && (a = va_arg(ap, char *));) argv[argc++] = a;
    va_end(ap);
    FILE *o = tmpfile(), *e = tmpfile();
    if (!o || !e) { if (o) fclose(o); if (e) fclose(e); return -1; }
    int rc = cmd_tokenize_to(o, e, argc, argv);
    FILE *fs[2] = {o, e};
    char **dst[2] = {out, err_out};
    for (int k = 0; k < 2; k++) {
        long n = ftell(fs[k]);
        rewind(fs[k]);
        *dst[k] = calloc((size_t)(n > 0 ? n : 0) + 1, 1);
        if (*dst[k] && n > 0 && fread(*dst[k], 1, (size_t)n, fs[k]) != (size_t)n) (*dst[k])[0] = 0;
        fclose(fs[k]);
    }
    return rc;
}

/* The ids of text under a tokenizer, as `--ids` prints them. */
static void ids_line(const char *model, const char *text, int special, char *buf, size_t cap) {
    eng_tok *t;
    eng_err err = {0};
    int *ids = NULL, n = 0;
    buf[0] = 0;
    if (eng_tok_open(model, &t, &err) || eng_tok_encode(t, text, strlen(text), special, &ids, &n, &err)) return;
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, i ? ", %d" : "%d", ids[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]\n");
    free(ids);
    eng_tok_free(t);
}

static void test_tokenize_cmd(void) {
    const char *json = "tests/fixtures/tok-qwen2/tokenizer.json", *dir = "tests/fixtures/tok-qwen2";
    int end = json_added_id(json, "<|im_end|>");
    char *o, *e, want[512];
    /* --special: the marker is its token; one line per token otherwise */
    T_CHECK(run_tokenize(&o, &e, "--model", json, "--text", "<|im_end|>", "--special", "--ids", NULL) == 0);
    snprintf(want, sizeof want, "[%d]\n", end);
    T_CHECKF(!strcmp(o, want), "%s", o);
    free(o); free(e);
    T_CHECK(run_tokenize(&o, &e, "--special", "--model", dir, "--text", "<|im_end|>", NULL) == 0);
    snprintf(want, sizeof want, "%6d -> '<|im_end|>'\n", end);
    T_CHECKF(!strcmp(o, want), "%s", o);
    free(o); free(e);
    /* without --special the marker is text; a folder finds its tokenizer.json */
    const char *text = "Hello  world 12345 <|im_end|>";
    ids_line(json, text, 0, want, 256);
    T_CHECK(run_tokenize(&o, &e, "--model", dir, "--text", text, "--ids", NULL) == 0);
    snprintf(want + 256, 32, " %d]", end);
    T_CHECKF(want[0] == '[' && !strcmp(o, want) && !strstr(o, want + 256), "%s", o);
    free(o); free(e);
    T_CHECK(run_tokenize(&o, &e, "--model", dir, "--text", "", "--ids", NULL) == 0 && !strcmp(o, "[]\n"));
    free(o); free(e);
    /* a .gguf file, and a folder holding one */
    gw w;
    char gdir[] = "/tmp/test_tok_XXXXXX", gpath[64];
    T_CHECK(mkdtemp(gdir) != NULL);
    snprintf(gpath, sizeof gpath, "%s/tiny.gguf", gdir);
    tiny_gguf(&w, 0);
    T_CHECK(gw_write(&w, gpath) == 0);
    T_CHECK(run_tokenize(&o, &e, "--model", gpath, "--text", "abc<|x|>", "--special", "--ids", NULL) == 0);
    T_CHECKF(!strcmp(o, "[0, 4, 7]\n"), "%s %s", o, e);
    free(o); free(e);
    T_CHECK(run_tokenize(&o, &e, "--model", gdir, "--text", "abc", NULL) == 0);
    T_CHECKF(!strcmp(o, "     0 -> 'a'\n     4 -> 'bc'\n"), "%s %s", o, e);
    free(o); free(e);
    remove(gpath);
    /* bad arguments and paths */
    static const struct { const char *a[6]; int rc; const char *needle; } bad[] = {
        {{"--text", "x"}, 2, "--model is required"},
        {{"--model", "x"}, 2, "--text is required"},
        {{"--model", "x", "--text"}, 2, "--text needs a value"},
        {{"--model", "x", "--text", "y", "--bogus"}, 2, "unknown option --bogus"},
        {{"--model", "/nonexistent/tok", "--text", "y"}, 1, "/nonexistent/tok"},
        {{"--model", "tests/fixtures", "--text", "y"}, 1, "no tokenizer.json, and no .gguf file"},
        {{"--model", "tests/fixtures/tok_strings.json", "--text", "y"}, 1, "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *const *a = bad[i].a;
        int rc = run_tokenize(&o, &e, a[0], a[1], a[2], a[3], a[4], a[5], NULL);
        T_CHECKF(rc == bad[i].rc && !o[0] && strstr(e, bad[i].needle), "case %zu: rc %d, \"%s\"", i, rc, e);
        free(o); free(e);
    }
    rmdir(gdir);
}

/* ------------------------------------------------------------ real tokenizers */

static const char *REAL_STRINGS = "tests/fixtures/tok_real_strings.json";
static const char *SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf";
static const char *GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf";

/* The ints of a JSON array, malloc'd (one spare slot). */
static int *json_ints(const cJSON *a, int *n) {
    int *v = malloc(sizeof(int) * (size_t)(cJSON_GetArraySize(a) + 1)), k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a) if (v) v[k++] = it->valueint;
    *n = k;
    return v;
}

/* Encodes s and compares with want; prints the first few differences. */
static int check_ids(const char *name, const eng_tok *t, const char *s, int allow_special,
                     const cJSON *want, int *shown) {
    eng_err err = {0};
    int *got = NULL, n = 0, nw, *w = json_ints(want, &nw);
    int good = eng_tok_encode(t, s, strlen(s), allow_special, &got, &n, &err) == ENG_OK && t_ids_equal(want, got, n);
    if (!good && (*shown)++ < 6) {
        printf("  %s: ids (allow_special %d) differ for \"%.100s\"\n", name, allow_special, s);
        print_ids("want", w, nw);
        print_ids("got ", got, n);
    }
    free(w);
    free(got);
    return good;
}

/* Every string: ids with special tokens recognised and with special tokens
 * as text, and decode(encode(s)), all equal to the reference's. */
static void check_agreement(const char *name, const eng_tok *t, const char *ids_path) {
    cJSON *strs = load_json(REAL_STRINGS), *ref = load_json(ids_path);
    if (!cJSON_IsArray(strs) || !cJSON_IsObject(ref)) {
        cJSON_Delete(strs); cJSON_Delete(ref);
        T_FAIL("cannot read %s or %s", REAL_STRINGS, ids_path);
    }
    const cJSON *ids = cJSON_GetObjectItem(ref, "ids"), *nosp = cJSON_GetObjectItem(ref, "ids_nospecial");
    const cJSON *dec = cJSON_GetObjectItem(ref, "decoded");
    int n = cJSON_GetArraySize(strs), ok[3] = {0}, shown = 0;
    T_CHECKF(cJSON_GetArraySize(ids) == n && cJSON_GetArraySize(nosp) == n && cJSON_GetArraySize(dec) == n,
             "%s does not match %s (%d strings)", ids_path, REAL_STRINGS, n);
    for (int i = 0; i < n && i < cJSON_GetArraySize(ids); i++) {
        const char *s = cJSON_GetArrayItem(strs, i)->valuestring;
        const cJSON *want = cJSON_GetArrayItem(ids, i), *want_ns = cJSON_GetArrayItem(nosp, i);
        const cJSON *d = cJSON_GetArrayItem(dec, i);
        const char *want_dec = cJSON_IsString(d) ? d->valuestring : s;
        ok[0] += check_ids(name, t, s, 1, want, &shown);
        ok[1] += check_ids(name, t, s, 0, cJSON_IsNull(want_ns) ? want : want_ns, &shown);
        eng_err err = {0};
        int *got = NULL, ng = 0;
        char *back = eng_tok_encode(t, s, strlen(s), 1, &got, &ng, &err) ? NULL : eng_tok_decode(t, got, ng, 0);
        int good = back && !strcmp(back, want_dec);
        ok[2] += good;
        if (!good && shown++ < 6) printf("  %s: decode(encode(s)) differs for \"%.100s\"\n", name, s);
        free(back);
        free(got);
    }
    printf("  %s: %d strings; ids identical %d (%.2f%%), with special tokens as text %d (%.2f%%), "
           "decode(encode(s)) as Hugging Face %d (%.2f%%)\n", name, n, ok[0], 100.0 * ok[0] / n,
           ok[1], 100.0 * ok[1] / n, ok[2], 100.0 * ok[2] / n);
    T_CHECK(n >= 2000);
    for (int k = 0; k < 3; k++) T_CHECK(ok[k] == n);
    cJSON_Delete(strs);
    cJSON_Delete(ref);
}

/* The tokenizer of the GGUF file at path, printing how long opening the file
 * and loading the tokenizer took. */
static int load_gguf_timed(const char *name, const char *path, eng_tok **t, eng_err *err) {
    eng_gguf *g;
    *t = NULL;
    double t0 = eng_now_s();
    int rc = eng_gguf_open(path, &g, err);
    if (rc) return rc;
    double t1 = eng_now_s();
    rc = eng_tok_load_gguf(g, t, err);
    double t2 = eng_now_s();
    eng_gguf_close(g);
    if (!rc)
        printf("  %s: GGUF opened in %.1f ms, tokenizer loaded in %.1f ms, %d ids\n", name, (t1 - t0) * 1e3,
               (t2 - t1) * 1e3, eng_tok_vocab_size(*t));
    return rc;
}

/* eng_tok_encode_prompt(text) against the ids transformers' tokenizer(text)
 * gives for the same file (recorded by hand with transformers 5.25). */
static void check_prompt(const eng_tok *t, const char *text, const int *want, int n_want) {
    int *ids = NULL, n = 0;
    eng_err err = {0};
    int rc = eng_tok_encode_prompt(t, text, strlen(text), &ids, &n, &err);
    int same = !rc && n == n_want;
    for (int i = 0; same && i < n; i++) same = ids[i] == want[i];
    T_CHECKF(same, "prompt \"%s\": %d ids (first %d), transformers %d (first %d) %s", text, n,
             n ? ids[0] : -1, n_want, want[0], err.msg);
    free(ids);
}

/* SmolLM2's tokenizer from its GGUF file.  The record also says on how many
 * strings transformers' own GGUF conversion, which drops SmolLM2's digit
 * split, differs from the reference (scripts/record_tok_real.py). */
static void test_smollm2(void) {
    T_MODEL(path, SMOL_GGUF);
    eng_tok *t;
    eng_err err = {0};
    if (load_gguf_timed("smollm2", path, &t, &err)) T_FAIL("%s", err.msg);
    T_CHECK(eng_tok_vocab_size(t) == 49152);
    T_CHECK(eng_tok_bos(t) == -1);                   /* add_bos_token is false in this file */
    T_CHECK(eng_tok_find(t, "<|im_start|>") == 1 && eng_tok_find(t, "<|im_end|>") == 2);
    check_agreement("smollm2", t, "tests/fixtures/tok_real_ids_smollm2.json");
    /* a raw prompt as transformers' tokenizer(text) gives it: no BOS here */
    static const int want_prompt[] = {504, 3575, 282, 4649, 314};
    check_prompt(t, "The capital of France is", want_prompt, 5);
    cJSON *ref = load_json("tests/fixtures/tok_real_ids_smollm2.json");
    int differ = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(ref, "ids_transformers")) differ += !cJSON_IsNull(v);
    printf("  smollm2: transformers' own GGUF conversion (no digit split) differs from the reference "
           "on %d strings\n", differ);
    cJSON_Delete(ref);
    eng_tok_free(t);
}

static void test_qwen3(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/tokenizers/qwen3/tokenizer.json", t_shared());
    if (access(path, R_OK)) T_SKIP("%s absent (../shared not here)", path);
    eng_tok *t;
    eng_err err = {0};
    double t0 = eng_now_s();
    int rc = eng_tok_load(path, &t, &err);
    double ms = (eng_now_s() - t0) * 1e3;
    if (rc) T_FAIL("%s", err.msg);
    printf("  qwen3: tokenizer.json loaded in %.0f ms, %d ids\n", ms, eng_tok_vocab_size(t));
    T_CHECK(eng_tok_vocab_size(t) == 151669);
    T_CHECK(eng_tok_bos(t) == -1);
    check_agreement("qwen3", t, "tests/fixtures/tok_real_ids_qwen3.json");
    eng_tok_free(t);
}

/* Gemma 3's SentencePiece BPE from its GGUF file (262,144 tokens, merges
 * rebuilt from the vocabulary), against transformers' conversion of the same
 * file (scripts/record_tok_real.py). */
static void test_gemma3(void) {
    T_MODEL(path, GEMMA3_GGUF);
    eng_tok *t;
    eng_err err = {0};
    if (load_gguf_timed("gemma3", path, &t, &err)) T_FAIL("%s", err.msg);
    T_CHECK(eng_tok_vocab_size(t) == 262144);
    T_CHECK(eng_tok_bos(t) == 2);                    /* <bos>; add_bos_token is true */
    T_CHECK(eng_tok_find(t, "<start_of_turn>") == 105 && eng_tok_find(t, "<end_of_turn>") == 106);
    check_agreement("gemma3", t, "tests/fixtures/tok_real_ids_gemma3.json");
    /* a raw prompt as transformers' tokenizer(text) gives it: <bos> first */
    static const int want_prompt[] = {2, 818, 5279, 529, 7001, 563};
    check_prompt(t, "The capital of France is", want_prompt, 6);
    /* encoding speed on the MATH-500 problems (a measurement; ../shared is optional) */
    char mpath[512];
    snprintf(mpath, sizeof mpath, "%s/data/math500/test.jsonl", t_shared());
    char *all = slurp(mpath, NULL);
    int probs = 0;
    long toks = 0;
    double spent = 0;
    for (char *line = all, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        if ((nl = strchr(line, '\n'))) *nl = 0;
        cJSON *row = cJSON_Parse(line);
        const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(row, "problem"));
        int *ids = NULL, n = 0;
        double a = eng_now_s();
        if (p && eng_tok_encode(t, p, strlen(p), 0, &ids, &n, &err) == ENG_OK) probs++, toks += n;
        spent += eng_now_s() - a;
        free(ids);
        cJSON_Delete(row);
    }
    free(all);
    if (probs) printf("  gemma3: %d MATH-500 problems encoded, %.1f us per problem (%ld tokens)\n", probs,
                      spent * 1e6 / probs, toks);
    else printf("  gemma3: %s absent, encoding speed not measured\n", mpath);
    eng_tok_free(t);
}

int main(void) {
    T_RUN(test_qwen2);
    T_RUN(test_smol);
    T_RUN(test_llama3);
    T_RUN(test_spm);
    T_RUN(test_special);
    T_RUN(test_stream_bytes);
    T_RUN(test_malformed);
    T_RUN(test_merge_formats);
    T_RUN(test_legacy_merges);
    T_RUN(test_fuzz);
    T_RUN(test_pretok);
    T_RUN(test_nfc);
    T_RUN(test_unicode);
    T_RUN(test_speed);
    T_RUN(test_real_models);
    T_RUN(test_gguf_tiny);
    T_RUN(test_gguf_malformed);
    T_RUN(test_gguf_spm);
    T_RUN(test_gguf_pre);
    T_RUN(test_bos);
    T_RUN(test_tokenize_cmd);
    T_RUN(test_smollm2);
    T_RUN(test_qwen3);
    T_RUN(test_gemma3);
    T_DONE();
}
