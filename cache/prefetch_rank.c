/* prefetch_rank.c — the speculator: ranks candidate next actions (links on the page,
 * unopened search results, anything another proposer adds) by how well
 * their words match the question's, so the prefetcher can fetch the likely
 * ones before the model asks.  Matching is BM25-like: each shared word
 * counts its idf over the candidates, scaled down for candidates with many
 * words (a long URL matches something by chance).  Words are stemmed, so
 * "funded" meets "funding" and "elections" meets "election". */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cache.h"

#define WORD_MAX 48
#define RANK_BONUS 0.25     /* + RANK_BONUS / (1 + rank) for a search result */
#define PREFIX_BONUS 1.0    /* + PREFIX_BONUS / (1 + rank) for a link above a result */
#define OFFSITE 0.25        /* score factor of candidates off the task's site */
#define HINT_BONUS 2.0      /* + HINT_BONUS / (1 + rank / HINT_SCALE) at a hinted page */
#define HINT_SCALE 5.0
#define BM25_K1 1.2
#define BM25_B 0.75

typedef struct wordlist { char (*w)[WORD_MAX]; int n, cap; } wordlist;

typedef struct cand {
    char *key, *url, *text;   /* text: every text given for it, joined */
    double extra;             /* scores from other proposers */
    int sources, rank;
} cand;

typedef struct hint { char *key; int rank; } hint;

struct cache_spec {
    wordlist q;               /* distinct question words */
    hint *h;                  /* pages a search ranked, not candidates themselves */
    int nh, caph;
    char *site;               /* host of the task's site ("www." dropped), or NULL */
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

static int ends(const char *w, size_t n, const char *sfx) {
    size_t k = strlen(sfx);
    return n > k && !memcmp(w + n - k, sfx, k);
}

static int is_vowel(char c) { return strchr("aeiouy", c) != NULL; }

/* A light suffix stripper (in the spirit of Porter's first steps, much
 * shorter): plural and verb endings off, then a final "e" and a doubled
 * consonant, so "studies"/"study", "funded"/"funding"/"fund",
 * "organization"/"organized"/"organize" and "planned"/"plan" meet.  Digits
 * and short words are left alone. */
static void stem(char *w) {
    size_t n = strlen(w);
    if (n < 4 || isdigit((unsigned char)w[0])) return;
    if (ends(w, n, "ies") && n > 4) { n -= 2; w[n - 1] = 'y'; }
    else if (ends(w, n, "sses")) n -= 2;
    else if (w[n - 1] == 's' && !ends(w, n, "ss") && !ends(w, n, "us") && !ends(w, n, "is")) n--;
    static const char *const sfx[] = {"ations", "ation", "ings", "ing", "edly", "ed", "ly"};
    for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++) {
        size_t k = strlen(sfx[i]);
        if (n >= k + 3 && ends(w, n, sfx[i])) {
            int vowel = 0;                        /* keep "string", "shred": a vowel must stay */
            for (size_t j = 0; j < n - k; j++) vowel |= is_vowel(w[j]);
            if (vowel) n -= k;
            break;
        }
    }
    if (n > 3 && w[n - 1] == 'e') n--;
    if (n > 3 && w[n - 1] == w[n - 2] && !is_vowel(w[n - 1]) && !strchr("lsz", w[n - 1])) n--;
    w[n] = 0;
}

/* Reads the next word at *s (before end) into buf, lowercased; returns 0
 * when no words are left.  Over-long runs are skipped. */
static int next_word(const char **s, const char *end, char buf[WORD_MAX]) {
    for (;;) {
        while (*s < end && !is_word_byte((unsigned char)**s)) (*s)++;
        if (*s >= end) return 0;
        const char *b = *s;
        while (*s < end && is_word_byte((unsigned char)**s)) (*s)++;
        size_t n = (size_t)(*s - b);
        if (n >= WORD_MAX) continue;
        for (size_t i = 0; i < n; i++) buf[i] = (char)tolower((unsigned char)b[i]);
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
        stem(w);
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
    for (int i = 0; i < s->nh; i++) free(s->h[i].key);
    free(s->h);
    free(s->q.w);
    free(s->site);
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

/* has[i * nq + j]: candidate i holds question word j; len[i]: its number
 * of distinct words. */
static int match_words(const cache_spec *s, unsigned char *has, int *len) {
    wordlist l = {0};
    int rc = ENG_OK;
    for (int i = 0; i < s->n && rc == ENG_OK; i++) {
        l.n = 0;
        rc = cand_words(&s->c[i], &l);
        len[i] = l.n;
        for (int j = 0; j < s->q.n; j++) has[(size_t)i * s->q.n + j] = (unsigned char)wl_has(&l, s->q.w[j]);
    }
    free(l.w);
    return rc;
}

/* Host (without "www.") and path of a normalised URL key; 0 if it is not
 * one. */
static int url_parts(const char *key, const char **host, size_t *hlen, const char **path) {
    const char *a = strstr(key, "://");
    if (!a || !strncmp(key, "search:", 7)) return 0;
    const char *h = a + 3;
    if (!strncmp(h, "www.", 4)) h += 4;
    const char *e = h + strcspn(h, "/?");
    *host = h;
    *hlen = (size_t)(e - h);
    *path = e;
    return 1;
}

static int same_host(const char *a, size_t an, const char *b, size_t bn) {
    return an == bn && !strncmp(a, b, an);
}

/* Is URL key `above` a directory above URL key `below` (same host, its
 * path a proper prefix ending at a '/', not the site's root)? */
static int is_above(const char *above, const char *below) {
    const char *h, *p, *bh, *bp;
    size_t hn, bhn;
    if (!url_parts(above, &h, &hn, &p) || !url_parts(below, &bh, &bhn, &bp)) return 0;
    size_t pn = strcspn(p, "?");
    return pn > 1 && same_host(h, hn, bh, bhn) && !strncmp(p, bp, pn) && bp[pn] == '/';
}

/* A link above an unopened search result probably leads there:
 * PREFIX_BONUS / (1 + the best such result's rank). */
static double prefix_bonus(const cache_spec *s, const cand *c) {
    if (!(c->sources & CACHE_SPEC_LINK)) return 0;
    double best = 0;
    for (int i = 0; i < s->n; i++) {
        const cand *r = &s->c[i];
        if (r == c || !(r->sources & CACHE_SPEC_SEARCH) || !is_above(c->key, r->key)) continue;
        double b = PREFIX_BONUS / (1 + r->rank);
        if (b > best) best = b;
    }
    return best;
}

/* The best hint for c: the hinted page itself, or half for a link above
 * it. */
static double hint_bonus(const cache_spec *s, const cand *c) {
    double best = 0;
    for (int i = 0; i < s->nh; i++) {
        double b = HINT_BONUS / (1 + s->h[i].rank / HINT_SCALE);
        if (strcmp(c->key, s->h[i].key)) b = (c->sources & CACHE_SPEC_LINK) && is_above(c->key, s->h[i].key) ? b / 2 : 0;
        if (b > best) best = b;
    }
    return best;
}

/* OFFSITE for a URL candidate on another host than the task's site. */
static double site_factor(const cache_spec *s, const cand *c) {
    const char *h, *p;
    size_t hn;
    if (!s->site || !url_parts(c->key, &h, &hn, &p)) return 1;
    return same_host(h, hn, s->site, strlen(s->site)) ? 1 : OFFSITE;
}

/* Inserts x into o[0..m) sorted by score, best first; equal scores keep
 * the order candidates were added in. */
static void insert_sorted(cache_cand *o, int m, cache_cand x) {
    int i = m;
    while (i > 0 && o[i - 1].score < x.score) { o[i] = o[i - 1]; i--; }
    o[i] = x;
}

/* idf[j] = ln(1 + N / df_j) over the N candidates; *avg = mean length. */
static void idf_weights(const cache_spec *s, const unsigned char *has, const int *len, double *idf,
                        double *avg) {
    int nq = s->q.n;
    for (int j = 0; j < nq; j++) {
        int df = 0;
        for (int i = 0; i < s->n; i++) df += has[(size_t)i * nq + j];
        idf[j] = df ? log(1.0 + (double)s->n / df) : 0;
    }
    double tot = 0;
    for (int i = 0; i < s->n; i++) tot += len[i];
    *avg = s->n && tot > 0 ? tot / s->n : 1;
}

/* One candidate's score: BM25 with every term frequency 1, plus bonuses,
 * times the site factor; proposers' scores are added as given. */
static double score_of(const cache_spec *s, int i, const unsigned char *has, const int *len,
                       const double *idf, double avg) {
    const cand *c = &s->c[i];
    int nq = s->q.n;
    double norm = (BM25_K1 + 1) / (1 + BM25_K1 * (1 - BM25_B + BM25_B * len[i] / avg)), m = 0;
    for (int j = 0; j < nq; j++) if (has[(size_t)i * nq + j]) m += idf[j];
    double sc = m * norm + (c->rank >= 0 ? RANK_BONUS / (1 + c->rank) : 0) + prefix_bonus(s, c) +
                hint_bonus(s, c);
    return sc * site_factor(s, c) + c->extra;
}

int cache_spec_rank(cache_spec *s, int k, const cache_cand **out, int *n, eng_err *err) {
    *out = NULL;
    *n = 0;
    int nq = s->q.n;
    unsigned char *has = calloc((size_t)s->n * (nq ? nq : 1) + 1, 1);
    int *len = calloc((size_t)s->n + 1, sizeof *len);
    double *idf = calloc((size_t)nq + 1, sizeof *idf), avg = 1;
    cache_cand *o = realloc(s->out, ((size_t)s->n + 1) * sizeof *o);
    if (o) s->out = o;
    if (!has || !len || !idf || !o || match_words(s, has, len) != ENG_OK) {
        free(has); free(len); free(idf);
        return eng_seterr(err, ENG_ENOMEM, "speculator: out of memory");
    }
    idf_weights(s, has, len, idf, &avg);
    int m = 0;
    for (int i = 0; i < s->n; i++) {
        const cand *c = &s->c[i];
        double sc = score_of(s, i, has, len, idf, avg);
        if (sc > 0) insert_sorted(o, m++, (cache_cand){ c->key, c->url, sc, c->sources, c->rank });
    }
    free(has);
    free(len);
    free(idf);
    *out = o;
    *n = k < m ? (k > 0 ? k : 0) : m;
    return ENG_OK;
}

int cache_spec_add_hint(cache_spec *s, const char *url, int rank, eng_err *err) {
    if (!s || !url || rank < 0) return eng_seterr(err, ENG_EINVAL, "speculator: bad hint");
    char *key = NULL;
    int rc = cache_key(url, &key, err);
    if (rc != ENG_OK) return rc;
    if (s->nh == s->caph) {
        int cap = s->caph ? 2 * s->caph : 32;
        hint *v = realloc(s->h, (size_t)cap * sizeof *v);
        if (!v) { free(key); return eng_seterr(err, ENG_ENOMEM, "speculator: out of memory"); }
        s->h = v;
        s->caph = cap;
    }
    s->h[s->nh++] = (hint){ key, rank };
    return ENG_OK;
}

int cache_spec_set_site(cache_spec *s, const char *url, eng_err *err) {
    char *key = NULL;
    const char *h, *p;
    size_t hn;
    int rc = url ? cache_key(url, &key, err) : eng_seterr(err, ENG_EINVAL, "speculator: no site URL");
    if (rc != ENG_OK) return rc;
    if (!url_parts(key, &h, &hn, &p) || hn == 0) {
        free(key);
        return eng_seterr(err, ENG_EINVAL, "speculator: %.200s is not a URL with a host", url);
    }
    char *site = strndup(h, hn);
    free(key);
    if (!site) return eng_seterr(err, ENG_ENOMEM, "speculator: out of memory");
    free(s->site);
    s->site = site;
    return ENG_OK;
}

int cache_spec_prefetch(cache_spec *s, cache_prefetch *p, int k, eng_err *err) {
    const cache_cand *c;
    int n;
    int rc = cache_spec_rank(s, k, &c, &n, err);
    for (int i = 0; i < n && rc == ENG_OK; i++) rc = cache_prefetch_request(p, c[i].key, c[i].score, err);
    return rc;
}
