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

/* Options shared by every mode. */
typedef struct orc_query {
    char id[64];
    char *prompt;              /* raw text, or NULL when messages are given */
    eng_chat_msg *messages;    /* chat messages, role and content (strings owned by the query) */
    int n_messages;
    int max_tokens;            /* <= 0: ORC_MAX_TOKENS */
    eng_sampling samp;
    int spec;                  /* chat: speculative decoding with n-gram drafts */
} orc_query;

/* Every mode's token budget when the query gives none: per answer in chat
 * and agent mode, per subtask in parallel mode, per branch in reason mode
 * (the server protocol's default too).  Chat, parallel and reason mode also
 * stop where the model's context ends (orc_task_gen_limit). */
#define ORC_MAX_TOKENS 256

void orc_query_free(orc_query *q);
/* Deep copy (strings included), so a task owns its inputs; 0 or -1. */
int  orc_query_copy(orc_query *dst, const orc_query *q);

typedef struct orc_task orc_task;

/* What a mode does; the scheduler calls these.  One static table per mode. */
typedef struct orc_task_ops {
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
    /* Frees the mode's state (impl and what it holds). */
    void (*free)(void *impl);
} orc_task_ops;

struct orc_task {
    char id[64];              /* the client's query id (q.id) */
    orc_query q;              /* the task's own copy, max_tokens set */
    orc_sink sink;
    const orc_task_ops *ops;
    void *impl;               /* the mode's state */
    /* Set by the scheduler. */
    int paused, started, in_round;
    double t_submit;
};

/* The part every mode's create shares: a task with its own copy of q
 * (max_tokens <= 0 becomes ORC_MAX_TOKENS), the sink, the mode's ops and
 * its state impl.  The task owns impl from here on, also when this fails
 * (then ops->free(impl) has run).  A mode's create makes impl, calls this,
 * then sets impl up from t->q, calling orc_task_free(t) if that fails. */
int  orc_task_new(const orc_query *q, orc_sink sink, const orc_task_ops *ops, void *impl,
                  orc_task **out, eng_err *err);
/* Frees a task the scheduler does not own (never submitted, or submit
 * failed); the scheduler frees the tasks it holds.  NULL is fine. */
void orc_task_free(orc_task *t);
/* Sends msg to the task's sink (ownership passes); NULL msg: nothing. */
void orc_task_emit(orc_task *t, cJSON *msg);
/* Tokens a sequence of this task may generate after a prompt of n_prompt
 * tokens: q.max_tokens, or less where the model's context ends (0 when the
 * prompt fills it). */
int  orc_task_gen_limit(const orc_task *t, const eng_model *m, int n_prompt);

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
    long long steps, tokens;     /* since creation; tokens: what the steps generated
                                    (eng_step_tokens: accepted drafts count, paused
                                    sequences do not) */
    double step_seconds;         /* time spent in eng_step */
    int kv_free_blocks;          /* the engine's, when the stats were taken */
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
