#!/bin/sh
# bench_cpu_peer.sh — brisk's CPU backend and transformers (CPU, f32, the
# same GGUF file dequantized by its GGUF reader) on this machine in one run,
# one after the other: decode tokens/s at batch 1 and 8 (16-token prompts),
# and the GGUF load time of each.  Needs a Python with torch, transformers,
# gguf and accelerate (PY, default python3).  Prints a table; writes
# benchmarks/results/cpu_<model>.json (brisk), peer_cpu_<model>.json
# (transformers) and cpu_vs_peer_<model>.json (the ratios).
#
#   scripts/bench_cpu_peer.sh [MODEL.gguf]     (default: SmolLM2 from models.sh)
set -eu
cd "$(dirname "$0")/.."
F=${1:-$(scripts/models.sh smollm2)}
PY=${PY:-python3}
T=$(nproc)
name=$(basename "$F" .gguf | tr 'A-Z' 'a-z')
R=benchmarks/results
make -s build/benchmarks/bench_cpu
build/benchmarks/bench_cpu --out $R/cpu_$name.json "$F"
$PY scripts/bench_peer.py bench "$F" --out $R/peer_cpu_$name.json --device cpu --dtype float32 \
    --threads "$T" --batches 1,8 --compile-batches "" --prompt 16 --steps 32 2>&1 |
    grep -E "^\{|loaded|wrote"
$PY - "$R/cpu_$name.json" "$R/peer_cpu_$name.json" "$R/cpu_vs_peer_$name.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))["models"][0]
p = {r["batch"]: r["tok_s"] for r in json.load(open(sys.argv[2]))["decode"]}
rows = [{"batch": 1, "brisk_tok_s": b["decode_b1_tok_s"], "transformers_tok_s": p[1]},
        {"batch": 8, "brisk_tok_s": b["decode_b8_tok_s"], "transformers_tok_s": p[8]}]
print(f"{'batch':>5} {'brisk tok/s':>12} {'transformers':>13} {'ratio':>7}")
for r in rows:
    r["ratio"] = r["brisk_tok_s"] / r["transformers_tok_s"]
    print(f"{r['batch']:>5} {r['brisk_tok_s']:>12.1f} {r['transformers_tok_s']:>13.1f} {r['ratio']:>6.2f}x")
json.dump({"model": b["model"], "rows": rows}, open(sys.argv[3], "w"), indent=1)
print("wrote", sys.argv[3])
PY
