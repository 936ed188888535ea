/* t_tmp.h — a test program's temporary directory, tmpdir, for the files its
 * tests leave there (databases): made at the start, removed at the end.
 * Only plain files go in it. */
#ifndef T_TMP_H
#define T_TMP_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char tmpdir[256];

/* Makes tmpdir from a mkdtemp template ("/tmp/name-XXXXXX"): 0, or -1 said. */
static inline int t_tmp_make(const char *tmpl) {
    snprintf(tmpdir, sizeof tmpdir, "%s", tmpl);
    if (mkdtemp(tmpdir)) return 0;
    perror("mkdtemp");
    return -1;
}

/* Removes every file in tmpdir. */
static inline void t_tmp_clean(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char p[600];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

/* Removes tmpdir and the files in it. */
static inline void t_tmp_remove(void) {
    t_tmp_clean();
    if (rmdir(tmpdir)) printf("could not remove %s\n", tmpdir);
}

#endif
