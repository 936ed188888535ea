/* orc_pp.h — ParallelPrompt: a prompt that says "do X for each of these items"
 * is answered as parallel subtasks that share the prompt's context in the KV
 * cache, then the answers are put back together in item order.
 *
 * A schema describes the split (the ParallelPrompt dataset's format):
 *   template  text with placeholders {context}, {data} or {n}
 *   context   shared text put where {context} stands ("" when none)
 *   data      the items, one subtask each, put where {data} stands   or
 *   n         a repeat count: n subtasks, each with {n} replaced by "1".
 * Only the exact placeholders are replaced; other braces stay as they are.
 *
 * Pieces: parsing/validation of annotated rows (orc_pp_schema_from_json),
 * template filling (orc_pp_fill), rule-based detection from a raw prompt
 * (orc_pp_detect), a validator for any proposed schema (orc_pp_check), a
 * prompt + answer check for model-assisted extraction, in-order aggregation
 * (orc_pp_agg_*), agreement between two schemas (orc_pp_compare) and execution
 * on the engine (orc_pp_run, orc_pp_run_serial). */
#ifndef ORC_PP_H
#define ORC_PP_H
#include <stdint.h>
#include <cjson/cJSON.h>
#include "eng.h"

/* Most subtasks one schema may ask for (data items or n). */
#define ORC_PP_MAX_ITEMS 64

enum { ORC_PP_NONE = 0, ORC_PP_DATA = 1, ORC_PP_N = 2 };

typedef struct orc_pp_schema {
    int kind;         /* ORC_PP_DATA, ORC_PP_N, or ORC_PP_NONE: not parallelisable */
    char *tmpl;       /* template */
    char *context;    /* never NULL once parsed/detected; "" when absent */
    char **data;      /* kind DATA: n_data items */
    int n_data;
    int n;            /* kind N */
    const char *rule; /* detection: which rule fired (static string), else NULL */
} orc_pp_schema;

void orc_pp_schema_free(orc_pp_schema *s);         /* frees members, zeroes s */
/* Number of subtasks: n_data or n (0 for NONE). */
int  orc_pp_count(const orc_pp_schema *s);

/* Structural rules: template has the item placeholder of its kind and not the
 * other one; 1 <= items <= ORC_PP_MAX_ITEMS; items non-empty; a non-empty
 * context is referenced by {context} or already written out in the template. */
int  orc_pp_validate(const orc_pp_schema *s, eng_err *err);

/* One annotated row (a JSON object with template, context, data or n).  where
 * names the row in messages, e.g. "row 12".  Malformed rows give ENG_EFORMAT
 * with a message naming the row and the field. */
int  orc_pp_schema_from_json(const cJSON *row, const char *where, orc_pp_schema *out,
                             eng_err *err);
/* Same from JSON text. */
int  orc_pp_schema_parse(const char *json, const char *where, orc_pp_schema *out,
                         eng_err *err);

/* A dataset file: a JSON array of rows that also carry "original" (and
 * optionally "serial").  Rows whose schema is malformed are kept with
 * valid = 0 and the message in error. */
typedef struct orc_pp_row {
    char *original, *serial;   /* serial may be NULL */
    orc_pp_schema schema;      /* zeroed when !valid */
    int valid;
    char error[512];
} orc_pp_row;
int  orc_pp_load(const char *path, orc_pp_row **rows, int *n_rows, eng_err *err);
void orc_pp_rows_free(orc_pp_row *rows, int n_rows);

/* Context first: when the template puts {data} before {context} ("Extract
 * {data} from the text: {context}"), subtasks share only the words before the
 * item.  This copy moves the context to the front ("{context}\n\n" + the
 * template with {context} replaced by "the text above") so the whole context
 * is prefilled once.  Other schemas are copied unchanged. */
int  orc_pp_hoist_context(const orc_pp_schema *in, orc_pp_schema *out, eng_err *err);

/* Subtask prompts, one per item (n copies for kind N).  *out is an array of
 * *n_out malloc'd strings; free with orc_pp_strv_free. */
int  orc_pp_fill(const orc_pp_schema *s, char ***out, int *n_out, eng_err *err);
void orc_pp_strv_free(char **v, int n);

/* ----------------------------------------------------------- detection */
/* Rule-based detection.  Returns ENG_OK and either a schema (kind DATA/N, rule
 * set) that passes orc_pp_check, or kind NONE: not parallelisable.  Errors
 * only for bad arguments or memory. */
int  orc_pp_detect(const char *prompt, orc_pp_schema *out, eng_err *err);

/* Validator for a proposed schema (from the rules or from a model): passes
 * orc_pp_validate, has >= 2 subtasks, and every item appears in the prompt
 * (compared after orc_pp_norm). */
int  orc_pp_check(const orc_pp_schema *s, const char *prompt, eng_err *err);

/* Model-assisted extraction: the prompt to give a model (malloc'd), and the
 * check of its answer (a JSON object, possibly inside ``` fences or text),
 * which must pass orc_pp_check.  An answer {"parallel": false} gives kind NONE. */
char *orc_pp_extract_prompt(const char *prompt);
int  orc_pp_extract_parse(const char *answer, const char *prompt, orc_pp_schema *out,
                          eng_err *err);

/* -------------------------------------------------------- agreement */
/* Normal form used to compare items: literal \n \t escapes decoded, ASCII
 * case folded, typographic quotes made plain, runs of white space made one
 * space, then surrounding white space, quotes and trailing . , ; : trimmed.
 * Returns malloc'd text (NULL on no memory). */
char *orc_pp_norm(const char *s);
/* Two items "loosely" match when the F1 of their word multisets is >= 0.5.
 * Words: runs of letters/digits of the normal form, inner apostrophes
 * dropped, a final s then e cut from words of 4+ letters; the LMSYS
 * anonymisation placeholders NAME_<k> are no words.  Tolerates the
 * dataset's edits (NAME_1 -> a name, "all addresses" for "address", a
 * rephrased question). */
int  orc_pp_item_loose(const char *a, const char *b);

typedef struct orc_pp_agreement {
    int kind;      /* same kind (both NONE counts) */
    int count;     /* and same number of subtasks */
    int exact;     /* and every item pair equal after orc_pp_norm (N: same n) */
    int loose;     /* and every item pair loosely matches (N: same n) */
} orc_pp_agreement;
void orc_pp_compare(const orc_pp_schema *want, const orc_pp_schema *got, orc_pp_agreement *a);

/* -------------------------------------------------------- aggregation */
/* Subtask answers arrive in any order; sections are released in item order
 * as soon as every earlier item is in.  Section text:
 *   "<i>. <label>\n<answer>\n\n"  (i from 1; label omitted when NULL/"").  */
typedef struct orc_pp_agg orc_pp_agg;
typedef void (*orc_pp_section_fn)(void *user, int item, const char *section);

/* labels may be NULL; each label is copied (first line, at most 80 bytes). */
int  orc_pp_agg_create(int n_items, const char *const *labels, orc_pp_section_fn on_section,
                       void *user, orc_pp_agg **out, eng_err *err);
void orc_pp_agg_destroy(orc_pp_agg *a);
/* Hands in item's answer; EINVAL for a bad index or an item given twice. */
int  orc_pp_agg_put(orc_pp_agg *a, int item, const char *answer, eng_err *err);
int  orc_pp_agg_done(const orc_pp_agg *a);        /* all items in */
int  orc_pp_agg_released(const orc_pp_agg *a);    /* sections released so far */
const char *orc_pp_agg_text(const orc_pp_agg *a); /* released sections, in order */

/* ---------------------------------------------------------- execution */
typedef struct orc_pp_callbacks {
    void *user;
    /* Text of each new token of a subtask, as it is generated (any order). */
    void (*on_token)(void *user, int item, const char *text, int len);
    /* A subtask finished (EOS or max_tokens), in completion order. */
    void (*on_item)(void *user, int item, const char *answer);
    /* Aggregated section released, in item order (parallel runs only). */
    void (*on_section)(void *user, int item, const char *section);
} orc_pp_callbacks;

typedef struct orc_pp_result {
    char *answer;          /* aggregated (parallel) or the single output (serial) */
    char **outputs;        /* per subtask */
    int n_outputs;
    int *n_gen;            /* tokens generated per subtask (EOS not counted) */
    int total_gen;
    int prompt_tokens;     /* sum over subtasks of their prompt lengths */
    int shared_tokens;     /* tokens of the common prefix prefilled once */
    int steps;             /* engine steps */
    int n_nonempty;        /* subtasks with a non-blank answer text */
    int n_answered;        /* subtasks with >= 1 generated token before their stop */
    int n_eos_first;       /* subtasks whose first token was an end of sequence */
    double ms_total;       /* wall clock: start to last subtask done */
    double ms_encode;      /* part of it spent tokenising */
    double ms_prefill;     /* tokenising + prefilling the shared prefix */
    double ms_first;       /* until every subtask has its first token (all prompts prefilled) */
} orc_pp_result;
void orc_pp_result_free(orc_pp_result *r);

/* Structural adherence of a parallel answer: every item's section is there,
 * in item order, and not empty.  "Not empty" is judged on tokens (>= 1
 * generated before the stop), not on text, so that it means the same for a
 * model whose tokens have no printable text (random weights with a small
 * test tokenizer); the non-blank text count is kept beside it. */
typedef struct orc_pp_adherence {
    int items;      /* subtasks */
    int answered;   /* with >= 1 generated token */
    int in_order;   /* leading sections found in the answer in item order */
    int nonblank;   /* with visible answer text */
    int ok;         /* every item answered and every section in order */
} orc_pp_adherence;
/* labels: the ones given to the run (NULL for none).  Bad input (NULL,
 * outputs missing) gives ok = 0. */
void orc_pp_adherence_of(const orc_pp_result *r, const char *const *labels, orc_pp_adherence *a);
/* How many sections of an aggregated answer appear in item order, counted
 * from the first: k when all k section headers ("<i>. <label>") are there. */
int  orc_pp_sections_in_order(const char *answer, int k, const char *const *labels);

/* The engine calls the runner makes.  orc_pp_run binds them to eng.h; tests
 * bind a fake engine.  All return ENG_* codes. */
typedef struct orc_pp_ops {
    void *ctx;
    /* Prompt text -> token ids (the eng.h binding applies the chat template). */
    int (*encode)(void *ctx, const char *text, int **ids, int *n, eng_err *err);
    int (*add)(void *ctx, const int *ids, int n, const eng_sampling *s, int *seq, eng_err *err);
    int (*prefill)(void *ctx, int seq, eng_err *err);
    int (*fork)(void *ctx, int seq, const eng_sampling *s, int *child, eng_err *err);
    int (*append)(void *ctx, int seq, const int *ids, int n, eng_err *err);
    int (*remove)(void *ctx, int seq);
    int (*step)(void *ctx, eng_err *err);
    int (*last)(void *ctx, int seq, int *id);
    int (*is_eos)(void *ctx, int id);
    /* Text of token id for a subtask's stream (holds split UTF-8). */
    int (*put)(void *ctx, eng_tok_stream *st, int id, char *out, int cap);
    int ctx_len;   /* model context in tokens (0: no limit): a subtask stops there */
} orc_pp_ops;

/* Runs k prompts as one batch: the longest common token prefix is added once,
 * prefilled, forked k ways; each child gets its own remaining tokens and
 * sampling seed (s->seed + item).  All the children's remaining prompt
 * tokens go through the model in one batched pass, which also samples every
 * child's first token; then they decode together until EOS, max_tokens or
 * the end of the model's context, each.
 * labels (may be NULL) head the aggregated sections; aggregate = 0 leaves
 * result->answer as outputs[0] (serial runs). */
int orc_pp_run_prompts(const orc_pp_ops *ops, char *const *prompts, int k,
                       const char *const *labels, int aggregate, const eng_sampling *s,
                       int max_tokens, const orc_pp_callbacks *cb, orc_pp_result *res,
                       eng_err *err);

/* Parallel: the schema's subtasks on the engine (which should not be running
 * other sequences meanwhile: each eng_step advances every live sequence). */
int orc_pp_run(eng_engine *e, const eng_tok *tok, const orc_pp_schema *s,
               const eng_sampling *samp, int max_tokens, const orc_pp_callbacks *cb,
               orc_pp_result *res, eng_err *err);
/* Serial baseline: the whole prompt as one request. */
int orc_pp_run_serial(eng_engine *e, const eng_tok *tok, const char *prompt,
                      const eng_sampling *samp, int max_tokens, const orc_pp_callbacks *cb,
                      orc_pp_result *res, eng_err *err);
#endif
