/* chat.c — the ChatML chat template (Qwen2.5, SmolLM2-Instruct):
 *   <|im_start|>{role}\n{content}<|im_end|>\n   for each message, then
 *   <|im_start|>assistant\n                      when a reply is wanted.
 * No default system message is added here: Qwen2.5's template inserts one
 * when the first message is not a system message; callers that want that
 * pass it themselves. */
#include <stdlib.h>
#include <string.h>
#include "eng.h"

static const char IM_START[] = "<|im_start|>", IM_END[] = "<|im_end|>\n";

static char *put(char *p, const char *s) {
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

char *eng_chat_format(const eng_chat_msg *msgs, int n, int add_generation_prompt) {
    if (n < 0 || (n > 0 && !msgs)) return NULL;
    size_t per = strlen(IM_START) + 1 + strlen(IM_END), total = 1;
    for (int i = 0; i < n; i++) {
        total += per;
        total += msgs[i].role ? strlen(msgs[i].role) : 0;
        total += msgs[i].content ? strlen(msgs[i].content) : 0;
    }
    if (add_generation_prompt) total += strlen(IM_START) + strlen("assistant\n");
    char *out = malloc(total), *p = out;
    if (!out) return NULL;
    for (int i = 0; i < n; i++) {
        p = put(p, IM_START);
        p = put(p, msgs[i].role ? msgs[i].role : "");
        p = put(p, "\n");
        p = put(p, msgs[i].content ? msgs[i].content : "");
        p = put(p, IM_END);
    }
    if (add_generation_prompt) {
        p = put(p, IM_START);
        p = put(p, "assistant\n");
    }
    *p = 0;
    return out;
}
