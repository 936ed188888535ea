/* spec.c — the speculator: ranks candidate next actions (links on the page,
 * unopened search results, anything another proposer adds) by how many of
 * the question's words they share, weighted by idf over the candidates, so
 * the prefetcher can fetch the likely ones before the model asks. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cache.h"

#define WORD_MAX 48
#define RANK_BONUS 0.25

typedef struct wordlist { char (*w)[WORD_MAX]; int n, cap; } wordlist;

typedef struct cand {
    char *key, *url, *text;   /* text: every text given for it, joined */
    double extra;             /* scores from other proposers */
    int sources, rank;
} cand;

struct cache_spec {
    wordlist q;               /* distinct question words */
    cand *c;
    int n, cap;
    cache_cand *out;          /* last ranking */
};

static const char *const stop_words[] = {
    "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any",
    "are", "as", "at", "be", "because", "been", "before", "being", "below", "between",
    "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during",
    "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her",
    "here", "hers", "him", "his", "how", "if", "in", "into", "is", "it", "its", "just",
    "many", "me", "more", "most", "much", "my", "no", "nor", "not", "now", "of", "off",
    "on", "once", "only", "or", "other", "our", "out", "over", "own", "same", "she",
    "should", "so", "some", "such", "than", "that", "the", "their", "them", "then",
    "there", "these", "they", "this", "those", "through", "to", "too", "under", "until",
    "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who",
    "whom", "whose", "why", "will", "with", "would", "you", "your",
};
/* Parts of URLs that say nothing about the page. */
static const char *const url_words[] = {
    "http", "https", "www", "html", "htm", "php", "asp", "aspx", "index", "wiki",
    "com", "org", "net",
};

static int in_list(const char *w, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++) if (!strcmp(w, list[i])) return 1;
    return 0;
}

static int is_word_byte(unsigned char c) { return isalnum(c) || c >= 0x80; }

/* Reads the next word at *s (before end) into buf, lowercased with a plural
 * "s" stripped; returns 0 when no words are left.  Over-long runs are
 * skipped. */
static int next_word(const char **s, const char *end, char buf[WORD_MAX]) {
    for (;;) {
        while (*s < end && !is_word_byte((unsigned char)**s)) (*s)++;
        if (*s >= end) return 0;
        const char *b = *s;
        while (*s < end && is_word_byte((unsigned char)**s)) (*s)++;
        size_t n = (size_t)(*s - b);
        if (n >= WORD_MAX) continue;
        for (size_t i = 0; i < n; i++) buf[i] = (char)tolower((unsigned char)b[i]);
        if (n > 3 && buf[n - 1] == 's' && buf[n - 2] != 's') n--;
        buf[n] = 0;
        return 1;
    }
}

static int wl_has(const wordlist *l, const char *w) {
    for (int i = 0; i < l->n; i++) if (!strcmp(l->w[i], w)) return 1;
    return 0;
}

static int wl_add(wordlist *l, const char *w) {
    if (wl_has(l, w)) return ENG_OK;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        void *p = realloc(l->w, (size_t)cap * sizeof *l->w);
        if (!p) return ENG_ENOMEM;
        l->w = p;
        l->cap = cap;
    }
    memcpy(l->w[l->n++], w, WORD_MAX);
    return ENG_OK;
}

/* Adds the content words of s[0..n) to l; url drops URL boilerplate too. */
static int add_words(wordlist *l, const char *s, size_t n, int url) {
    const char *end = s + n;
    char w[WORD_MAX];
    while (next_word(&s, end, w)) {
        if (strlen(w) < 2 || in_list(w, stop_words, sizeof stop_words / sizeof *stop_words)) continue;
        if (url && in_list(w, url_words, sizeof url_words / sizeof *url_words)) continue;
        if (wl_add(l, w) != ENG_OK) return ENG_ENOMEM;
    }
    return ENG_OK;
}

/* Words of a candidate: its texts, and its key's path and query (or the
 * query of a "search:" key). */
static int cand_words(const cand *c, wordlist *l) {
    int rc = c->text ? add_words(l, c->text, strlen(c->text), 0) : ENG_OK;
    const char *k = c->key;
    if (!strncmp(k, "search:", 7)) {
        k += 7;
    } else {
        const char *a = strstr(k, "://");
        if (a) {
            k = a + 3;
            while (*k && *k != '/' && *k != '?') k++;
        }
    }
    if (rc == ENG_OK) rc = add_words(l, k, strlen(k), 1);
    return rc;
}

int cache_spec_create(const char *question, cache_spec **out, eng_err *err) {
    *out = NULL;
    if (!question) return eng_seterr(err, ENG_EINVAL, "cache_spec_create: no question");
    cache_spec *s = calloc(1, sizeof *s);
    if (!s || add_words(&s->q, question, strlen(question), 0) != ENG_OK) {
        cache_spec_destroy(s);
        return eng_seterr(err, ENG_ENOMEM, "cache_spec_create: out of memory");
    }
    *out = s;
    return ENG_OK;
}

void cache_spec_destroy(cache_spec *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) { free(s->c[i].key); free(s->c[i].url); free(s->c[i].text); }
    free(s->c);
    free(s->q.w);
    free(s->out);
    free(s);
}

/* Appends " " + t to *text. */
static int append_text(char **text, const char *t) {
    if (!t || !*t) return ENG_OK;
    size_t a = *text ? strlen(*text) : 0, b = strlen(t);
    char *p = realloc(*text, a + b + 2);
    if (!p) return ENG_ENOMEM;
    if (a) p[a++] = ' ';
    memcpy(p + a, t, b + 1);
    *text = p;
    return ENG_OK;
}

/* *out = the candidate for url, created if new. */
static int cand_get(cache_spec *s, const char *url, cand **out, eng_err *err) {
    char *key;
    int rc = cache_key(url, &key, err);
    if (rc != ENG_OK) return rc;
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->c[i].key, key)) { free(key); *out = &s->c[i]; return ENG_OK; }
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 32;
        cand *p = realloc(s->c, (size_t)cap * sizeof *p);
        if (!p) { free(key); return eng_seterr(err, ENG_ENOMEM, "speculator: out of memory"); }
        s->c = p;
        s->cap = cap;
    }
    char *u = strdup(url);
    if (!u) { free(key); return eng_seterr(err, ENG_ENOMEM, "speculator: out of memory"); }
    s->c[s->n] = (cand){ .key = key, .url = u, .rank = -1 };
    *out = &s->c[s->n++];
    return ENG_OK;
}

static int add(cache_spec *s, const char *url, const char *t1, const char *t2, int source,
               int rank, double extra, eng_err *err) {
    if (!s || !url) return eng_seterr(err, ENG_EINVAL, "speculator: no url");
    cand *c = NULL;
    int rc = cand_get(s, url, &c, err);
    if (rc != ENG_OK || !c) return rc != ENG_OK ? rc : ENG_EINVAL;
    if (append_text(&c->text, t1) != ENG_OK || append_text(&c->text, t2) != ENG_OK)
        return eng_seterr(err, ENG_ENOMEM, "speculator: out of memory");
    c->sources |= source;
    if (rank >= 0 && (c->rank < 0 || rank < c->rank)) c->rank = rank;
    c->extra += extra;
    return ENG_OK;
}

int cache_spec_add_link(cache_spec *s, const char *url, const char *anchor, eng_err *err) {
    return add(s, url, anchor, NULL, CACHE_SPEC_LINK, -1, 0, err);
}

int cache_spec_add_result(cache_spec *s, const char *url, const char *title,
                          const char *snippet, int rank, eng_err *err) {
    if (rank < 0) return eng_seterr(err, ENG_EINVAL, "speculator: negative search rank");
    return add(s, url, title, snippet, CACHE_SPEC_SEARCH, rank, 0, err);
}

int cache_spec_add(cache_spec *s, const char *url, const char *text, double score, eng_err *err) {
    if (!isfinite(score)) return eng_seterr(err, ENG_EINVAL, "speculator: score is not finite");
    return add(s, url, text, NULL, CACHE_SPEC_OTHER, -1, score, err);
}

/* has[i * nq + j]: candidate i holds question word j. */
static int match_words(const cache_spec *s, unsigned char *has) {
    wordlist l = {0};
    int rc = ENG_OK;
    for (int i = 0; i < s->n && rc == ENG_OK; i++) {
        l.n = 0;
        rc = cand_words(&s->c[i], &l);
        for (int j = 0; j < s->q.n; j++) has[(size_t)i * s->q.n + j] = (unsigned char)wl_has(&l, s->q.w[j]);
    }
    free(l.w);
    return rc;
}

/* Inserts x into o[0..m) sorted by score, best first; equal scores keep
 * the order candidates were added in. */
static void insert_sorted(cache_cand *o, int m, cache_cand x) {
    int i = m;
    while (i > 0 && o[i - 1].score < x.score) { o[i] = o[i - 1]; i--; }
    o[i] = x;
}

int cache_spec_rank(cache_spec *s, int k, const cache_cand **out, int *n, eng_err *err) {
    *out = NULL;
    *n = 0;
    int nq = s->q.n;
    unsigned char *has = calloc((size_t)s->n * (nq ? nq : 1) + 1, 1);
    double *idf = calloc((size_t)nq + 1, sizeof *idf);
    cache_cand *o = realloc(s->out, ((size_t)s->n + 1) * sizeof *o);
    if (o) s->out = o;
    if (!has || !idf || !o || match_words(s, has) != ENG_OK) {
        free(has); free(idf);
        return eng_seterr(err, ENG_ENOMEM, "speculator: out of memory");
    }
    for (int j = 0; j < nq; j++) {
        int df = 0;
        for (int i = 0; i < s->n; i++) df += has[(size_t)i * nq + j];
        idf[j] = df ? log(1.0 + (double)s->n / df) : 0;
    }
    int m = 0;
    for (int i = 0; i < s->n; i++) {
        const cand *c = &s->c[i];
        double sc = c->extra + (c->rank >= 0 ? RANK_BONUS / (1 + c->rank) : 0);
        for (int j = 0; j < nq; j++) if (has[(size_t)i * nq + j]) sc += idf[j];
        if (sc > 0) insert_sorted(o, m++, (cache_cand){ c->key, c->url, sc, c->sources, c->rank });
    }
    free(has);
    free(idf);
    *out = o;
    *n = k < m ? (k > 0 ? k : 0) : m;
    return ENG_OK;
}

int cache_spec_prefetch(cache_spec *s, cache_prefetch *p, int k, eng_err *err) {
    const cache_cand *c;
    int n;
    int rc = cache_spec_rank(s, k, &c, &n, err);
    for (int i = 0; i < n && rc == ENG_OK; i++) rc = cache_prefetch_request(p, c[i].key, c[i].score, err);
    return rc;
}
