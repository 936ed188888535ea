/* pp_agg.c — puts subtask answers back together: they arrive in any order,
 * sections are released strictly in item order. */
#include <stdlib.h>
#include <string.h>
#include "pp_internal.h"

struct orc_pp_agg {
    int n, next;              /* items; first item not yet released */
    char **labels, **answers; /* answers[i] != NULL once item i is in */
    orc_pp_section_fn on_section;
    void *user;
    eng_buf text;              /* released sections */
};

/* First line of a label, cut to at most 80 bytes on a UTF-8 boundary. */
static char *short_label(const char *s) {
    size_t n = strcspn(s, "\r\n");
    if (n > 80) {
        n = 80;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
        eng_buf b = {0};
        eng_buf_add(&b, s, n);
        eng_buf_adds(&b, "...");
        return eng_buf_take(&b);
    }
    return pp_trimdup(s, n);
}

int orc_pp_agg_create(int n_items, const char *const *labels, orc_pp_section_fn on_section,
                      void *user, orc_pp_agg **out, eng_err *err) {
    if (!out || n_items < 1) return eng_seterr(err, ENG_EINVAL, "orc_pp_agg_create: need >= 1 item");
    *out = NULL;
    orc_pp_agg *a = calloc(1, sizeof *a);
    if (!a) return eng_seterr(err, ENG_ENOMEM, "orc_pp_agg_create: out of memory");
    a->n = n_items;
    a->on_section = on_section;
    a->user = user;
    a->labels = calloc((size_t)n_items, sizeof *a->labels);
    a->answers = calloc((size_t)n_items, sizeof *a->answers);
    if (!a->labels || !a->answers) goto oom;
    for (int i = 0; labels && i < n_items; i++) {
        if (!labels[i]) continue;
        if (!(a->labels[i] = short_label(labels[i]))) goto oom;
    }
    *out = a;
    return ENG_OK;
oom:
    orc_pp_agg_destroy(a);
    return eng_seterr(err, ENG_ENOMEM, "orc_pp_agg_create: out of memory");
}

void orc_pp_agg_destroy(orc_pp_agg *a) {
    if (!a) return;
    orc_pp_strv_free(a->labels, a->n);
    orc_pp_strv_free(a->answers, a->n);
    eng_buf_free(&a->text);
    free(a);
}

/* A section's first line: "<i>. <label>\n", or "<i>.\n" without a label. */
static void header(eng_buf *b, int i, const char *label) {
    if (label && *label) eng_buf_printf(b, "%d. %s\n", i + 1, label);
    else eng_buf_printf(b, "%d.\n", i + 1);
}

static int release(orc_pp_agg *a, int i) {
    eng_buf s = {0};
    header(&s, i, a->labels[i]);
    const char *ans = a->answers[i];
    size_t n = strlen(ans);
    char *trim = pp_trimdup(ans, n);
    if (trim) eng_buf_adds(&s, trim);
    free(trim);
    eng_buf_adds(&s, "\n\n");
    char *sec = eng_buf_take(&s);
    if (!trim || !sec) { free(sec); return ENG_ENOMEM; }
    eng_buf_adds(&a->text, sec);
    if (a->on_section) a->on_section(a->user, i, sec);
    free(sec);
    return a->text.oom ? ENG_ENOMEM : ENG_OK;
}

int orc_pp_agg_put(orc_pp_agg *a, int item, const char *answer, eng_err *err) {
    if (!a || !answer) return eng_seterr(err, ENG_EINVAL, "orc_pp_agg_put: bad arguments");
    if (item < 0 || item >= a->n)
        return eng_seterr(err, ENG_EINVAL, "orc_pp_agg_put: item %d outside 0..%d", item, a->n - 1);
    if (a->answers[item])
        return eng_seterr(err, ENG_EINVAL, "orc_pp_agg_put: item %d given twice", item);
    if (!(a->answers[item] = pp_strdup(answer)))
        return eng_seterr(err, ENG_ENOMEM, "orc_pp_agg_put: out of memory");
    while (a->next < a->n && a->answers[a->next]) {
        if (release(a, a->next)) return eng_seterr(err, ENG_ENOMEM, "orc_pp_agg_put: out of memory");
        a->next++;
    }
    return ENG_OK;
}

int orc_pp_agg_done(const orc_pp_agg *a) { return a && a->next == a->n; }
int orc_pp_agg_released(const orc_pp_agg *a) { return a ? a->next : 0; }
const char *orc_pp_agg_text(const orc_pp_agg *a) { return a && a->text.p ? a->text.p : ""; }

/* Header i as it appears in an answer: after "\n\n" (the end of the previous
 * section) except for the first. */
static char *header_at(int i, const char *const *labels) {
    char *label = labels && labels[i] ? short_label(labels[i]) : NULL;
    if (labels && labels[i] && !label) return NULL;
    eng_buf b = {0};
    if (i > 0) eng_buf_adds(&b, "\n\n");
    header(&b, i, label);
    free(label);
    return eng_buf_take(&b);
}

int orc_pp_sections_in_order(const char *answer, int k, const char *const *labels) {
    if (!answer || k < 1) return 0;
    const char *p = answer;
    for (int i = 0; i < k; i++) {
        char *h = header_at(i, labels);
        if (!h) return i;
        const char *at = i == 0 ? (strncmp(p, h, strlen(h)) ? NULL : p) : strstr(p, h);
        size_t n = strlen(h);
        free(h);
        if (!at) return i;
        p = at + n;
    }
    return k;
}
