#!/usr/bin/env python3
"""Records transformers' run of a GGUF model on the CPU (f32) for
tests/test_real.c:

    /work/.venv/bin/python scripts/record_gguf_ref.py \\
        ~/.cache/brisk/models/SmolLM2-135M-Instruct.Q4_1.gguf tests/fixtures/real/smollm2-135m.json
    /work/.venv/bin/python scripts/record_gguf_ref.py \\
        ~/.cache/brisk/models/gemma-3-270m-q4_k_m.gguf tests/fixtures/real/gemma3-270m.json

transformers dequantizes the GGUF with the gguf package (so the weights are
those brisk computes, bit for bit), undoes llama.cpp's q/k row order (llama)
and subtracts the 1 llama.cpp's converter added to Gemma's norm weights.

Recorded:
  dequant: a few rows of a few weights as transformers holds them (float32
    bit patterns; q_proj / k_proj after the un-permutation), so the C test
    checks brisk's dequantized, reordered f32 copy row by row.  Gemma's
    norms are recorded as the multiplier transformers applies, 1 + w in
    float32, which is what brisk holds.
  prompts: SmolLM2 (instruct): 5 chat prompts (the tokenizer's chat
    template, generation prompt added) and 5 plain texts; Gemma 3 270M
    (base, no chat template): 10 plain texts.  prompt_ids are what the model
    is fed: the text's ids, after the bos token where the tokenizer adds one
    (add_bos, Gemma).  For each prompt, 64 greedy tokens (no
    stop at eos; where an eos id first appears is recorded) and, at a few
    steps, the logits the step's token was chosen from: the top 20 (ids and
    values), 20 fixed ids spread over the vocabulary, the full-vocabulary
    max |logit|, and the margin between the two best logits (a small
    margin is where float noise could flip a greedy choice).
Uses 2 threads; a few seconds for SmolLM2-135M."""
import json, os, sys
import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from gguf import GGUFReader
from gguf.quants import dequantize

torch.set_num_threads(2)
path, out = sys.argv[1], sys.argv[2]
folder, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32).eval()
sd = model.state_dict()

# --- dequantization: transformers' weights against gguf.quants directly
reader = GGUFReader(path)
raw = {t.name: t for t in reader.tensors}


def deq(n):
    t = raw[n]
    return dequantize(t.data, t.tensor_type).reshape([int(x) for x in reversed(t.shape)])


def unpermute(w, n_head):   # transformers' _reverse_permute_weights
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


cfg = model.config
GEMMA = cfg.model_type == "gemma3_text"
if GEMMA:
    checks = [  # (transformers name, gguf name, n_head for the q/k order or None, rows)
        ("model.embed_tokens.weight", "token_embd.weight", None, [0, 2, 262143]),        # Q8_0
        ("model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", None, [1, 700]),  # Q5_0
        ("model.layers.17.self_attn.k_proj.weight", "blk.17.attn_k.weight", None, [3, 255]),
        ("model.layers.7.mlp.down_proj.weight", "blk.7.ffn_down.weight", None, [5]),     # Q6_K
        ("model.layers.12.self_attn.o_proj.weight", "blk.12.attn_output.weight", None, [64]),  # Q4_K
        ("model.layers.3.input_layernorm.weight", "blk.3.attn_norm.weight", None, None),
        ("model.layers.5.self_attn.q_norm.weight", "blk.5.attn_q_norm.weight", None, None),
        ("model.layers.9.post_feedforward_layernorm.weight", "blk.9.post_ffw_norm.weight", None, None),
    ]
else:
    checks = [
        ("model.embed_tokens.weight", "token_embd.weight", None, [0, 2, 49151]),
        ("model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", cfg.num_attention_heads, [1, 100, 575]),
        ("model.layers.29.self_attn.k_proj.weight", "blk.29.attn_k.weight", cfg.num_key_value_heads, [3, 191]),
        ("model.layers.7.mlp.down_proj.weight", "blk.7.ffn_down.weight", None, [5]),
        ("model.layers.12.self_attn.v_proj.weight", "blk.12.attn_v.weight", None, [64]),
        ("model.layers.3.input_layernorm.weight", "blk.3.attn_norm.weight", None, None),
    ]
dq = []
for hf, gg, nh, rows in checks:
    mine = deq(gg)
    if nh:
        mine = unpermute(mine, nh)
    theirs = sd[hf].numpy()
    norm = GEMMA and hf.endswith("norm.weight")
    if norm:   # llama.cpp stored w + 1; transformers subtracts the 1
        mine = mine - np.float32(1)
    assert np.array_equal(mine.astype(np.float32), theirs), f"{hf}: transformers differs from gguf.quants"
    if norm:   # the multiplier Gemma3RMSNorm applies
        theirs = np.float32(1) + theirs
    sel = theirs.reshape(1, -1) if rows is None else theirs[rows]
    dq.append({"name": hf, "gguf": gg, "rows": rows if rows is not None else [0],
               "bits": [r.astype(np.float32).view(np.uint32).tolist() for r in sel]})
print("dequantization: transformers' weights equal gguf.quants' on", len(checks), "tensors")

# --- greedy runs
CHAT = [
    "What is the capital of France?",
    "What is 17 times 23? Show your working.",
    "Write a haiku about the sea.",
    "Give me three tips for learning a new language.",
    "Explain what a prime number is in one sentence.",
]
PLAIN = [
    "The quick brown fox",
    "Once upon a time, in a small village by the mountains,",
    "def fibonacci(n):\n",
    "The three primary colors are",
    "Water boils at a temperature of",
]
if GEMMA:   # a base model without a chat template: plain texts only
    CHAT = []
    PLAIN += [
        "The capital of France is",
        "Question: What is 17 times 23?\nAnswer:",
        "import numpy as np\n\ndef softmax(x):",
        "Photosynthesis is the process by which",
        "Die Hauptstadt von Deutschland ist",
    ]
ADD_BOS = GEMMA   # the Gemma tokenizer puts <bos> first; SmolLM2's chat prompts carry their own markers
STEPS = [0, 1, 16, 40, 63]
N_NEW = 64
vocab = cfg.vocab_size
FIXED = [int(x) for x in np.linspace(0, vocab - 1, 20)]
eos_ids = {tok.convert_tokens_to_ids("<end_of_turn>" if GEMMA else "<|im_end|>"), tok.eos_token_id}
prompts = []
for kind, texts in (("chat", CHAT), ("plain", PLAIN)):
    for text in texts:
        if kind == "chat":
            s = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                        add_generation_prompt=True)
        else:
            s = text
        ids = tok(s, add_special_tokens=False).input_ids
        if ADD_BOS:
            ids = [tok.bos_token_id] + ids
        gen, logs, margins = [], [], []
        with torch.no_grad():
            o = model(torch.tensor([ids]), use_cache=True)
            for step in range(N_NEW):
                lg = o.logits[0, -1].float()
                nxt = int(torch.argmax(lg))
                two = torch.topk(lg, 2).values
                margins.append(float(two[0] - two[1]))
                if step in STEPS:
                    top = torch.topk(lg, 20)
                    logs.append({"step": step,
                                 "top_ids": top.indices.tolist(),
                                 "top": [float(v) for v in top.values],
                                 "fixed": [float(lg[i]) for i in FIXED],
                                 "max_abs": float(lg.abs().max()),
                                 "margin": float(top.values[0] - top.values[1])})
                gen.append(nxt)
                o = model(torch.tensor([[nxt]]), past_key_values=o.past_key_values, use_cache=True)
        first_eos = next((i for i, t in enumerate(gen) if t in eos_ids), -1)
        prompts.append({"kind": kind, "text": text, "prompt_text": s, "prompt_ids": ids, "ids": gen,
                        "first_eos": first_eos, "logits": logs,
                        "min_margin": min(margins), "min_margin_step": int(np.argmin(margins)),
                        "decoded": tok.decode(gen)})
        print(f"{kind:5s} {len(ids):3d} ids, eos at {first_eos:3d}, min margin {min(margins):.4f}: "
              f"{tok.decode(gen)[:60]!r}")

with open(out, "w") as f:
    json.dump({"model": name, "n_new": N_NEW, "fixed_ids": FIXED, "eos_ids": sorted(eos_ids),
               "add_bos": ADD_BOS,
               "dequant": dq, "prompts": prompts}, f, separators=(",", ":"))
    f.write("\n")
print(out, os.path.getsize(out), "bytes")
