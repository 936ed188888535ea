/* tool_html.c — HTML to readable text plus the page's links.  A single
 * forgiving pass over the bytes: no DOM, no error on broken markup. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "tool_internal.h"

#define MAX_LINKS 1000

typedef struct writer {
    eng_buf out;
    int pend_space, pend_nl;   /* whitespace owed before the next visible char */
    int err;
} writer;

/* Text writer that collapses whitespace: runs of spaces become one space,
 * block boundaries become one or two newlines, nothing at the edges. */
static void w_space(writer *w) { w->pend_space = 1; }
static void w_newline(writer *w, int n) { if (n > w->pend_nl) w->pend_nl = n; }

static void w_put(writer *w, const char *s, size_t n) {
    if (w->out.n) {
        if (w->pend_nl) w->err |= eng_buf_add(&w->out, "\n\n", (size_t)w->pend_nl);
        else if (w->pend_space) w->err |= eng_buf_addc(&w->out, ' ');
    }
    w->pend_nl = w->pend_space = 0;
    w->err |= eng_buf_add(&w->out, s, n);
}

/* ---------------------------------------------------------------- entities */
typedef struct entity { const char *name; unsigned cp; } entity;
static const entity ENTITIES[] = {
    {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}, {"nbsp", 0xA0},
    {"ndash", 0x2013}, {"mdash", 0x2014}, {"hellip", 0x2026}, {"copy", 0xA9}, {"reg", 0xAE},
    {"trade", 0x2122}, {"laquo", 0xAB}, {"raquo", 0xBB}, {"lsquo", 0x2018}, {"rsquo", 0x2019},
    {"ldquo", 0x201C}, {"rdquo", 0x201D}, {"middot", 0xB7}, {"bull", 0x2022}, {"euro", 0x20AC},
    {"pound", 0xA3}, {"yen", 0xA5}, {"cent", 0xA2}, {"times", 0xD7}, {"divide", 0xF7},
    {"deg", 0xB0}, {"plusmn", 0xB1}, {"sect", 0xA7}, {"para", 0xB6}, {"shy", 0xAD},
    {"eacute", 0xE9}, {"egrave", 0xE8}, {"aacute", 0xE1}, {"agrave", 0xE0}, {"uuml", 0xFC},
    {"ouml", 0xF6}, {"auml", 0xE4}, {"szlig", 0xDF}, {"ccedil", 0xE7}, {"ntilde", 0xF1},
    {"larr", 0x2190}, {"rarr", 0x2192}, {"uarr", 0x2191}, {"darr", 0x2193},
};

/* Decodes the entity at s (s[0] == '&', n bytes available).  Returns bytes
 * consumed and the code point, or 0 when it is not an entity we know. */
static size_t entity_at(const char *s, size_t n, unsigned *cp) {
    size_t i = 1;
    if (i < n && s[i] == '#') {
        int hex = i + 1 < n && (s[i + 1] == 'x' || s[i + 1] == 'X');
        i += 1 + (size_t)hex;
        unsigned long v = 0;
        size_t st = i;
        while (i < n && i - st < 8 && (hex ? isxdigit((unsigned char)s[i]) : isdigit((unsigned char)s[i]))) {
            int d = isdigit((unsigned char)s[i]) ? s[i] - '0' : (tolower((unsigned char)s[i]) - 'a' + 10);
            v = v * (hex ? 16 : 10) + (unsigned long)d;
            i++;
        }
        if (i == st) return 0;
        if (i < n && s[i] == ';') i++;
        *cp = v == 0 || v > 0x10FFFF ? 0xFFFD : (unsigned)v;
        return i;
    }
    while (i < n && i < 10 && isalnum((unsigned char)s[i])) i++;
    for (size_t k = 0; k < sizeof ENTITIES / sizeof ENTITIES[0]; k++) {
        size_t L = strlen(ENTITIES[k].name);
        if (L == i - 1 && !strncmp(s + 1, ENTITIES[k].name, L)) {
            *cp = ENTITIES[k].cp;
            return i < n && s[i] == ';' ? i + 1 : i;
        }
    }
    return 0;
}

/* Writes text (entities decoded, whitespace collapsed). */
static void w_text(writer *w, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
            w_space(w);
            i++;
            continue;
        }
        unsigned cp;
        size_t used = c == '&' ? entity_at(s + i, n - i, &cp) : 0;
        if (used) {
            i += used;
            if (cp == 0xA0) w_space(w);
            else if (cp != 0xAD) {
                eng_buf u = {0};
                w->err |= tool_add_utf8(&u, cp);
                if (u.p) w_put(w, u.p, u.n);
                eng_buf_free(&u);
            }
            continue;
        }
        size_t j = i + 1;   /* a run of ordinary bytes */
        while (j < n && s[j] != '&' && !strchr(" \t\n\r\f", s[j])) j++;
        w_put(w, s + i, j - i);
        i = j;
    }
}

/* ---------------------------------------------------------------- tags */
typedef struct tag {
    char name[16];
    int closing;
    const char *href; size_t href_len;   /* href attribute of a / base */
    size_t end;                          /* offset just past '>' */
} tag;

/* Parses the tag starting at html[i] == '<'; returns 0 when it is not one. */
static int parse_tag(const char *h, size_t n, size_t i, tag *t) {
    memset(t, 0, sizeof *t);
    size_t j = i + 1;
    if (j < n && h[j] == '/') t->closing = 1, j++;
    if (j >= n || !isalpha((unsigned char)h[j])) return 0;
    size_t k = 0;
    while (j < n && (isalnum((unsigned char)h[j]) || h[j] == '-' || h[j] == ':')) {
        if (k + 1 < sizeof t->name) t->name[k++] = (char)tolower((unsigned char)h[j]);
        j++;
    }
    t->name[k] = 0;
    while (j < n && h[j] != '>') {          /* attributes */
        if (isspace((unsigned char)h[j]) || h[j] == '/') { j++; continue; }
        size_t an = j;
        while (j < n && !isspace((unsigned char)h[j]) && h[j] != '=' && h[j] != '>') j++;
        size_t alen = j - an;
        while (j < n && isspace((unsigned char)h[j])) j++;
        if (j >= n || h[j] != '=') continue;
        j++;
        while (j < n && isspace((unsigned char)h[j])) j++;
        size_t vs, ve;
        if (j < n && (h[j] == '"' || h[j] == '\'')) {
            char q = h[j++];
            vs = j;
            while (j < n && h[j] != q) j++;
            ve = j;
            if (j < n) j++;
        } else {
            vs = j;
            while (j < n && !isspace((unsigned char)h[j]) && h[j] != '>') j++;
            ve = j;
        }
        if (alen == 4 && !strncasecmp(h + an, "href", 4)) {
            t->href = h + vs;
            t->href_len = ve - vs;
        }
    }
    t->end = j < n ? j + 1 : n;
    return 1;
}

/* Offset of the "</name" that closes a raw-text element, or n. */
static size_t find_close(const char *h, size_t n, size_t i, const char *name) {
    size_t L = strlen(name);
    for (; i + 2 + L <= n; i++)
        if (h[i] == '<' && h[i + 1] == '/' && !strncasecmp(h + i + 2, name, L)) return i;
    return n;
}

/* Offset just past the "</name ...>" that closes a raw-text element. */
static size_t skip_element(const char *h, size_t n, size_t i, const char *name) {
    size_t c = find_close(h, n, i, name);
    const char *gt = c < n ? memchr(h + c, '>', n - c) : NULL;
    return gt ? (size_t)(gt - h) + 1 : n;
}

static int in_list(const char *name, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(name, *list)) return 1;
    return 0;
}

static const char *const SKIP_TAGS[] = {"script", "style", "noscript", "template", "svg",
                                        "iframe", "object", NULL};
static const char *const PARA_TAGS[] = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "table",
                                        "ul", "ol", "dl", "pre", "blockquote", "section",
                                        "article", "header", "footer", "nav", "main", "aside",
                                        "figure", "form", "hr", NULL};
static const char *const LINE_TAGS[] = {"br", "div", "tr", "dt", "dd", "figcaption", "li",
                                        "option", "address", "details", "summary", "caption",
                                        "fieldset", "legend", "body", "title", NULL};

/* ---------------------------------------------------------------- links */
typedef struct linkset {
    tool_link *v;
    int n, cap, err;
} linkset;

static void add_link(linkset *ls, char *url, const char *text, size_t tlen) {
    for (int i = 0; i < ls->n; i++)
        if (!strcmp(ls->v[i].url, url)) {
            if (!ls->v[i].text[0] && tlen) {
                char *t = tool_strndup(text, tlen);
                if (t) free(ls->v[i].text), ls->v[i].text = t;
            }
            free(url);
            return;
        }
    if (ls->n == MAX_LINKS) {
        free(url);
        return;
    }
    if (ls->n == ls->cap) {
        int cap = ls->cap ? 2 * ls->cap : 16;
        tool_link *v = realloc(ls->v, (size_t)cap * sizeof *v);
        if (!v) {
            ls->err = 1;
            free(url);
            return;
        }
        ls->v = v;
        ls->cap = cap;
    }
    char *t = tool_strndup(text, tlen);
    if (!t) {
        ls->err = 1;
        free(url);
        return;
    }
    ls->v[ls->n].url = url;
    ls->v[ls->n++].text = t;
}

/* Text of an element such as <title>, decoded and collapsed. */
static char *element_text(const char *h, size_t from, size_t to) {
    writer w = {0};
    w.err |= eng_buf_add(&w.out, "", 0);
    w_text(&w, h + from, to > from ? to - from : 0);
    if (w.err) {
        eng_buf_free(&w.out);
        return NULL;
    }
    return eng_buf_take(&w.out);
}

int tool_html_to_text(const char *h, size_t n, const char *base_url, tool_page *p) {
    writer w = {0};
    linkset ls = {0};
    char *base = tool_strdup(base_url), *href = NULL, *title = NULL;
    size_t a_start = 0, i = 0;
    w.err |= eng_buf_add(&w.out, "", 0);
    while (i < n && !w.err) {
        if (h[i] != '<') {
            const char *lt = memchr(h + i, '<', n - i);
            size_t j = lt ? (size_t)(lt - h) : n;
            w_text(&w, h + i, j - i);
            i = j;
            continue;
        }
        if (i + 3 < n && !strncmp(h + i, "<!--", 4)) {
            size_t j = i + 4;
            while (j + 2 < n && strncmp(h + j, "-->", 3)) j++;
            i = j + 3 <= n ? j + 3 : n;
            continue;
        }
        if (i + 1 < n && (h[i + 1] == '!' || h[i + 1] == '?')) {
            const char *gt = memchr(h + i, '>', n - i);
            i = gt ? (size_t)(gt - h) + 1 : n;
            continue;
        }
        tag t;
        if (!parse_tag(h, n, i, &t)) {
            w_text(&w, "<", 1);
            i++;
            continue;
        }
        i = t.end;
        if (!t.closing && in_list(t.name, SKIP_TAGS)) {
            i = skip_element(h, n, i, t.name);
        } else if (!t.closing && !strcmp(t.name, "title")) {
            if (!title) title = element_text(h, i, find_close(h, n, i, "title"));
            i = skip_element(h, n, i, "title");
        } else if (!strcmp(t.name, "a")) {
            if (href) {   /* close the previous anchor, also on a new <a> */
                char *url = tool_url_resolve(base, href);
                size_t s = a_start;
                while (s < w.out.n && (w.out.p[s] == ' ' || w.out.p[s] == '\n')) s++;
                if (url) add_link(&ls, url, w.out.p + s, w.out.n - s);
                free(href);
                href = NULL;
            }
            if (!t.closing && t.href) {
                href = element_text(t.href, 0, t.href_len);   /* hrefs hold entities (&amp;) */
                a_start = w.out.n;
            }
        } else if (!t.closing && !strcmp(t.name, "base") && t.href) {
            char *b = element_text(t.href, 0, t.href_len);
            char *abs = b ? tool_url_resolve(base, b) : NULL;
            if (abs) free(base), base = abs;
            free(b);
        } else if (!t.closing && !strcmp(t.name, "li")) {
            w_newline(&w, 1);
            w_put(&w, "-", 1);
            w_space(&w);
        } else if (in_list(t.name, PARA_TAGS)) {
            w_newline(&w, 2);
        } else if (in_list(t.name, LINE_TAGS)) {
            w_newline(&w, 1);
        } else {
            w_space(&w);
        }
    }
    if (href) {   /* an anchor left open at the end */
        char *url = tool_url_resolve(base, href);
        while (a_start < w.out.n && (w.out.p[a_start] == ' ' || w.out.p[a_start] == '\n')) a_start++;
        if (url) add_link(&ls, url, w.out.p + a_start, w.out.n - a_start);
    }
    free(href);
    free(base);
    if (!title) title = tool_strdup("");
    if (w.err || ls.err || !title) {
        free(title);
        eng_buf_free(&w.out);
        for (int k = 0; k < ls.n; k++) free(ls.v[k].url), free(ls.v[k].text);
        free(ls.v);
        return ENG_ENOMEM;
    }
    while (w.out.n && (w.out.p[w.out.n - 1] == ' ' || w.out.p[w.out.n - 1] == '\n'))
        w.out.p[--w.out.n] = 0;
    free(p->title);
    free(p->text);
    p->title = title;
    p->text = eng_buf_take(&w.out);
    for (int k = 0; k < p->n_links; k++) free(p->links[k].url), free(p->links[k].text);
    free(p->links);
    p->links = ls.v;
    p->n_links = ls.n;
    return ENG_OK;
}
