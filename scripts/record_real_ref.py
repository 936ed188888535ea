#!/usr/bin/env python3
"""Records the greedy continuation of a fixed chat prompt from a real model
with transformers, for tests/test_real.c:

    python3 scripts/record_real_ref.py MODEL_DIR tests/fixtures/real/NAME.json

NAME is the model folder's name under ../shared/models.  Run it wherever the
model and transformers are (the GPU machine); the test compares brisk's
greedy tokens with these, token for token."""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPT = "What is the sum of the first ten positive integers? Answer briefly."
model_dir, out = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(model_dir)
m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
# ChatML exactly as brisk builds it (no default system message).
text = f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n"
ids = tok(text, add_special_tokens=False).input_ids
with torch.no_grad():
    gen = m.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False)[0][len(ids):].tolist()
json.dump({"prompt": PROMPT, "prompt_ids": ids, "ids": gen,
           "text": tok.decode(gen, skip_special_tokens=True)},
          open(out, "w"), ensure_ascii=False, indent=1)
print(out, len(gen), "tokens:", tok.decode(gen))
