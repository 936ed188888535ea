/* orc.h — the orchestrator's core: a query is a task that drives one or more
 * engine sequences step by step and reports events (JSON messages) to a sink.
 * A scheduler runs many tasks over one engine, so every query shares the
 * engine's continuous batch.  Single-threaded: the caller owns the thread. */
#ifndef ORC_H
#define ORC_H
#include <cjson/cJSON.h>
#include "eng.h"
#include "tool.h"

/* Where a task's events go.  emit takes ownership of msg.  congested (may be
 * NULL) tells the scheduler that the reader is behind: the task is paused. */
typedef struct orc_sink {
    void *ud;
    void (*emit)(void *ud, cJSON *msg);
    int  (*congested)(void *ud);
    void (*done)(void *ud, const char *id);  /* the task left the scheduler; may be NULL */
} orc_sink;

/* begin() may return ORC_WAIT: not admitted yet (e.g. the KV cache is short). */
enum { ORC_RUNNING = 0, ORC_DONE = 1, ORC_WAIT = 2 };

typedef struct orc_task orc_task;
struct orc_task {
    char id[64];              /* the client's query id */
    orc_sink sink;
    void *impl;
    /* Before eng_step: add/fork/append/pause sequences. */
    int  (*begin)(orc_task *t, eng_engine *e, eng_err *err);
    /* After eng_step: read new tokens, emit; returns ORC_RUNNING or ORC_DONE
     * (or a negative ENG_* code on error). */
    int  (*end)(orc_task *t, eng_engine *e, eng_err *err);
    /* Pause/resume every sequence of the task (backpressure). */
    void (*set_paused)(orc_task *t, eng_engine *e, int paused);
    /* Ends the task early: emits its final messages with the given reason
     * ("cancelled", "disconnected", "shutdown", "error"), frees its sequences. */
    void (*stop)(orc_task *t, eng_engine *e, const char *reason);
    void (*destroy)(orc_task *t);
    /* Set by the scheduler. */
    int paused, started, in_round;
    double t_submit;
};

/* Options shared by every mode. */
typedef struct orc_query {
    char id[64];
    char *prompt;              /* raw text, or NULL when messages are given */
    eng_chat_msg *messages;    /* chat messages, role and content (strings owned by the query) */
    int n_messages;
    int max_tokens;
    eng_sampling samp;
    int spec;                  /* chat: speculative decoding with n-gram drafts */
} orc_query;

void orc_query_free(orc_query *q);
/* Deep copy (strings included), so a task owns its inputs; 0 or -1. */
int  orc_query_copy(orc_query *dst, const orc_query *q);

/* Chat mode: one sequence, streamed token by token. */
int orc_task_chat_create(const orc_query *q, const eng_model *m, orc_sink sink,
                         orc_task **out, eng_err *err);

/* Agent mode: the model calls tools; each call starts as soon as its early
 * arguments are decoded (partial execution), results go back into the
 * sequence as tool messages in the template's form (Qwen's <tool_response>
 * blocks, Llama 3.1's ipython turns), and decoding goes on, for at most
 * max_turns tool rounds. */
/* When a tool call starts (benchmarks compare them):
 *  PARTIAL      as soon as its early arguments are decoded (default)
 *  CALL_END     when its JSON is complete
 *  TURN_END     when the model's turn is over, all calls of the turn at once
 *  TURN_SERIAL  when the turn is over, one call after another (a plain loop) */
enum { ORC_TOOLS_PARTIAL = 0, ORC_TOOLS_CALL_END, ORC_TOOLS_TURN_END, ORC_TOOLS_TURN_SERIAL };

typedef struct orc_agent_opts {
    const tool_registry *tools;   /* must outlive the task */
    int max_turns;                /* 0 = 8 */
    int tool_start;               /* ORC_TOOLS_* */
    const char *system;           /* base system prompt; NULL = a default */
    /* Scripted output (tests, benchmarks): turn i's text is forced as the
     * model's output of assistant turn i (tool calls and the end-of-turn
     * token written out, e.g. <|im_end|>, included). */
    const char *const *script;
    int n_script;
} orc_agent_opts;

int orc_task_agent_create(const orc_query *q, const eng_model *m, orc_sink sink,
                          const orc_agent_opts *o, orc_task **out, eng_err *err);

/* Parallel mode (ParallelPrompt): spec is the client's {"template",
 * "context", "data" | "n"} object, or NULL to detect the schema in
 * q->prompt.  The subtasks share their prompt prefix in the KV cache, decode
 * in one batch, and the answer is their numbered sections in item order. */
int orc_task_parallel_create(const orc_query *q, const cJSON *spec, const eng_model *m,
                             orc_sink sink, orc_task **out, eng_err *err);

/* ------------------------------------------------------------ scheduler */
typedef struct orc_sched orc_sched;
typedef struct orc_sched_stats {
    int live_tasks, queued_tasks, batch_seqs;
    long long steps, tokens;     /* since creation */
    double step_seconds;         /* time spent in eng_step */
} orc_sched_stats;

int  orc_sched_create(eng_engine *e, int max_tasks, orc_sched **out, eng_err *err);
void orc_sched_destroy(orc_sched *s);           /* stops every task ("shutdown") */
/* Takes ownership of t. Returns ENG_EFULL when max_tasks are queued+live. */
int  orc_sched_submit(orc_sched *s, orc_task *t, eng_err *err);
/* Stops the task with that id and sink user data (NULL ud: any); 1 if found. */
int  orc_sched_stop(orc_sched *s, const char *id, void *sink_ud, const char *reason);
/* 1 if a task with that id and sink user data is queued or live. */
int  orc_sched_has(const orc_sched *s, const char *id, void *sink_ud);
/* Stops every task whose sink user data is ud (a client went away). */
int  orc_sched_stop_all(orc_sched *s, void *sink_ud, const char *reason);
/* One round: begin() of every task, one eng_step, end() of every task.
 * Returns 1 after a step, 0 when there was nothing to do, -ENG_* on error. */
int  orc_sched_step(orc_sched *s, eng_err *err);
void orc_sched_get_stats(const orc_sched *s, orc_sched_stats *st);

/* Small helpers shared by tasks. */
int    orc_is_eos(const eng_config *c, int id);
/* Builds the prompt's token ids: messages through the model's chat template
 * with the generation prompt (special tokens only in the template's markers,
 * never from user text), a raw prompt as plain text. */
int    orc_encode_query(const orc_query *q, const eng_model *m, int **ids, int *n, eng_err *err);
cJSON *orc_msg(const char *type, const char *id);

#endif
