#!/usr/bin/env python3
"""Records quantized blocks and their dequantization by the `gguf` Python
package (gguf.quants, ggml's reference written in numpy) for
tests/test_gguf.c, which checks that brisk's eng_to_f32 gives the same floats
bit for bit:

    /work/.venv/bin/python scripts/record_gguf_quants.py tests/fixtures/gguf_quants.json

Per type: the raw blocks (hex) and the expected floats (as float32 bit
patterns, so the JSON round trip is exact).  Blocks come from quantizing
random rows where the package can quantize (the 32-element formats) and
from random bytes with a sane f16 scale field otherwise (the K formats), so
every bit of the quants and scales is exercised.  Fixed seed."""
import json, sys
import numpy as np
from gguf import GGMLQuantizationType as T, GGML_QUANT_SIZES
from gguf.quants import quantize, dequantize

rng = np.random.default_rng(1234)
out = {}


def record(name, blocks):
    qt = getattr(T, name)
    vals = dequantize(blocks, qt).astype(np.float32).reshape(-1)
    out[name] = {"hex": blocks.tobytes().hex(), "bits": vals.view(np.uint32).tolist()}


def half_bytes(x):
    return np.array([x], dtype=np.float16).view(np.uint8)


# The plain floats: random finite bit patterns.
f16 = rng.integers(0, 1 << 16, 64, dtype=np.uint16)
f16 = f16[(f16 & 0x7C00) != 0x7C00][:48]
record("F16", f16.view(np.uint8))
bf16 = rng.integers(0, 1 << 16, 64, dtype=np.uint16)
bf16 = bf16[(bf16 & 0x7F80) != 0x7F80][:48]
record("BF16", bf16.view(np.uint8))

# 32-element formats: quantized from random rows (4 blocks each).
for name in ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]:
    rows = (rng.standard_normal((1, 128)) * rng.uniform(0.01, 3.0)).astype(np.float32)
    rows[0, :32] += 0.5   # one block with an offset, for the min of Q4_1 / Q5_1
    record(name, quantize(rows, getattr(T, name)).reshape(-1))

# K formats: random bytes, then sane f16 scales where the block keeps them
# (2 super-blocks each).
offsets = {"Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
for name, offs in offsets.items():
    bs, tsize = GGML_QUANT_SIZES[getattr(T, name)]
    blocks = rng.integers(0, 256, (2, tsize), dtype=np.uint8)
    for b in range(2):
        for o in offs:
            blocks[b, o:o + 2] = half_bytes(rng.uniform(-0.05, 0.05))
    record(name, blocks.reshape(-1))

with open(sys.argv[1], "w") as f:
    json.dump(out, f, separators=(",", ":"))
    f.write("\n")
print(sys.argv[1], {k: len(v["bits"]) for k, v in out.items()})
