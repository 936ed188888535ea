/* wwsite.c — WebWalkerQA rows and the local sites built from them.
 *
 * The real sites behind WebWalkerQA are not reachable from here, so each
 * root_url gets a generated site whose shape comes from the dataset: every
 * golden path "root->A->B" becomes a chain of links with anchor texts A, B
 * from the root page, and the page at the end holds the row's answer text.
 * Pages are shared by every question of the same root_url (two paths
 * through "News" meet on one "News" page).  The page a path ends on takes
 * the row's source_website URL when it is a plain URL not used yet; other
 * pages get their parent's URL plus a slug of their anchor text.  Every
 * page also links to 8-20 filler pages of its site, whose anchor texts are
 * other sites' golden anchors and common site-section words, in a
 * seed-determined order mixed with the real links.  Filler pages carry
 * generated prose and distractor links of their own.
 *
 * URL mapping: the web environment serves paths only, so the public URL
 * scheme://host/path is served as "/host/path" (query and fragment are
 * never generated).  Links inside pages are absolute public URLs; a client
 * maps them back with bench_ww_local_path before fetching. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cJSON.h>
#include <sqlite3.h>
#include "cache.h"
#include "tool.h"
#include "bench.h"

/* ------------------------------------------------------------ helpers */
/* HTML-escapes s into b. */
static void sb_esc(eng_buf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': eng_buf_adds(b, "&amp;"); break;
        case '<': eng_buf_adds(b, "&lt;"); break;
        case '>': eng_buf_adds(b, "&gt;"); break;
        case '"': eng_buf_adds(b, "&quot;"); break;
        default: eng_buf_add(b, s, 1);
        }
    }
}

static int rng_int(uint64_t *s, int n) { return n > 0 ? (int)(eng_rng_next(s) % (uint64_t)n) : 0; }

static uint64_t hash_str(const char *s) {   /* FNV-1a */
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return h;
}

char *bench_ww_norm_text(const char *s) {
    size_t n = s ? strlen(s) : 0, k = 0;
    char *o = malloc(n + 1);
    if (!o) return NULL;
    int space = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') { space = k > 0; continue; }
        if (space) o[k++] = ' ';
        space = 0;
        o[k++] = (char)c;
    }
    o[k] = 0;
    return o;
}

/* --------------------------------------------------------------- rows */
static void row_clear(bench_ww_row *r) {
    free(r->question);
    free(r->answer);
    free(r->root_url);
    for (int i = 0; i < r->n_paths; i++) {
        for (int j = 0; j < r->paths[i].n; j++) free(r->paths[i].anchors[j]);
        free(r->paths[i].anchors);
        free(r->paths[i].source);
        free(r->paths[i].url);
    }
    free(r->paths);
    memset(r, 0, sizeof *r);
}

void bench_ww_rows_free(bench_ww_row *rows, int n) {
    for (int i = 0; rows && i < n; i++) row_clear(&rows[i]);
    free(rows);
}

/* bench_ww_norm_text of s[0..n); NULL when out of memory. */
static char *norm_piece(const char *s, size_t n) {
    char *raw = malloc(n + 1);
    if (!raw) return NULL;
    memcpy(raw, s, n);
    raw[n] = 0;
    char *t = bench_ww_norm_text(raw);
    free(raw);
    return t;
}

/* Splits "root->A->B" into its anchors after "root" (normalised, empty
 * ones dropped). */
static int parse_path(const char *s, bench_ww_path *p) {
    const char *cur = s;
    int first = 1;
    while (cur) {
        const char *sep = strstr(cur, "->");
        char *a = norm_piece(cur, sep ? (size_t)(sep - cur) : strlen(cur));
        if (!a) return ENG_ENOMEM;
        if ((first && !strcmp(a, "root")) || !a[0]) {
            free(a);
        } else {
            char **v = realloc(p->anchors, (size_t)(p->n + 1) * sizeof *v);
            if (!v) { free(a); return ENG_ENOMEM; }
            p->anchors = v;
            p->anchors[p->n++] = a;
        }
        first = 0;
        cur = sep ? sep + 2 : NULL;
    }
    return ENG_OK;
}

/* source_website: an array of URLs, some joined by a fullwidth semicolon. */
static int split_sources(const cJSON *src, char ***out, int *n) {
    const cJSON *it;
    cJSON_ArrayForEach(it, src) {
        const char *s = cJSON_GetStringValue(it);
        while (s && *s) {
            const char *sep = strstr(s, "\xEF\xBC\x9B");     /* "；" */
            char *u = norm_piece(s, sep ? (size_t)(sep - s) : strlen(s));
            char **v = u ? realloc(*out, (size_t)(*n + 1) * sizeof *v) : NULL;
            if (!v) { free(u); return ENG_ENOMEM; }
            *out = v;
            (*out)[(*n)++] = u;
            s = sep ? sep + 3 : NULL;
        }
    }
    return ENG_OK;
}

static int load_row(const cJSON *it, int index, bench_ww_row *r, int *keep) {
    const char *q = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "Question"));
    const char *a = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "answer"));
    const char *root = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "root_url"));
    const cJSON *gp = cJSON_GetObjectItemCaseSensitive(it, "golden_path");
    *keep = 0;
    if (!q || !a || !root || !cJSON_IsArray(gp) || cJSON_GetArraySize(gp) == 0) return ENG_OK;
    memset(r, 0, sizeof *r);
    r->index = index;
    r->question = bench_ww_norm_text(q);
    r->answer = bench_ww_norm_text(a);
    if (!r->question || !r->answer) return ENG_ENOMEM;
    if (!r->answer[0] || cache_key_url(root, &r->root_url, NULL) != ENG_OK) return ENG_OK;
    char **src = NULL;
    int n_src = 0, rc = split_sources(cJSON_GetObjectItemCaseSensitive(it, "source_website"), &src, &n_src);
    r->paths = calloc((size_t)cJSON_GetArraySize(gp), sizeof *r->paths);
    if (!r->paths) rc = ENG_ENOMEM;
    const cJSON *p;
    cJSON_ArrayForEach(p, gp) {
        if (rc || !cJSON_IsString(p)) continue;
        bench_ww_path *path = &r->paths[r->n_paths++];
        rc = parse_path(p->valuestring, path);
        if (!rc && r->n_paths - 1 < n_src) { path->source = src[r->n_paths - 1]; src[r->n_paths - 1] = NULL; }
    }
    for (int i = 0; i < n_src; i++) free(src[i]);
    free(src);
    *keep = !rc && r->n_paths > 0;
    return rc;
}

int bench_ww_load(const char *json_path, const char *lang, bench_ww_row **rows, int *n,
                  eng_err *err) {
    *rows = NULL;
    *n = 0;
    FILE *f = json_path ? fopen(json_path, "rb") : NULL;
    if (!f) return eng_seterr(err, ENG_EIO, "cannot open %s", json_path ? json_path : "(null)");
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = sz >= 0 && sz < (256L << 20) ? malloc((size_t)sz + 1) : NULL;
    size_t got = buf ? fread(buf, 1, (size_t)sz, f) : 0;
    fclose(f);
    if (!buf || got != (size_t)sz) {
        free(buf);
        return eng_seterr(err, ENG_EIO, "cannot read %s", json_path);
    }
    buf[got] = 0;
    cJSON *doc = cJSON_Parse(buf);
    free(buf);
    if (!cJSON_IsArray(doc)) {
        cJSON_Delete(doc);
        return eng_seterr(err, ENG_EFORMAT, "%s: not a JSON array of rows", json_path);
    }
    bench_ww_row *v = calloc((size_t)cJSON_GetArraySize(doc) + 1, sizeof *v);
    int k = 0, idx = 0, rc = v ? ENG_OK : ENG_ENOMEM;
    const cJSON *it;
    cJSON_ArrayForEach(it, doc) {
        if (rc) break;
        const char *l = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "lang"));
        int keep = 0;
        if (!lang || (l && !strcmp(l, lang))) rc = load_row(it, idx, &v[k], &keep);
        if (keep) k++;
        else if (v) row_clear(&v[k]);
        idx++;
    }
    cJSON_Delete(doc);
    if (rc) {
        bench_ww_rows_free(v, k + 1);
        return eng_seterr(err, ENG_ENOMEM, "%s: out of memory", json_path);
    }
    *rows = v;
    *n = k;
    return ENG_OK;
}

/* ---------------------------------------------------------- URL mapping */
int bench_ww_local_path(const char *url, char **out, eng_err *err) {
    *out = NULL;
    char *k = NULL;
    int rc = cache_key_url(url, &k, err);
    if (rc) return rc;
    const char *h = !strncmp(k, "https://", 8) ? k + 8 : !strncmp(k, "http://", 7) ? k + 7 : NULL;
    if (!h) {
        free(k);
        return eng_seterr(err, ENG_EINVAL, "%.200s is not an http(s) URL", url);
    }
    size_t n = strlen(h);
    *out = malloc(n + 3);
    if (!*out) {
        free(k);
        return eng_seterr(err, ENG_ENOMEM, "out of memory");
    }
    /* "/host" + path; a bare host has path "/" after normalising. */
    snprintf(*out, n + 3, "/%s%s", h, strchr(h, '/') ? "" : "/");
    free(k);
    return ENG_OK;
}

/* ------------------------------------------------------------- the site */
/* Anchor texts of common site sections, for distractor links. */
static const char *const SECTIONS[] = {
    "About", "About Us", "Contact", "Events", "Membership", "Publications", "Careers",
    "Press", "Calendar", "Resources", "Partners", "Sponsors", "Committees", "Governance",
    "Newsletter", "Annual Report", "Privacy Policy", "Terms of Use", "FAQ", "Support", "Blog",
    "Gallery", "Videos", "Downloads", "Education", "Research", "Awards", "Programs",
    "Volunteer", "Donate", "Community", "Forums", "Jobs", "Sitemap", "Accessibility",
    "Login", "Register", "Archive", "Media Kit", "Leadership", "History", "Mission",
    "Policies", "Guidelines", "Webinars", "Store", "Subscribe", "Directory",
};
/* Words of the filler prose. */
static const char *const WORDS[] = {
    "annual", "members", "program", "update", "regional", "office", "network", "board",
    "support", "report", "public", "service", "review", "session", "community", "project",
    "team", "schedule", "guide", "policy", "open", "access", "local", "global", "partner",
    "series", "online", "training", "workshop", "plan", "season", "release", "feature",
    "group", "forum", "meeting", "venue", "summary", "notes", "detail", "general", "early",
    "final", "spring", "autumn", "winter", "summer", "network", "council", "initiative",
    "resource", "center", "studio", "platform", "archive", "digital", "future", "history",
    "practice", "standard", "effort", "response", "growth", "topic", "track", "content",
    "design", "issue", "focus", "process", "result", "study", "period", "level", "system",
    "value", "event", "story", "season", "player", "world", "research", "article", "notice",
};
#define N_SECTIONS (int)(sizeof SECTIONS / sizeof *SECTIONS)
#define N_WORDS (int)(sizeof WORDS / sizeof *WORDS)

typedef struct node {
    int site, parent;          /* parent -1 for a root */
    char *anchor, *url, *title;
    int *answers, n_answers;   /* rows whose path ends here */
    const char *source;        /* first source URL offered for this page */
    int filler;
} node;

typedef struct sitemap { char *local, *pub; } sitemap;

struct bench_wwsite {
    node *nodes;
    int n_nodes, cap_nodes;
    char **set;                /* open-addressing set of used URLs */
    size_t set_cap, set_n;
    sitemap *map;              /* local path -> public URL, sorted */
    int n_map;
};

void bench_wwsite_free(bench_wwsite *s) {
    if (!s) return;
    for (int i = 0; i < s->n_nodes; i++) {
        free(s->nodes[i].anchor);
        free(s->nodes[i].url);
        free(s->nodes[i].title);
        free(s->nodes[i].answers);
    }
    free(s->nodes);
    for (size_t i = 0; i < s->set_cap; i++) free(s->set[i]);
    free(s->set);
    for (int i = 0; i < s->n_map; i++) free(s->map[i].local), free(s->map[i].pub);
    free(s->map);
    free(s);
}

static int set_has(const bench_wwsite *s, const char *u) {
    if (!s->set_cap) return 0;
    for (size_t i = hash_str(u) & (s->set_cap - 1); s->set[i]; i = (i + 1) & (s->set_cap - 1))
        if (!strcmp(s->set[i], u)) return 1;
    return 0;
}

static int set_add(bench_wwsite *s, const char *u) {
    if (2 * (s->set_n + 1) > s->set_cap) {
        size_t cap = s->set_cap ? 2 * s->set_cap : 1024;
        char **t = calloc(cap, sizeof *t);
        if (!t) return ENG_ENOMEM;
        for (size_t i = 0; i < s->set_cap; i++) {
            if (!s->set[i]) continue;
            size_t j = hash_str(s->set[i]) & (cap - 1);
            while (t[j]) j = (j + 1) & (cap - 1);
            t[j] = s->set[i];
        }
        free(s->set);
        s->set = t;
        s->set_cap = cap;
    }
    char *d = strdup(u);
    if (!d) return ENG_ENOMEM;
    size_t i = hash_str(u) & (s->set_cap - 1);
    while (s->set[i]) i = (i + 1) & (s->set_cap - 1);
    s->set[i] = d;
    s->set_n++;
    return ENG_OK;
}

static int add_node(bench_wwsite *s, int site, int parent, const char *anchor, int *out) {
    if (s->n_nodes == s->cap_nodes) {
        int cap = s->cap_nodes ? 2 * s->cap_nodes : 256;
        node *v = realloc(s->nodes, (size_t)cap * sizeof *v);
        if (!v) return ENG_ENOMEM;
        s->nodes = v;
        s->cap_nodes = cap;
    }
    node *n = &s->nodes[s->n_nodes];
    memset(n, 0, sizeof *n);
    n->site = site;
    n->parent = parent;
    n->anchor = strdup(anchor ? anchor : "");
    if (!n->anchor) return ENG_ENOMEM;
    *out = s->n_nodes++;
    return ENG_OK;
}

/* Lowercase ASCII words of s joined by '-', at most 48 bytes; a text with
 * no ASCII word gets "p" and a hash. */
static void slugify(const char *s, char out[64]) {
    size_t k = 0;
    for (const char *p = s; *p && k < 48;) {
        while (*p && !isalnum((unsigned char)*p)) p++;
        if (!*p) break;
        if (k) out[k++] = '-';
        while (*p && isalnum((unsigned char)*p) && k < 48) out[k++] = (char)tolower((unsigned char)*p++);
        while (*p && isalnum((unsigned char)*p)) p++;
    }
    while (k && out[k - 1] == '-') k--;
    out[k] = 0;
    if (!k) snprintf(out, 64, "p%08llx", (unsigned long long)(hash_str(s) & 0xFFFFFFFFu));
}

/* A source URL we can serve as it is: http(s), no query, plain path bytes. */
static char *usable_source(const char *src) {
    char *k = NULL;
    if (!src || cache_key_url(src, &k, NULL) != ENG_OK) return NULL;
    int ok = (!strncmp(k, "https://", 8) || !strncmp(k, "http://", 7)) && strlen(k) < 300;
    for (const char *p = strstr(k, "://") + 3; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || strchr("-._~/", *p);
    if (!ok) { free(k); return NULL; }
    return k;
}

/* base + "/" + slug, made unique with "-2", "-3", ...; claimed in the set. */
static int claim_slug_url(bench_wwsite *s, const char *base, const char *slug, char **out) {
    size_t bl = strlen(base);
    int slash = bl && base[bl - 1] == '/';
    for (int i = 1; i < 10000; i++) {
        char tail[80];
        if (i == 1) snprintf(tail, sizeof tail, "%s", slug);
        else snprintf(tail, sizeof tail, "%s-%d", slug, i);
        size_t n = bl + strlen(tail) + 2;
        char *u = malloc(n);
        if (!u) return ENG_ENOMEM;
        snprintf(u, n, "%s%s%s", base, slash ? "" : "/", tail);
        if (!set_has(s, u)) {
            if (set_add(s, u)) { free(u); return ENG_ENOMEM; }
            *out = u;
            return ENG_OK;
        }
        free(u);
    }
    return ENG_EFULL;
}

/* scheme://host of a normalised URL, malloc'd. */
static char *origin_of(const char *url) {
    const char *h = strstr(url, "://");
    const char *e = h ? strchr(h + 3, '/') : NULL;
    size_t n = e ? (size_t)(e - url) : strlen(url);
    char *o = malloc(n + 1);
    if (o) { memcpy(o, url, n); o[n] = 0; }
    return o;
}

/* Gives every golden node of the tree its URL: the root its root_url, a
 * path's last page its source URL when usable and free, others a slug. */
static int assign_urls(bench_wwsite *s, int first) {
    for (int i = first; i < s->n_nodes; i++) {
        node *n = &s->nodes[i];
        if (n->url) continue;
        char *src = n->source ? usable_source(n->source) : NULL;
        if (src && !set_has(s, src)) {
            if (set_add(s, src)) { free(src); return ENG_ENOMEM; }
            n->url = src;
            continue;
        }
        free(src);
        char slug[64];
        slugify(n->anchor, slug);
        int rc = claim_slug_url(s, s->nodes[n->parent].url, slug, &n->url);
        if (rc) return rc;
    }
    return ENG_OK;
}

static int child_with_anchor(const bench_wwsite *s, int parent, const char *anchor) {
    for (int i = parent + 1; i < s->n_nodes; i++)
        if (s->nodes[i].parent == parent && !s->nodes[i].filler && !strcmp(s->nodes[i].anchor, anchor))
            return i;
    return -1;
}

static int add_answer(node *n, int row) {
    for (int i = 0; i < n->n_answers; i++) if (n->answers[i] == row) return ENG_OK;
    int *v = realloc(n->answers, (size_t)(n->n_answers + 1) * sizeof *v);
    if (!v) return ENG_ENOMEM;
    n->answers = v;
    n->answers[n->n_answers++] = row;
    return ENG_OK;
}

/* The golden tree of one site: rows r[0..m) share root_url. */
static int build_tree(bench_wwsite *s, int site, bench_ww_row *rows, const int *r, int m) {
    int root, rc = add_node(s, site, -1, "", &root);
    if (rc) return rc;
    s->nodes[root].url = strdup(rows[r[0]].root_url);
    if (!s->nodes[root].url || set_add(s, rows[r[0]].root_url)) return ENG_ENOMEM;
    for (int i = 0; i < m && !rc; i++) {
        bench_ww_row *row = &rows[r[i]];
        for (int p = 0; p < row->n_paths && !rc; p++) {
            bench_ww_path *path = &row->paths[p];
            int cur = root;
            for (int a = 0; a < path->n && !rc; a++) {
                int c = child_with_anchor(s, cur, path->anchors[a]);
                if (c < 0) rc = add_node(s, site, cur, path->anchors[a], &c);
                cur = c;
            }
            if (rc) break;
            if (!s->nodes[cur].source && cur != root) s->nodes[cur].source = path->source;
            rc = add_answer(&s->nodes[cur], r[i]);
        }
    }
    if (!rc) rc = assign_urls(s, root);
    for (int i = 0; i < m && !rc; i++) {       /* tell each path where it ends */
        bench_ww_row *row = &rows[r[i]];
        for (int p = 0; p < row->n_paths && !rc; p++) {
            int cur = root;
            for (int a = 0; a < row->paths[p].n; a++) cur = child_with_anchor(s, cur, row->paths[p].anchors[a]);
            free(row->paths[p].url);
            row->paths[p].url = strdup(s->nodes[cur].url);
            if (!row->paths[p].url) rc = ENG_ENOMEM;
        }
    }
    return rc;
}

/* The site's filler pool: n pages with anchors from other sites' golden
 * paths (their source URLs' paths moved to this host for the last page of
 * a path) or from SECTIONS. */
static int build_fillers(bench_wwsite *s, int site, int root, const bench_ww_row *rows, int n_rows,
                         const char *root_key, int n, uint64_t seed) {
    uint64_t rng = seed ^ hash_str(root_key);
    char *origin = origin_of(s->nodes[root].url);
    if (!origin) return ENG_ENOMEM;
    int rc = ENG_OK;
    for (int i = 0, tries = 0; i < n && !rc && tries < 50 * n; tries++) {
        const char *anchor, *src = NULL;
        if (rng_int(&rng, 10) < 7 && n_rows > 1) {
            const bench_ww_row *o = &rows[rng_int(&rng, n_rows)];
            if (!strcmp(o->root_url, root_key) || !o->n_paths) continue;
            const bench_ww_path *p = &o->paths[rng_int(&rng, o->n_paths)];
            if (!p->n) continue;
            int a = rng_int(&rng, p->n);
            anchor = p->anchors[a];
            if (a == p->n - 1) src = p->source;
        } else {
            anchor = SECTIONS[rng_int(&rng, N_SECTIONS)];
        }
        int dup = 0;                              /* one filler per anchor text */
        for (int j = root + 1; j < s->n_nodes && !dup; j++)
            dup = s->nodes[j].filler && !strcasecmp(s->nodes[j].anchor, anchor);
        if (dup) continue;
        int id;
        rc = add_node(s, site, root, anchor, &id);
        if (rc) break;
        node *f = &s->nodes[id];
        f->filler = 1;
        char *k = usable_source(src);
        const char *path = k ? strchr(strstr(k, "://") + 3, '/') : NULL;
        if (path && strlen(path) > 1) {
            size_t len = strlen(origin) + strlen(path) + 1;
            char *u = malloc(len);
            if (u) snprintf(u, len, "%s%s", origin, path);
            if (u && !set_has(s, u) && !set_add(s, u)) f->url = u;
            else free(u);
        }
        free(k);
        if (!f->url) {
            char slug[64];
            slugify(anchor, slug);
            rc = claim_slug_url(s, s->nodes[root].url, slug, &f->url);
        }
        i++;
    }
    free(origin);
    return rc;
}

/* ------------------------------------------------------------ the pages */
static void add_prose(eng_buf *b, uint64_t *rng, int words) {
    while (words > 0) {
        int n = 8 + rng_int(rng, 10);
        eng_buf_adds(b, "<p>");
        for (int s = 0; s < 3 && words > 0; s++, words -= n) {
            for (int w = 0; w < n; w++) {
                const char *x = WORDS[rng_int(rng, N_WORDS)];
                if (w == 0) {
                    char c = (char)toupper((unsigned char)x[0]);
                    if (s) eng_buf_add(b, " ", 1);
                    eng_buf_add(b, &c, 1);
                    eng_buf_adds(b, x + 1);
                } else {
                    eng_buf_add(b, " ", 1);
                    eng_buf_adds(b, x);
                }
            }
            eng_buf_add(b, ".", 1);
        }
        eng_buf_adds(b, "</p>\n");
    }
}

typedef struct link { const char *url, *text; } link;

/* The real links of node id (its golden children) and distractors from the
 * site's filler pool, shuffled together. */
static int page_links(const bench_wwsite *s, int id, const bench_wwsite_opts *o, uint64_t *rng,
                      link **out, int *n_out) {
    const node *me = &s->nodes[id];
    int root = id;
    while (s->nodes[root].parent >= 0) root = s->nodes[root].parent;
    int cap = 64, n = 0;
    link *v = malloc((size_t)cap * sizeof *v);
    if (!v) return ENG_ENOMEM;
    for (int i = id + 1; i < s->n_nodes && s->nodes[i].site == me->site; i++) {
        if (s->nodes[i].parent != id || s->nodes[i].filler) continue;
        if (n == cap) {
            link *t = realloc(v, (size_t)(cap *= 2) * sizeof *t);
            if (!t) { free(v); return ENG_ENOMEM; }
            v = t;
        }
        v[n++] = (link){ s->nodes[i].url, s->nodes[i].anchor };
    }
    int n_real = n, want = o->min_links + rng_int(rng, o->max_links - o->min_links + 1);
    int pool[512], np = 0;
    for (int i = root + 1; i < s->n_nodes && s->nodes[i].site == me->site && np < 512; i++)
        if (s->nodes[i].filler && i != id) pool[np++] = i;
    for (int k = 0; k < want && np > 0; k++) {
        int j = rng_int(rng, np), f = pool[j];
        pool[j] = pool[--np];
        int clash = 0;                            /* never two links with one text */
        for (int r = 0; r < n_real && !clash; r++) clash = !strcasecmp(v[r].text, s->nodes[f].anchor);
        if (clash) { k--; continue; }
        if (n == cap) {
            link *t = realloc(v, (size_t)(cap *= 2) * sizeof *t);
            if (!t) { free(v); return ENG_ENOMEM; }
            v = t;
        }
        v[n++] = (link){ s->nodes[f].url, s->nodes[f].anchor };
    }
    for (int i = n - 1; i > 0; i--) {            /* position says nothing */
        int j = rng_int(rng, i + 1);
        link t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
    *out = v;
    *n_out = n;
    return ENG_OK;
}

static const char *node_title(const bench_wwsite *s, int id, char *buf, size_t cap) {
    const node *n = &s->nodes[id];
    if (n->parent >= 0) return n->anchor;
    const char *h = strstr(n->url, "://");
    h = h ? h + 3 : n->url;
    size_t len = strlen(h);
    if (len && h[len - 1] == '/') len--;
    snprintf(buf, cap, "%.*s - Home", (int)len, h);
    return buf;
}

/* One page's HTML: title, prose, answer paragraphs, links. */
static char *page_html(const bench_wwsite *s, int id, const bench_ww_row *rows,
                       const bench_wwsite_opts *o) {
    const node *n = &s->nodes[id];
    uint64_t rng = o->seed ^ hash_str(n->url);
    char tb[400];
    const char *title = node_title(s, id, tb, sizeof tb);
    link *links = NULL;
    int nl = 0;
    if (page_links(s, id, o, &rng, &links, &nl)) return NULL;
    eng_buf b = {0};
    eng_buf_adds(&b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    sb_esc(&b, title);
    eng_buf_adds(&b, "</title></head>\n<body><main>\n<h1>");
    sb_esc(&b, title);
    eng_buf_adds(&b, "</h1>\n");
    add_prose(&b, &rng, o->filler_words / 2);
    for (int i = 0; i < n->n_answers; i++) {
        /* The answer as a sentence of its own inside a paragraph. */
        const char *a = rows[n->answers[i]].answer;
        size_t al = strlen(a);
        eng_buf_adds(&b, "<p>In brief, here is what was reported. ");
        sb_esc(&b, a);
        if (al && !strchr(".!?", a[al - 1])) eng_buf_add(&b, ".", 1);
        eng_buf_adds(&b, " Further details follow below.</p>\n");
    }
    add_prose(&b, &rng, o->filler_words - o->filler_words / 2);
    eng_buf_adds(&b, "<ul>\n");
    for (int i = 0; i < nl; i++) {
        eng_buf_adds(&b, "<li><a href=\"");
        sb_esc(&b, links[i].url);
        eng_buf_adds(&b, "\">");
        sb_esc(&b, links[i].text);
        eng_buf_adds(&b, "</a></li>\n");
    }
    eng_buf_adds(&b, "</ul>\n</main></body></html>\n");
    free(links);
    return eng_buf_take(&b);
}

/* ----------------------------------------------------------- database */
static int db_exec(sqlite3 *db, const char *sql, eng_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return ENG_OK;
    int rc = eng_seterr(err, ENG_EIO, "site database: %s", msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return rc;
}

/* Writes one page and its search index row (the page's text, as the web
 * environment's own corpus does). */
static int put_page(sqlite3 *db, sqlite3_stmt *ins, sqlite3_stmt *fts, const char *local,
                    const char *title, const char *html, eng_err *err) {
    tool_page p = {0};
    if (tool_html_to_text(html, strlen(html), NULL, &p) != ENG_OK)
        return eng_seterr(err, ENG_ENOMEM, "site: out of memory");
    int rc = ENG_OK;
    sqlite3_reset(ins);
    sqlite3_bind_text(ins, 1, local, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 2, title, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 3, html, -1, SQLITE_STATIC);
    if (sqlite3_step(ins) != SQLITE_DONE) {
        rc = eng_seterr(err, ENG_EIO, "site database: page %.200s: %s", local, sqlite3_errmsg(db));
    } else {
        sqlite3_reset(fts);
        sqlite3_bind_int64(fts, 1, sqlite3_last_insert_rowid(db));
        sqlite3_bind_text(fts, 2, title, -1, SQLITE_STATIC);
        sqlite3_bind_text(fts, 3, p.text ? p.text : "", -1, SQLITE_STATIC);
        if (sqlite3_step(fts) != SQLITE_DONE)
            rc = eng_seterr(err, ENG_EIO, "site database: index %.200s: %s", local, sqlite3_errmsg(db));
    }
    free(p.title);
    free(p.text);
    for (int i = 0; i < p.n_links; i++) free(p.links[i].url), free(p.links[i].text);
    free(p.links);
    return rc;
}

static int cmp_map(const void *a, const void *b) {
    return strcmp(((const sitemap *)a)->local, ((const sitemap *)b)->local);
}

static int write_pages(bench_wwsite *s, const char *db_path, const bench_ww_row *rows,
                       const bench_wwsite_opts *o, eng_err *err) {
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        int rc = eng_seterr(err, ENG_EIO, "cannot open %s: %s", db_path, db ? sqlite3_errmsg(db) : "no memory");
        sqlite3_close(db);
        return rc;
    }
    sqlite3_busy_timeout(db, 5000);
    /* Same schema as the web environment's corpus (tool.h). */
    int rc = db_exec(db, "CREATE TABLE IF NOT EXISTS pages(url TEXT PRIMARY KEY, title TEXT NOT NULL,"
                     " body_html TEXT NOT NULL);"
                     "CREATE VIRTUAL TABLE IF NOT EXISTS pages_fts USING fts5(title, body);"
                     "BEGIN; DELETE FROM pages; DELETE FROM pages_fts;", err);
    sqlite3_stmt *ins = NULL, *fts = NULL;
    if (!rc && (sqlite3_prepare_v2(db, "INSERT INTO pages(url, title, body_html) VALUES(?, ?, ?)", -1, &ins, NULL) ||
                sqlite3_prepare_v2(db, "INSERT INTO pages_fts(rowid, title, body) VALUES(?, ?, ?)", -1, &fts, NULL)))
        rc = eng_seterr(err, ENG_EIO, "site database: %s", sqlite3_errmsg(db));
    s->map = rc ? NULL : calloc((size_t)s->n_nodes + 1, sizeof *s->map);
    if (!rc && !s->map) rc = eng_seterr(err, ENG_ENOMEM, "site: out of memory");
    for (int i = 0; i < s->n_nodes && !rc; i++) {
        char *local = NULL, tb[400];
        rc = bench_ww_local_path(s->nodes[i].url, &local, err);
        char *html = rc ? NULL : page_html(s, i, rows, o);
        if (!rc && !html) rc = eng_seterr(err, ENG_ENOMEM, "site: out of memory");
        if (!rc) rc = put_page(db, ins, fts, local, node_title(s, i, tb, sizeof tb), html, err);
        free(html);
        if (!rc) {
            s->map[s->n_map].local = local;
            s->map[s->n_map].pub = strdup(s->nodes[i].url);
            if (!s->map[s->n_map++].pub) rc = eng_seterr(err, ENG_ENOMEM, "site: out of memory");
        } else {
            free(local);
        }
    }
    sqlite3_finalize(ins);
    sqlite3_finalize(fts);
    if (!rc) rc = db_exec(db, "COMMIT;", err);
    else sqlite3_exec(db, "ROLLBACK;", NULL, NULL, NULL);
    sqlite3_close(db);
    if (!rc) qsort(s->map, (size_t)s->n_map, sizeof *s->map, cmp_map);
    return rc;
}

int bench_wwsite_build(const char *db_path, bench_ww_row *rows, int n_rows,
                       const bench_wwsite_opts *opts, bench_wwsite **out, eng_err *err) {
    *out = NULL;
    if (!db_path || !rows || n_rows <= 0) return eng_seterr(err, ENG_EINVAL, "bench_wwsite_build: no rows");
    bench_wwsite_opts o = { .seed = 1 };
    if (opts) o = *opts;
    if (o.min_links <= 0) o.min_links = 8;
    if (o.max_links < o.min_links) o.max_links = o.min_links > 20 ? o.min_links : 20;
    if (o.n_filler <= 0) o.n_filler = 40;
    if (o.filler_words <= 0) o.filler_words = 300;
    bench_wwsite *s = calloc(1, sizeof *s);
    int *idx = malloc((size_t)n_rows * sizeof *idx), *done = calloc((size_t)n_rows, sizeof *done);
    int rc = s && idx && done ? ENG_OK : eng_seterr(err, ENG_ENOMEM, "site: out of memory");
    /* Sites in order of first appearance; a site's rows in dataset order. */
    for (int i = 0, site = 0; i < n_rows && !rc; i++) {
        if (done[i]) continue;
        int m = 0;
        for (int j = i; j < n_rows; j++)
            if (!done[j] && !strcmp(rows[j].root_url, rows[i].root_url)) idx[m++] = j, done[j] = 1;
        int root = s->n_nodes;
        rc = build_tree(s, site, rows, idx, m);
        if (rc) { eng_seterr(err, rc, "site %s: cannot build its pages", rows[i].root_url); break; }
        rc = build_fillers(s, site, root, rows, n_rows, rows[i].root_url, o.n_filler, o.seed);
        if (rc) { eng_seterr(err, rc, "site %s: cannot build its filler pages", rows[i].root_url); break; }
        site++;
    }
    free(idx);
    free(done);
    if (!rc) rc = write_pages(s, db_path, rows, &o, err);
    if (rc) {
        bench_wwsite_free(s);
        return rc;
    }
    *out = s;
    return ENG_OK;
}

int bench_wwsite_n_pages(const bench_wwsite *s) { return s ? s->n_map : 0; }

const char *bench_wwsite_public_url(const bench_wwsite *s, const char *local_path) {
    if (!s || !local_path) return NULL;
    sitemap key = { (char *)local_path, NULL };
    const sitemap *m = bsearch(&key, s->map, (size_t)s->n_map, sizeof *s->map, cmp_map);
    return m ? m->pub : NULL;
}
