#!/usr/bin/env python3
"""Records the reference for ENG_ACT_BF16 (eng.h): transformers' float64
forward of a test fixture with every linear layer's input rounded to bf16
(to nearest even) first, which is what the engine's bf16 activations do.

    python3 scripts/record_act_bf16_ref.py [NAME ...]   (default: tiny-qwen2 tiny-gemma3)

Needs torch and transformers (the device machine has both; CI does not run
this).  For each fixture, over the token sequences of its ref.json (prompt
and greedy continuation, as recorded), writes
tests/fixtures/NAME/ref_act_bf16_logits.bin: the logits at every position,
float32, in ref.json's row order.  test_engine's act_bf16 tests compare the
CPU reference with ENG_ACT_BF16 against it."""
import json, sys
import torch
from transformers import AutoModelForCausalLM

NAMES = sys.argv[1:] or ["tiny-qwen2", "tiny-gemma3"]


def round_input(module, args):
    x = args[0]
    return (x.to(torch.bfloat16).to(x.dtype),) + tuple(args[1:])


for name in NAMES:
    d = f"tests/fixtures/{name}"
    ref = json.load(open(f"{d}/ref.json"))
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64, attn_implementation="eager").eval()
    n_lin = 0
    for mod in m.modules():
        if isinstance(mod, torch.nn.Linear):
            mod.register_forward_pre_hook(round_input)
            n_lin += 1
    blobs, rows = [], 0
    for p in ref["prompts"]:
        assert p["row_offset"] == rows
        with torch.no_grad():
            logits = m(torch.tensor([p["ids"]])).logits[0]
        blobs.append(logits.float().numpy().tobytes())
        rows += len(p["ids"])
    assert rows == ref["rows"] and m.config.vocab_size == ref["vocab"]
    open(f"{d}/ref_act_bf16_logits.bin", "wb").write(b"".join(blobs))
    print(f"{name}: {rows} rows x {ref['vocab']}, {n_lin} linear layers rounded")
