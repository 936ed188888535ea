/* corpus.c — the web environment's pages in SQLite: a synthetic,
 * link-rich site built from a seed, an importer for real HTML files, and the
 * FTS5 index that backs /search. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sqlite3.h>
#include "bench_internal.h"
#include "tool.h"

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS pages(url TEXT PRIMARY KEY, title TEXT NOT NULL,"
    " body_html TEXT NOT NULL);"
    "CREATE VIRTUAL TABLE IF NOT EXISTS pages_fts USING fts5(title, body);";

int bench_corpus_open(const char *path, int readonly, sqlite3 **db, eng_err *err) {
    *db = NULL;
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (!path) return eng_seterr(err, ENG_EINVAL, "no corpus database path");
    if (sqlite3_open_v2(path, db, flags | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        eng_seterr(err, ENG_EIO, "cannot open corpus %s: %s", path,
                   *db ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return ENG_EIO;
    }
    sqlite3_busy_timeout(*db, 5000);
    char *msg = NULL;
    if (!readonly && sqlite3_exec(*db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK) {
        eng_seterr(err, ENG_EIO, "corpus %s: %s", path, msg ? msg : "schema failed");
        sqlite3_free(msg);
        sqlite3_close(*db);
        *db = NULL;
        return ENG_EIO;
    }
    return ENG_OK;
}

static int db_fail(sqlite3 *db, eng_err *err, const char *what) {
    return eng_seterr(err, ENG_EIO, "corpus: %s: %s", what, sqlite3_errmsg(db));
}

/* Inserts or replaces one page and its index row (same rowid). */
int bench_corpus_put(sqlite3 *db, const char *url, const char *title, const char *html,
                    eng_err *err) {
    tool_page p = {0};
    if (tool_html_to_text(html, strlen(html), NULL, &p)) return eng_seterr(err, ENG_ENOMEM, "out of memory");
    if (!title || !title[0]) title = p.title;
    sqlite3_stmt *st = NULL;
    int rc = ENG_OK;
    sqlite3_int64 rowid = 0;
    if (sqlite3_prepare_v2(db, "SELECT rowid FROM pages WHERE url = ?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, url, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) rowid = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    const char *sql1 = rowid ? "UPDATE pages SET title = ?2, body_html = ?3 WHERE rowid = ?4"
                             : "INSERT INTO pages(url, title, body_html) VALUES(?1, ?2, ?3)";
    if (sqlite3_prepare_v2(db, sql1, -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(db, err, "prepare");
    } else {
        sqlite3_bind_text(st, 1, url, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, title, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, html, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, rowid);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(db, err, "insert page");
        if (!rowid) rowid = sqlite3_last_insert_rowid(db);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (!rc && sqlite3_prepare_v2(db, "DELETE FROM pages_fts WHERE rowid = ?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, rowid);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (!rc && sqlite3_prepare_v2(db, "INSERT INTO pages_fts(rowid, title, body) VALUES(?, ?, ?)",
                                  -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, rowid);
        sqlite3_bind_text(st, 2, title, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, p.text, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(db, err, "index page");
    } else if (!rc) {
        rc = db_fail(db, err, "prepare index");
    }
    sqlite3_finalize(st);
    free(p.title);
    free(p.text);
    for (int i = 0; i < p.n_links; i++) free(p.links[i].url), free(p.links[i].text);
    free(p.links);
    return rc;
}

/* ------------------------------------------------------- synthetic site */
static const char *const SYL[32] = {
    "vel", "mor", "ka", "dris", "tan", "lo", "ser", "quen", "bar", "ith", "nol", "ga",
    "rho", "mint", "sa", "dev", "or", "pel", "zu", "cam", "lin", "thar", "e", "wen",
    "fo", "rak", "si", "bel", "un", "dor", "ya", "cress",
};

typedef struct topic { const char *slug, *label, *noun; } topic;
static const topic TOPICS[] = {
    {"rivers", "Rivers", "River"}, {"mountains", "Mountains", "Peak"},
    {"towns", "Towns", "Town"}, {"observatories", "Observatories", "Observatory"},
    {"ships", "Ships", "(ship)"}, {"festivals", "Festivals", "Festival"},
    {"instruments", "Instruments", "Harp"}, {"libraries", "Libraries", "Library"},
};
#define N_TOPICS ((int)(sizeof TOPICS / sizeof TOPICS[0]))

static const char *const ADJ[] = {"ancient", "quiet", "celebrated", "remote", "restored",
                                  "northern", "coastal", "famous", "modest", "unusual"};
static const char *const PEOPLE[] = {"surveyors", "monks", "traders", "engineers", "farmers",
                                     "astronomers", "sailors", "weavers"};

/* Page i's name: three syllables whose choice is a bijection of i (so every
 * page below 32768 has its own name), scrambled by the seed. */
void bench_corpus_page_name(uint64_t seed, int i, char *buf, size_t cap) {
    uint64_t s = seed;
    uint64_t mul = (eng_rng_next(&s) | 1) & 32767, off = eng_rng_next(&s) & 32767;
    unsigned v = (unsigned)(((uint64_t)(unsigned)i * mul + off) & 32767);
    snprintf(buf, cap, "%s%s%s", SYL[v & 31], SYL[(v >> 5) & 31], SYL[(v >> 10) & 31]);
    if (buf[0] >= 'a' && buf[0] <= 'z') buf[0] = (char)(buf[0] - 'a' + 'A');
}

static int page_topic(uint64_t seed, int i) {
    uint64_t s = seed ^ (0x51ED270B27ull * (uint64_t)(i + 1));
    return (int)(eng_rng_next(&s) % N_TOPICS);
}

static void page_title(uint64_t seed, int i, char *buf, size_t cap) {
    char name[64];
    bench_corpus_page_name(seed, i, name, sizeof name);
    const topic *t = &TOPICS[page_topic(seed, i)];
    snprintf(buf, cap, "%s %s", name, t->noun);
}

#define PICK(arr, s) (arr[eng_rng_next(s) % (sizeof arr / sizeof arr[0])])

static int link_to(eng_buf *b, uint64_t seed, int j) {
    char title[128];
    page_title(seed, j, title, sizeof title);
    return eng_buf_printf(b, "<a href=\"/page/%d\">%s</a>", j, title);
}

/* One paragraph of facts about page i, with links to other pages. */
static int paragraph(eng_buf *b, uint64_t seed, uint64_t *s, int i, int n, int *links_left) {
    char name[64];
    bench_corpus_page_name(seed, i, name, sizeof name);
    int rc = eng_buf_adds(b, "<p>");
    int n_sent = 3 + (int)(eng_rng_next(s) % 3);
    for (int k = 0; k < n_sent; k++) {
        int year = 1500 + (int)(eng_rng_next(s) % 520), num = 2 + (int)(eng_rng_next(s) % 9000);
        switch (eng_rng_next(s) % 9) {
        case 0: rc |= eng_buf_printf(b, "%s was first recorded in %d by %s %s. ", name, year,
                                      PICK(ADJ, s), PICK(PEOPLE, s)); break;
        case 1: rc |= eng_buf_printf(b, "About %d people visit %s each year. ", num, name); break;
        case 2: rc |= eng_buf_printf(b, "The %s records of %s list %d entries from %d. ",
                                      PICK(ADJ, s), name, num, year); break;
        case 3: rc |= eng_buf_printf(b, "Local %s say %s is older than it looks. ",
                                      PICK(PEOPLE, s), name); break;
        case 4: rc |= eng_buf_printf(b, "In %d the %s of %s measured %d units. ", year,
                                      PICK(PEOPLE, s), name, num); break;
        case 5: rc |= eng_buf_printf(b, "Its %s archive holds %d letters written before %d. ",
                                      PICK(ADJ, s), num, year); break;
        case 6: rc |= eng_buf_printf(b, "%s lies %d km from the nearest %s settlement. ", name,
                                      2 + num % 400, PICK(ADJ, s)); break;
        default:
            if (*links_left > 0 && n > 1) {
                int j = (int)(eng_rng_next(s) % (uint64_t)n);
                if (j == i) j = (j + 1) % n;
                rc |= eng_buf_printf(b, "It is often compared with ");
                rc |= link_to(b, seed, j);
                rc |= eng_buf_adds(b, ". ");
                (*links_left)--;
            } else {
                rc |= eng_buf_printf(b, "Little else is known about %s. ", name);
            }
        }
    }
    return rc | eng_buf_adds(b, "</p>\n");
}

static int gen_page(eng_buf *b, uint64_t seed, int i, int n) {
    char title[128];
    uint64_t s = seed ^ (0x9E3779B9ull * (uint64_t)(i + 7));
    page_title(seed, i, title, sizeof title);
    const topic *t = &TOPICS[page_topic(seed, i)];
    int links = 4 + (int)(eng_rng_next(&s) % 7), n_par = 2 + (int)(eng_rng_next(&s) % 4);
    int rc = eng_buf_printf(b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title>"
                             "<style>body{font-family:serif}</style></head>\n<body>\n"
                             "<nav><a href=\"/\">Home</a> | <a href=\"/topic/%s\">%s</a></nav>\n"
                             "<h1>%s</h1>\n", title, t->slug, t->label, title);
    for (int k = 0; k < n_par; k++) rc |= paragraph(b, seed, &s, i, n, &links);
    rc |= eng_buf_adds(b, "<h2>See also</h2>\n<ul>\n");
    for (int k = 0; k < links && n > 1; k++) {   /* the rest of the page's links */
        int j = (int)(eng_rng_next(&s) % (uint64_t)n);
        if (j == i) j = (j + 1) % n;
        rc |= eng_buf_adds(b, "<li>");
        rc |= link_to(b, seed, j);
        rc |= eng_buf_adds(b, "</li>\n");
    }
    rc |= eng_buf_adds(b, "</ul>\n<script>var views = 0;</script>\n</body></html>\n");
    return rc;
}

static int gen_hub(eng_buf *b, uint64_t seed, int t, int n) {
    int rc = eng_buf_printf(b, "<!DOCTYPE html>\n<html><head><title>%s</title></head><body>\n"
                             "<nav><a href=\"/\">Home</a></nav>\n<h1>%s</h1>\n<ul>\n",
                             TOPICS[t].label, TOPICS[t].label);
    for (int i = 0; i < n; i++)
        if (page_topic(seed, i) == t) {
            rc |= eng_buf_adds(b, "<li>");
            rc |= link_to(b, seed, i);
            rc |= eng_buf_adds(b, "</li>\n");
        }
    return rc | eng_buf_adds(b, "</ul>\n</body></html>\n");
}

static int gen_home(eng_buf *b) {
    int rc = eng_buf_adds(b, "<!DOCTYPE html>\n<html><head><title>Atlas of Invented Places</title>"
                              "</head><body>\n<h1>Atlas of Invented Places</h1>\n<p>A generated "
                              "encyclopedia. Browse by topic:</p>\n<ul>\n");
    for (int t = 0; t < N_TOPICS; t++)
        rc |= eng_buf_printf(b, "<li><a href=\"/topic/%s\">%s</a></li>\n", TOPICS[t].slug, TOPICS[t].label);
    return rc | eng_buf_adds(b, "</ul>\n</body></html>\n");
}

static int exec_sql(sqlite3 *db, const char *sql, eng_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return ENG_OK;
    eng_seterr(err, ENG_EIO, "corpus: %s", msg ? msg : sql);
    sqlite3_free(msg);
    return ENG_EIO;
}

int bench_corpus_generate(const char *db_path, int n_pages, uint64_t seed, eng_err *err) {
    if (n_pages < 1 || n_pages > 32768)
        return eng_seterr(err, ENG_EINVAL, "corpus size %d outside 1..32768", n_pages);
    sqlite3 *db;
    int rc = bench_corpus_open(db_path, 0, &db, err);
    if (rc) return rc;
    rc = exec_sql(db, "BEGIN; DELETE FROM pages; DELETE FROM pages_fts;", err);
    eng_buf b = {0};
    char url[64];
    for (int i = -1 - N_TOPICS; i < n_pages && !rc; i++) {
        b.n = 0;
        int t = i + 1 + N_TOPICS;  /* home, then the hubs, then the pages */
        int brc = i == -1 - N_TOPICS ? gen_home(&b) : i < 0 ? gen_hub(&b, seed, t - 1, n_pages)
                                                            : gen_page(&b, seed, i, n_pages);
        if (i == -1 - N_TOPICS) snprintf(url, sizeof url, "/");
        else if (i < 0) snprintf(url, sizeof url, "/topic/%s", TOPICS[t - 1].slug);
        else snprintf(url, sizeof url, "/page/%d", i);
        rc = brc ? eng_seterr(err, ENG_ENOMEM, "out of memory") : bench_corpus_put(db, url, NULL, b.p, err);
    }
    eng_buf_free(&b);
    if (!rc) rc = exec_sql(db, "COMMIT;", err);
    else sqlite3_exec(db, "ROLLBACK;", NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

/* ------------------------------------------------------------ importing */
typedef struct importer {
    sqlite3 *db;
    const char *root, *prefix;
    int max_files, n;
    eng_err *err;
} importer;

static int has_html_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".html") || !strcasecmp(dot, ".htm"));
}

static int import_file(importer *im, const char *path, const char *rel) {
    FILE *f = fopen(path, "rb");
    if (!f) return ENG_OK;   /* unreadable files are skipped */
    char *buf = malloc((1u << 20) + 1);
    size_t n = buf ? fread(buf, 1, 1u << 20, f) : 0;
    int too_big = fgetc(f) != EOF;
    fclose(f);
    if (!buf) return eng_seterr(im->err, ENG_ENOMEM, "out of memory");
    buf[n] = 0;
    int rc = ENG_OK;
    if (!too_big && strlen(buf) == n) {   /* no NUL bytes: text */
        eng_buf url = {0};
        if (eng_buf_printf(&url, "%s/%s", im->prefix, rel)) {
            rc = eng_seterr(im->err, ENG_ENOMEM, "out of memory");
        } else {
            rc = bench_corpus_put(im->db, url.p, NULL, buf, im->err);
            if (!rc) im->n++;
        }
        eng_buf_free(&url);
    }
    free(buf);
    return rc;
}

static int import_walk(importer *im, const char *dir, const char *rel, int depth) {
    if (depth > 16) return ENG_OK;
    DIR *d = opendir(dir);
    if (!d) return ENG_OK;
    int rc = ENG_OK;
    struct dirent *e;
    while (!rc && (e = readdir(d)) && (im->max_files <= 0 || im->n < im->max_files)) {
        if (e->d_name[0] == '.') continue;
        eng_buf path = {0}, r = {0};
        if (eng_buf_printf(&path, "%s/%s", dir, e->d_name) ||
            eng_buf_printf(&r, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name)) {
            rc = eng_seterr(im->err, ENG_ENOMEM, "out of memory");
        } else {
            struct stat lst, st;
            if (lstat(path.p, &lst) == 0 && S_ISDIR(lst.st_mode))   /* no symlinked dirs: no loops */
                rc = import_walk(im, path.p, r.p, depth + 1);
            else if (stat(path.p, &st) == 0 && S_ISREG(st.st_mode) && has_html_ext(e->d_name))
                rc = import_file(im, path.p, r.p);
        }
        eng_buf_free(&path);
        eng_buf_free(&r);
    }
    closedir(d);
    return rc;
}

int bench_corpus_import_dir(const char *db_path, const char *dir, const char *prefix,
                           int max_files, int *n_imported, eng_err *err) {
    if (n_imported) *n_imported = 0;
    struct stat st;
    if (!dir || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return eng_seterr(err, ENG_EIO, "not a directory: %s", dir ? dir : "(none)");
    if (prefix && prefix[0] && prefix[0] != '/')
        return eng_seterr(err, ENG_EINVAL, "URL prefix must start with '/': %s", prefix);
    sqlite3 *db;
    int rc = bench_corpus_open(db_path, 0, &db, err);
    if (rc) return rc;
    importer im = {db, dir, prefix ? prefix : "", max_files, 0, err};
    rc = exec_sql(db, "BEGIN;", err);
    if (!rc) rc = import_walk(&im, dir, "", 0);
    if (!rc) rc = exec_sql(db, "COMMIT;", err);
    else sqlite3_exec(db, "ROLLBACK;", NULL, NULL, NULL);
    sqlite3_close(db);
    if (n_imported) *n_imported = rc ? 0 : im.n;
    return rc;
}

/* --------------------------------------------------------------- search */
/* Query words become an FTS5 OR of quoted terms: user text can never be
 * FTS5 syntax, and bm25 ranks pages matching more words first. */
static char *fts_query(const char *q) {
    eng_buf b = {0};
    int rc = eng_buf_add(&b, "", 0), n = 0;
    for (const char *p = q; *p && n < 32;) {
        while (*p && !((unsigned char)*p >= 0x80 || (*p >= '0' && *p <= '9') ||
                       ((*p | 32) >= 'a' && (*p | 32) <= 'z')))
            p++;
        const char *st = p;
        while ((unsigned char)*p >= 0x80 || (*p >= '0' && *p <= '9') || ((*p | 32) >= 'a' && (*p | 32) <= 'z'))
            p++;
        if (p > st) {
            rc |= eng_buf_printf(&b, "%s\"%.*s\"", n ? " OR " : "", (int)(p - st), st);
            n++;
        }
    }
    if (rc) {
        eng_buf_free(&b);
        return NULL;
    }
    return eng_buf_take(&b);
}

/* Snippets come from multi-line page text; results read better on one line. */
static char *one_line(const char *s) {
    eng_buf b = {0};
    int rc = eng_buf_add(&b, "", 0), space = 0;
    for (; s && *s && !rc; s++) {
        if (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') {
            space = b.n > 0;
            continue;
        }
        if (space) rc |= eng_buf_addc(&b, ' ');
        space = 0;
        rc |= eng_buf_addc(&b, *s);
    }
    if (rc) {
        eng_buf_free(&b);
        return NULL;
    }
    return eng_buf_take(&b);
}

int bench_corpus_search(sqlite3 *db, const char *q, int k, const char *base_url, cJSON **out,
                       eng_err *err) {
    *out = cJSON_CreateArray();
    char *match = fts_query(q ? q : "");
    if (!*out || !match) {
        free(match);
        cJSON_Delete(*out);
        *out = NULL;
        return eng_seterr(err, ENG_ENOMEM, "out of memory");
    }
    int rc = ENG_OK;
    sqlite3_stmt *st = NULL;
    if (match[0]) {
        const char *sql =
            "SELECT p.url, p.title, snippet(pages_fts, 1, '', '', '...', 24) FROM pages_fts "
            "JOIN pages p ON p.rowid = pages_fts.rowid WHERE pages_fts MATCH ? "
            "ORDER BY bm25(pages_fts, 5.0, 1.0) LIMIT ?";
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
            rc = db_fail(db, err, "search");
        } else {
            sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 2, k);
            int s;
            while ((s = sqlite3_step(st)) == SQLITE_ROW) {
                cJSON *r = cJSON_CreateObject();
                eng_buf url = {0};
                eng_buf_printf(&url, "%s%s", base_url ? base_url : "", (const char *)sqlite3_column_text(st, 0));
                cJSON_AddStringToObject(r, "title", (const char *)sqlite3_column_text(st, 1));
                cJSON_AddStringToObject(r, "url", url.p ? url.p : "");
                char *snip = one_line((const char *)sqlite3_column_text(st, 2));
                cJSON_AddStringToObject(r, "snippet", snip ? snip : "");
                free(snip);
                cJSON_AddItemToArray(*out, r);
                eng_buf_free(&url);
            }
            if (s != SQLITE_DONE) rc = db_fail(db, err, "search");
        }
        sqlite3_finalize(st);
    }
    free(match);
    return rc;
}
