/* pretok.h — the pre-tokenizer split patterns the tokenizer recognises,
 * matched by hand instead of by a regex engine.  Internal to the engine.
 *
 * Each pattern is an alternation the regex engines (Oniguruma in the
 * `tokenizers` crate) try left to right at every position; the matchers
 * below reproduce that order, greediness and backtracking exactly.  Every
 * character is covered by some alternative, so a split is a sequence of
 * back-to-back matches. */
#ifndef ENG_PRETOK_H
#define ENG_PRETOK_H
#include <stdint.h>

enum {
    ENG_PT_QWEN2,   /* Qwen2: ...|\p{N}|...          */
    ENG_PT_LLAMA3,  /* Llama 3: ...|\p{N}{1,3}|...   */
    ENG_PT_GPT2     /* GPT-2 / ByteLevel use_regex   */
};

/* Returns the ENG_PT_* pattern whose regex source is re, or -1. */
int eng_pt_pattern(const char *re);

/* One character of the text being split. */
typedef struct eng_pt_char {
    uint32_t cp;     /* code point (ENG_UNI_BAD + byte for invalid UTF-8) */
    uint32_t off;    /* byte offset in the text */
    uint8_t cls;     /* ENG_UNI_* */
} eng_pt_char;

/* Number of characters (>= 1) matched by pattern at c[i], i < n. */
int eng_pt_match(int pattern, const eng_pt_char *c, int n, int i);

#endif
