/* kv.h — bookkeeping of the paged KV cache (engine-internal, not API).
 *
 * The pool is n_blocks blocks of block_size token slots each; the backend owns
 * the memory, this module only decides which block holds what.  A block has a
 * reference count: one per sequence whose block table lists it.  Forking a
 * sequence copies its table and adds a reference to every block, so parent
 * and child share the keys and values already written.  Before a sequence
 * writes into a block that others also hold, it gets a private copy
 * (copy-on-write); a block whose count drops to zero goes back on the free
 * list. */
#ifndef ENG_KV_H
#define ENG_KV_H
#include "eng.h"

typedef struct eng_kv eng_kv;

int  eng_kv_create(int n_blocks, int block_size, eng_kv **out, eng_err *err);
void eng_kv_destroy(eng_kv *kv);
int  eng_kv_n_blocks(const eng_kv *kv);
int  eng_kv_n_free(const eng_kv *kv);

/* A sequence's block table: ids[i] holds token positions
 * [i*block_size, (i+1)*block_size). */
typedef struct eng_kv_table { int *ids; int n, cap; } eng_kv_table;

/* Shares every block of src with dst (dst must be empty). */
int  eng_kv_table_fork(eng_kv *kv, const eng_kv_table *src, eng_kv_table *dst, eng_err *err);
/* Drops dst's references and its memory; dst becomes empty. */
void eng_kv_table_free(eng_kv *kv, eng_kv_table *t);

/* Keeps only the blocks covering positions [0, n) of t; the others lose
 * t's reference (and go back to the pool when no other table holds them).
 * Used to roll back rejected speculative tokens. */
void eng_kv_table_truncate(eng_kv *kv, eng_kv_table *t, int n);

/* Blocks the pool must hand out before positions [from, to) of t can be
 * written: missing blocks plus private copies of shared ones.  An upper
 * bound when several tables of one step share a block. */
int  eng_kv_table_need(const eng_kv *kv, const eng_kv_table *t, int from, int to);
/* Grows t's id array so that it can cover `to` positions (may fail with
 * ENG_ENOMEM; nothing else changes). */
int  eng_kv_table_reserve(eng_kv_table *t, int block_size, int to, eng_err *err);

/* Copies the contents of block src into block dst (the backend's copy_block). */
typedef int (*eng_kv_copy_fn)(void *ctx, int src, int dst, eng_err *err);

/* Makes positions [from, to) of t writable: appends fresh blocks and
 * replaces shared ones with private copies made by copy.  Call after
 * eng_kv_table_need fits in eng_kv_n_free and eng_kv_table_reserve. */
int  eng_kv_table_prepare(eng_kv *kv, eng_kv_table *t, int from, int to,
                          eng_kv_copy_fn copy, void *ctx, eng_err *err);
#endif
