/* pretok.c — hand-written matchers for the split regexes of Qwen2, Llama 3
 * and GPT-2 (see pretok.h).  \s, \p{L} and \p{N} come from unicode.c. */
#include <string.h>
#include "pretok.h"
#include "unicode.h"

static const char *const RE_QWEN2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *const RE_LLAMA3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *const RE_GPT2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

int eng_pt_pattern(const char *re) {
    if (!strcmp(re, RE_QWEN2)) return ENG_PT_QWEN2;
    if (!strcmp(re, RE_LLAMA3)) return ENG_PT_LLAMA3;
    if (!strcmp(re, RE_GPT2)) return ENG_PT_GPT2;
    return -1;
}

/* Lower-cases the letters the contractions use; under (?i) the regex engine
 * also folds U+017F LONG S to 's' (the only non-ASCII letter that folds to
 * one of s t r e v m l d). */
static uint32_t fold(uint32_t cp, int icase) {
    if (!icase) return cp;
    if (cp >= 'A' && cp <= 'Z') return cp + 32;
    if (cp == 0x17F) return 's';
    return cp;
}

/* 's|'t|'re|'ve|'m|'ll|'d (optionally case-insensitive): length or 0. */
static int contraction(const eng_pt_char *c, int n, int i, int icase) {
    if (c[i].cp != '\'' || i + 1 >= n) return 0;
    uint32_t a = fold(c[i + 1].cp, icase);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= n) return 0;
    uint32_t b = fold(c[i + 2].cp, icase);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

static int is_crlf(uint32_t cp) { return cp == '\r' || cp == '\n'; }

/* End of the run of characters of class cls starting at i. */
static int run_of(const eng_pt_char *c, int n, int i, int cls) {
    while (i < n && c[i].cls == cls) i++;
    return i;
}

/* \s+(?!\S) then \s+: the whole whitespace run when it ends the text,
 * otherwise all of it but the last character, which is left to prefix the
 * next word; a single whitespace character falls through to \s+. */
static int spaces(const eng_pt_char *c, int n, int i) {
    int j = run_of(c, n, i, ENG_UNI_SPACE);
    if (j < n && j - 1 > i) return j - 1 - i;
    return j - i;
}

/* Qwen2 / Llama 3:
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,maxdig}
 *   | ?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+              */
static int match_llama(const eng_pt_char *c, int n, int i, int maxdig) {
    int k = contraction(c, n, i, 1);
    if (k) return k;
    /* [^\r\n\p{L}\p{N}]?\p{L}+ : the optional prefix is any non-letter,
     * non-digit character except CR/LF (spaces and punctuation included). */
    if (c[i].cls == ENG_UNI_LETTER) return run_of(c, n, i, ENG_UNI_LETTER) - i;
    if (c[i].cls != ENG_UNI_NUMBER && !is_crlf(c[i].cp) && i + 1 < n &&
        c[i + 1].cls == ENG_UNI_LETTER)
        return run_of(c, n, i + 1, ENG_UNI_LETTER) - i;
    if (c[i].cls == ENG_UNI_NUMBER) {
        int j = i;
        while (j < n && j - i < maxdig && c[j].cls == ENG_UNI_NUMBER) j++;
        return j - i;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    int s = (c[i].cp == ' ' && i + 1 < n && c[i + 1].cls == ENG_UNI_OTHER) ? i + 1 : i;
    if (c[s].cls == ENG_UNI_OTHER) {
        int j = run_of(c, n, s, ENG_UNI_OTHER);
        while (j < n && is_crlf(c[j].cp)) j++;
        return j - i;
    }
    /* Only whitespace is left.  \s*[\r\n]+ : greedy \s* backs off to the
     * last CR/LF of the run, and [\r\n]+ takes it. */
    int j = run_of(c, n, i, ENG_UNI_SPACE), last = -1;
    for (int p = i; p < j; p++)
        if (is_crlf(c[p].cp)) last = p;
    if (last >= 0) return last + 1 - i;
    return spaces(c, n, i);
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d | ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+
 *        | \s+(?!\S) | \s+                                               */
static int match_gpt2(const eng_pt_char *c, int n, int i) {
    int k = contraction(c, n, i, 0);
    if (k) return k;
    if (c[i].cls == ENG_UNI_SPACE && c[i].cp != ' ') return spaces(c, n, i);
    /* An ASCII space joins the run that follows when that run is not
     * whitespace; otherwise it is whitespace itself. */
    int s = (c[i].cp == ' ' && i + 1 < n && c[i + 1].cls != ENG_UNI_SPACE) ? i + 1 : i;
    if (c[s].cls == ENG_UNI_SPACE) return spaces(c, n, i);
    return run_of(c, n, s, c[s].cls) - i;
}

int eng_pt_match(int pattern, const eng_pt_char *c, int n, int i) {
    switch (pattern) {
    case ENG_PT_QWEN2: return match_llama(c, n, i, 1);
    case ENG_PT_LLAMA3: return match_llama(c, n, i, 3);
    default: return match_gpt2(c, n, i);
    }
}
