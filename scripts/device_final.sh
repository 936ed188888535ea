#!/bin/bash
# device_final.sh — one GPU run that checks and times everything CUDA:
#   scripts/device_final.sh [part]     part: all | cuda | apps
# Binaries are built on the development machine (make CUDA=1 B=build-cuda)
# and travel in .dev/bin with the shared libraries the GPU machine lacks in
# .dev/lib (scripts/device_final.sh pack), and the datasets in .dev/data.
set -u -o pipefail
PART=${1:-all}
if [ "$PART" = pack ]; then
    rm -rf .dev/bin .dev/lib && mkdir -p .dev/bin .dev/lib
    cp build-cuda/brisk build-cuda/tests/test_cuda build-cuda/benchmarks/bench_cuda \
       build-cuda/benchmarks/bench_spec build-cuda/benchmarks/bench_tools .dev/bin/
    for so in $(ldd build-cuda/brisk | awk '$3 ~ /^\// {print $3}' | grep -v -E 'libc\.so|libm\.so|libpthread|libdl|librt|ld-linux|libstdc|libgcc|cuda|cublas'); do
        cp -L "$so" .dev/lib/
    done
    du -sh .dev/bin .dev/lib
    exit 0
fi
OUT=${OUT:-/tmp/brisk-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.dev/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1
BIN=.dev/bin
MD=/tmp/brisk-models
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 )) s] $*"; }
stamp device; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
ldd $BIN/brisk | grep "not found"
for m in qwen2.5-0.5b qwen2.5-1.5b; do
    [ -d $MD/$m ] || $BIN/brisk mkmodel --preset $m --out $MD/$m --tokenizer tests/fixtures/tok-qwen2/tokenizer.json
done
if [ "$PART" != apps ]; then
    stamp test_cuda
    $BIN/test_cuda > "$OUT/test_cuda.log" 2>&1; echo "test_cuda exit $?"
    grep -E "^(FAIL|SKIP)|check failed|passed" "$OUT/test_cuda.log" | head -30
    stamp bench_cuda
    for m in qwen2.5-1.5b qwen2.5-0.5b; do
        $BIN/bench_cuda $MD/$m --out "$OUT/cuda_$m.json" --batches 1,8,32,64,256 2>&1 | tail -12
    done
    stamp "bench_cuda BRISK_ATTN=2"
    BRISK_ATTN=2 $BIN/bench_cuda $MD/qwen2.5-1.5b --out "$OUT/cuda2_qwen2.5-1.5b.json" --batches 1,8,32,64,256 2>&1 | tail -12
    stamp "transformers peer (eager all, compiled b1/b32 time-boxed)"
    python3 scripts/bench_peer.py bench $MD/qwen2.5-1.5b --out "$OUT/peer_qwen2.5-1.5b.json" --compile-batches "" 2>&1 | grep -v Warning | tail -8
    timeout 200 python3 scripts/bench_peer.py bench $MD/qwen2.5-1.5b --out "$OUT/peerc_qwen2.5-1.5b.json" \
        --batches "" --compile-batches 1,32 --compile-budget 150 2>&1 | grep -v Warning | tail -5
fi
if [ "$PART" != cuda ]; then
    stamp "speculative decoding (n-gram, draft = 0.5B for 1.5B)"
    $BIN/bench_spec --cuda --model $MD/qwen2.5-1.5b --draft $MD/qwen2.5-0.5b --data .dev/data/math500/test.jsonl \
        --limit 4 --batch 1,8 --max-tokens 128 --out "$OUT/spec.json" 2>&1 | tail -25
    stamp "math500 TTS (random weights: latency only)"
    timeout 200 $BIN/brisk bench math500 --cuda --model $MD/qwen2.5-0.5b --data .dev/data/math500/test.jsonl \
        --limit 4 --max-tokens 128 --out "$OUT/math500.json" 2>&1 | tail -20
    stamp "tools: partial execution (scripted agent, real tools, local web)"
    timeout 150 $BIN/bench_tools --cuda --model $MD/qwen2.5-1.5b --requests 4 --out "$OUT/tools.json" 2>&1 | tail -16
    stamp "ParallelPrompt replay"
    for f in keyword_extraction reading_comprehension; do
        timeout 100 $BIN/brisk replay parallelprompt .dev/data/parallelprompt/lmsys_old/${f}_lmsys.json --cuda \
            --model $MD/qwen2.5-0.5b --limit 40 --max-tokens 48 --out "$OUT/pp_$f.json" 2>&1 | tail -6
    done
fi
cd "$OUT" && tar czf results.tgz $(ls *.json *.svg *.log 2>/dev/null) && rm -f *.json *.svg
stamp done
