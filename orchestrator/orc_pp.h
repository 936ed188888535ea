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
 * (orc_pp_agg_*) and agreement between two schemas (orc_pp_compare).  The
 * scheduler task of parallel mode (task_parallel.c) runs the subtasks. */
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

/* How many sections of an aggregated answer appear in item order, counted
 * from the first: k when all k section headers ("<i>. <label>") are there. */
int  orc_pp_sections_in_order(const char *answer, int k, const char *const *labels);

/* Running the subtasks is parallel mode's task (orc_task_parallel_create in
 * orc.h): the longest common token prefix of the subtask prompts is
 * prefilled once and forked, each child gets its own remaining tokens and
 * sampling seed (seed + item), and the children decode in one batch. */
#endif
