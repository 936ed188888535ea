/* bench_internal.h — helpers shared by the files of the benchmark library only. */
#ifndef BENCH_INTERNAL_H
#define BENCH_INTERNAL_H
#include "bench.h"
#include "tool.h"

/* Corpus database (corpus.c), shared with the web environment. */
struct sqlite3;
int bench_corpus_open(const char *path, int readonly, struct sqlite3 **db, eng_err *err);
int bench_corpus_put(struct sqlite3 *db, const char *url, const char *title, const char *html,
                    eng_err *err);
/* Best k pages for q as a JSON array of {"title","url","snippet"}; urls
 * are base_url + the page's path. */
int bench_corpus_search(struct sqlite3 *db, const char *q, int k, const char *base_url,
                       cJSON **out, eng_err *err);

#endif
