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
enum { ORC_MAX_STOP = 4, ORC_MAX_TOP_LOGPROBS = 20, ORC_MAX_CHOICES = 64 };
typedef struct orc_query {
    char id[64];
    char *prompt;              /* raw text, or NULL when messages are given */
    eng_chat_msg *messages;    /* chat messages, every string (tool calls too) owned by the query */
    int n_messages;
    char *tools_json;          /* tool definitions for the chat template; NULL = none */
    char *prefill;             /* text the assistant's reply starts with (messages only) */
    int max_tokens;
    eng_sampling samp;
    int spec;                  /* chat: speculative decoding with n-gram drafts */
    /* chat mode */
    int n;                     /* choices, forked from one prefilled prompt; 0 = 1 */
    char *stop[ORC_MAX_STOP];  /* a choice ends before the first of these it writes */
    int n_stop;
    int logprobs;              /* token messages carry "piece" and, when top_logprobs > 0, */
    int top_logprobs;          /* the most likely alternatives ("top_logprobs") */
    char *script;              /* chat, tests: every choice's output is forced to this text
                                * (special tokens written out count), the model still runs */
} orc_query;

void orc_query_free(orc_query *q);
/* Deep copy (strings included), so a task owns its inputs; 0 or -1. */
int  orc_query_copy(orc_query *dst, const orc_query *q);

/* Chat mode: q->n choices (one sequence each; more than one are forked from
 * the prompt prefilled once), streamed token by token.  A choice ends on an
 * end-of-sequence token or the chat template's end of turn (finish "stop"),
 * on one of q->stop (finish "stop", the stop text left out and held back
 * while it may still be one), or at max_tokens or the context's end
 * ("length").  Token messages carry "branch" when there are several
 * choices; each choice ends with a "branch" message (finish, tokens, text);
 * the answer holds choice 0 and, with several, "choices". */
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

/* Submission runs the task's begin() once: it starts at once when the
 * engine has a sequence slot and KV room for it, else it waits in arrival
 * order and is told its place with a "queued" message.  At most max_queued
 * tasks wait; live ones are bounded by the engine's sequences. */
int  orc_sched_create(eng_engine *e, int max_queued, orc_sched **out, eng_err *err);
void orc_sched_destroy(orc_sched *s);           /* stops every task ("shutdown") */
/* Takes ownership of t, unless it returns an error: ENG_EFULL when
 * max_queued tasks are waiting, or the error of t's begin() (e.g.
 * ORC_ETOOLONG); t is then the caller's, and has emitted nothing. */
int  orc_sched_submit(orc_sched *s, orc_task *t, eng_err *err);
int  orc_sched_stop(orc_sched *s, const char *id, void *sink_ud, const char *reason);
/* 1 if a task with that id and sink user data is queued or live. */
int  orc_sched_has(const orc_sched *s, const char *id, void *sink_ud);
/* Stops every task whose sink user data is ud (a client went away). */
int  orc_sched_stop_all(orc_sched *s, void *sink_ud, const char *reason);
/* One round: begin() of every task, one eng_step, end() of every task.
 * Returns 1 after a step, 0 when there was nothing to do, -ENG_* on error. */
int  orc_sched_step(orc_sched *s, eng_err *err);
void orc_sched_get_stats(const orc_sched *s, orc_sched_stats *st);

/* An eng_err code beyond ENG_*: the query's prompt leaves no room in the
 * model's context.  The client's doing, not the engine's: the scheduler
 * reports it as "prompt_too_long". */
enum { ORC_ETOOLONG = 100 };
/* Clamps *max_tokens to the context left after n_prompt tokens, so a query
 * asking for more ends with finish "length" at the context's end; returns
 * ORC_ETOOLONG, with a message for the client, when nothing is left. */
int    orc_fit_context(const eng_model *m, int n_prompt, int *max_tokens, eng_err *err);

/* Small helpers shared by tasks. */
int    orc_is_eos(const eng_config *c, int id);
/* Builds the prompt's token ids: messages through the model's chat template
 * with the generation prompt (special tokens only in the template's markers,
 * never from user text), a raw prompt as plain text. */
int    orc_encode_query(const orc_query *q, const eng_model *m, int **ids, int *n, eng_err *err);
cJSON *orc_msg(const char *type, const char *id);

#endif
