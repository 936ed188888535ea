#!/bin/bash
# device_cuda.sh — the one script run on the GPU machine (the device tool's
# `run`, from the repository root):
#
#   scripts/device_cuda.sh [quick|full]
#
# 1. builds the CUDA backend with `make CUDA=1`, limited to engine/ and
#    kernels/ (the machine lacks the sqlite, curl and libwebsockets
#    development files; cJSON's header and library travel in .dev/sysroot,
#    made by `scripts/device_cuda.sh sysroot` on the development machine);
# 2. runs build/cuda-dev/tests/test_cuda;
# 3. makes random-weight Qwen2.5-0.5B-Instruct and Qwen2.5-1.5B-Instruct
#    models (real shapes, bf16, fixed seed; tests/fixtures/tok-qwen2's
#    tokenizer) with scripts/bench_peer.py;
# 4. runs benchmarks/bench_cuda on each;
# 5. (full) runs the transformers peer on each, eager, then torch.compile'd
#    at batch 1 and 32 on the larger model under a time limit;
# 6. prints brisk against its bandwidth floor and against transformers.
# Results go to $OUT (at most 8 files come back, so the JSON files travel
# in one tarball).
set -u -o pipefail
MODE=${1:-full}
SYS=.dev/sysroot

if [ "$MODE" = sysroot ]; then   # on the development machine: what the GPU machine lacks
    mkdir -p $SYS/include/cjson $SYS/lib
    cp /usr/include/cjson/cJSON.h $SYS/include/cjson/
    cp -L /usr/lib/x86_64-linux-gnu/libcjson.so.1 $SYS/lib/
    ln -sf libcjson.so.1 $SYS/lib/libcjson.so
    ls -l $SYS/include/cjson $SYS/lib
    exit 0
fi

OUT=${OUT:-/tmp/brisk-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/$SYS/lib:${LD_LIBRARY_PATH:-}
export PATH=/usr/local/cuda/bin:$PATH
export PYTHONUNBUFFERED=1
B=build/cuda-dev
MD=/tmp/brisk-models
MODELS="qwen2.5-0.5b qwen2.5-1.5b"
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 )) s] $*"; }

stamp "device"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,clocks.mem --format=csv

stamp "build (make CUDA=1, engine + kernels)"
CF="-O2 -g -std=gnu11 -Wall -Wextra -Wno-unused-parameter -pthread -MMD -MP -Iengine -Ikernels"
CF="$CF -I$SYS/include/cjson -DBRISK_CUDA -I/usr/local/cuda/include"
LL="-L$SYS/lib -lcjson -lm -lpthread -L/usr/local/cuda/lib64 -lcublasLt -lcublas -lcudart -lstdc++"
if ! make -j16 CUDA=1 B=$B LIB_SRC="$(echo engine/*.c)" CFLAGS="$CF" LDLIBS="$LL" \
        $B/tests/test_cuda $B/benchmarks/bench_cuda > "$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log"
    echo "BUILD FAILED"
    exit 1
fi
grep -E "warning|error" "$OUT/build.log" | head -20
ldd $B/tests/test_cuda | grep -E "not found|cjson|cublas|cudart"

stamp "test_cuda"
$B/tests/test_cuda > "$OUT/test_cuda.log" 2>&1
TRC=$?
grep -E "^(ok|FAIL|SKIP)|check failed|passed|device:|rel err" "$OUT/test_cuda.log" | head -80
echo "test_cuda exit $TRC"

stamp "models"
for m in $MODELS; do
    python3 scripts/bench_peer.py make $MD/$m $m tests/fixtures/tok-qwen2/tokenizer.json || exit 1
done

stamp "bench_cuda"
for m in $MODELS; do
    $B/benchmarks/bench_cuda $MD/$m --out "$OUT/cuda_$m.json" --batches 1,2,4,8,32,64,256 \
        --kernels 2>&1 | tee -a "$OUT/bench.log"
done

if [ "$MODE" = full ]; then
    stamp "transformers peer, eager"
    for m in $MODELS; do
        python3 scripts/bench_peer.py bench $MD/$m --out "$OUT/peer_$m.json" --compile-batches "" \
            2>&1 | grep -v Warning | tee -a "$OUT/peer.log"
    done
    stamp "transformers peer, torch.compile (largest model, time-boxed)"
    m=qwen2.5-1.5b
    timeout 170 python3 scripts/bench_peer.py bench $MD/$m --out "$OUT/peerc_$m.json" \
        --batches "" --compile-batches 1,32 --compile-budget 120 2>&1 | grep -v Warning \
        | tail -5 | tee -a "$OUT/peer.log"
fi

stamp "summary"
python3 - "$OUT" $MODELS <<'EOF' | tee "$OUT/summary.txt"
import json, os, sys
out, models = sys.argv[1], sys.argv[2:]
def load(p):
    try:
        return json.load(open(p))
    except Exception:
        return None
for m in models:
    c = load(f"{out}/cuda_{m}.json")
    if not c:
        print(m, ": no brisk results"); continue
    peer = {}
    for name in (f"peer_{m}.json", f"peerc_{m}.json"):
        p = load(f"{out}/{name}") or {}
        for r in p.get("decode", []):
            if "tok_s" in r:
                peer[(r["batch"], r["mode"])] = r["tok_s"]
    print(f"\n{m} on {c['device']}: weights {c['weight_bytes']/1e9:.3f} GB, "
          f"copy bandwidth {c['bandwidth_GBps']:.0f} GB/s, prefill {c['prefill']['tok_s']:.0f} tok/s "
          f"({c['prefill']['tokens']} tokens)")
    print(f"{'batch':>5} {'brisk t/s':>10} {'floor t/s':>10} {'of floor':>8} {'hf eager':>9} "
          f"{'hf compiled':>11} {'x eager':>8} {'x best hf':>9}")
    for r in c["decode"]:
        if r["variant"] != "default":
            continue
        b = r["batch"]
        e, cc = peer.get((b, "eager")), peer.get((b, "compiled"))
        best = max([v for v in (e, cc) if v] or [0])
        fmt = lambda v: f"{v:.1f}" if v else "n/a"
        print(f"{b:>5} {r['tok_s']:>10.1f} {r['floor_tok_s']:>10.1f} {100*r['frac_of_floor']:>7.1f}% "
              f"{fmt(e):>9} {fmt(cc):>11} {(r['tok_s']/e if e else 0):>7.2f}x "
              f"{(r['tok_s']/best if best else 0):>8.2f}x")
    v = [r for r in c["decode"] if r["variant"] != "default"]
    if v:
        print("variants: " + ", ".join(f"b{r['batch']} {r['variant']} {r['tok_s']:.1f} t/s" for r in v))
EOF
tar czf "$OUT/results.tgz" -C "$OUT" $(cd "$OUT" && ls *.json 2>/dev/null) 2>/dev/null
rm -f "$OUT"/*.json "$OUT/build.log.gz"
stamp "done (test_cuda exit $TRC)"
