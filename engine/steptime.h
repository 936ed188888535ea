/* steptime.h — the measured time of an engine's forward passes against
 * their rows, for the speculation planner (spec.c) and eng_spec_step_cost.
 * Not API. */
#ifndef ENG_STEPTIME_H
#define ENG_STEPTIME_H

/* Unmeasured: one row costs this fraction of a pass (also the slope past a
 * single measured bucket). */
#define ENG_STEPTIME_PRIOR_ROW 0.02

/* A running estimate per power-of-two bucket of rows (bucket b: rows in
 * [2^b, 2^(b+1))).  Zero-initialised: nothing measured. */
enum { ENG_STEPTIME_BUCKETS = 24 };
typedef struct eng_steptime {
    double secs[ENG_STEPTIME_BUCKETS], rows[ENG_STEPTIME_BUCKETS];
    int n[ENG_STEPTIME_BUCKETS];
} eng_steptime;

/* Records a pass of rows rows that took secs seconds. */
void   eng_steptime_add(eng_steptime *t, int rows, double secs);
/* Seconds of a pass of rows rows from the measured buckets; < 0: none yet. */
double eng_steptime_secs(const eng_steptime *t, double rows);
/* Passes of about rows rows (their bucket) are measured well enough to count. */
int    eng_steptime_known(const eng_steptime *t, int rows);
#endif
