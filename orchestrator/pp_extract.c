/* pp_extract.c — model-assisted ParallelPrompt extraction: the prompt that
 * asks a model for a schema, and the check of its answer.  The caller runs
 * the model; nothing here trusts the answer beyond what orc_pp_check proves. */
#include <stdlib.h>
#include <string.h>
#include "pp_internal.h"

static const char extract_head[] =
    "You decide whether a user's prompt can be answered as independent parallel subtasks "
    "that share the prompt's context.\n"
    "A prompt is parallelisable when it asks for the same thing for each of several items "
    "(questions to answer, fields to extract, sentences to translate, ...) or for N "
    "independent outputs (\"generate 10 names\"). It is not when the parts depend on each "
    "other (compare, sort, summarise, one essay).\n"
    "Answer with one JSON object and nothing else:\n"
    "- not parallelisable: {\"parallel\": false}\n"
    "- items: {\"parallel\": true, \"template\": \"... {context} ... {data} ...\", "
    "\"context\": \"shared text or empty\", \"data\": [\"item 1\", \"item 2\"]}\n"
    "- repeats: {\"parallel\": true, \"template\": \"... {n} ...\", \"context\": \"\", \"n\": 10}\n"
    "Rules: copy every item exactly as it is written in the prompt; the template with {data} "
    "replaced by one item must be a complete prompt for that item alone; put long shared text "
    "(a passage, a document) in \"context\" and reference it as {context}; give at least two "
    "items; write {n} where the count stands, it will be replaced by 1.\n"
    "Example: \"Extract the name and age from: Ann is 9.\" -> {\"parallel\": true, "
    "\"template\": \"Extract the {data} from: {context}\", \"context\": \"Ann is 9.\", "
    "\"data\": [\"name\", \"age\"]}\n\n"
    "The prompt, between the lines:\n-----\n";

char *orc_pp_extract_prompt(const char *prompt) {
    if (!prompt) return NULL;
    eng_buf b = {0};
    eng_buf_adds(&b, extract_head);
    eng_buf_adds(&b, prompt);
    eng_buf_adds(&b, "\n-----\nJSON:");
    return eng_buf_take(&b);
}

/* The first JSON object in text that looks like an answer (models wrap it in
 * prose or ``` fences). */
static cJSON *find_object(const char *text) {
    for (const char *p = strchr(text, '{'); p; p = strchr(p + 1, '{')) {
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithOpts(p, &end, 0);
        if (cJSON_IsObject(j) && (cJSON_GetObjectItemCaseSensitive(j, "parallel") ||
                                  cJSON_GetObjectItemCaseSensitive(j, "template")))
            return j;
        cJSON_Delete(j);
    }
    return NULL;
}

int orc_pp_extract_parse(const char *answer, const char *prompt, orc_pp_schema *out, eng_err *err) {
    if (!answer || !prompt || !out) return eng_seterr(err, ENG_EINVAL, "orc_pp_extract_parse: bad arguments");
    memset(out, 0, sizeof *out);
    cJSON *j = find_object(answer);
    if (!j) return eng_seterr(err, ENG_EFORMAT, "model answer: no JSON object with 'parallel' or 'template'");
    const cJSON *par = cJSON_GetObjectItemCaseSensitive(j, "parallel");
    int rc = ENG_OK;
    if (cJSON_IsFalse(par)) {
        out->kind = ORC_PP_NONE;
    } else if (par && !cJSON_IsTrue(par)) {
        rc = eng_seterr(err, ENG_EFORMAT, "model answer: field 'parallel' must be true or false");
    } else if (!(rc = orc_pp_schema_from_json(j, "model answer", out, err))) {
        out->rule = "model";
        if ((rc = orc_pp_check(out, prompt, err))) orc_pp_schema_free(out);
    }
    cJSON_Delete(j);
    return rc;
}
