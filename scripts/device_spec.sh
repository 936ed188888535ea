#!/bin/bash
# device_spec.sh — speculative decoding on the GPU machine (the device
# tool's `run`, from the repository root, carrying .dev for the cJSON
# sysroot and the MATH-500 copy):
#
#   scripts/device_spec.sh [quick|full|models]
#
# 1. builds bench_spec and test_spec with the CUDA backend (engine/ and
#    kernels/ only, as scripts/device_cuda.sh does);
# 2. runs test_spec (CPU, the machine's cores);
# 3. bench_spec --cuda on the tiny fixtures: every answer must be token for
#    token the one without speculation;
# 4. (full, models) random-weight Qwen2.5-0.5B and -1.5B (scripts/bench_peer.py
#    make): 1.5B with 0.5B as draft model, and 0.5B drafting for itself
#    (acceptance 1: the ceiling of what drafting can give).  Random weights
#    make acceptance meaningless for real text; the step times and the cost
#    model's choices are what these runs show.
# Results: $OUT/spec.log and the JSON files in $OUT/spec_results.tgz.
set -u -o pipefail
MODE=${1:-full}
SYS=.dev/sysroot
OUT=${OUT:-/tmp/brisk-out}
DATA=${DATA:-.dev/data/math500/test.jsonl}
mkdir -p "$OUT" benchmarks/results
export LD_LIBRARY_PATH=$PWD/$SYS/lib:${LD_LIBRARY_PATH:-}
export PATH=/usr/local/cuda/bin:$PATH
export PYTHONUNBUFFERED=1
B=build/cuda-dev
MD=/tmp/brisk-models
T0=$(date +%s)
LOG="$OUT/spec.log"
stamp() { echo "== [$(( $(date +%s) - T0 )) s] $*" | tee -a "$LOG"; }

stamp "device"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee -a "$LOG"

stamp "build (make CUDA=1, engine + kernels)"
CF="-O2 -g -std=gnu11 -Wall -Wextra -Wno-unused-parameter -pthread -MMD -MP -Iengine -Ikernels"
CF="$CF -I$SYS/include/cjson -DBRISK_CUDA -I/usr/local/cuda/include"
LL="-L$SYS/lib -lcjson -lm -lpthread -L/usr/local/cuda/lib64 -lcublasLt -lcublas -lcudart -lstdc++"
if ! make -j16 CUDA=1 B=$B LIB_SRC="$(echo engine/*.c)" CFLAGS="$CF" LDLIBS="$LL" \
        $B/tests/test_spec $B/benchmarks/bench_spec > "$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log"
    echo "BUILD FAILED"
    exit 1
fi
grep -E "warning|error" "$OUT/build.log" | head -20

if [ "$MODE" != models ]; then
stamp "test_spec (CPU)"
$B/tests/test_spec > "$OUT/test_spec.log" 2>&1
echo "test_spec exit $?" | tee -a "$LOG"
grep -E "^(ok|FAIL)|check failed|passed" "$OUT/test_spec.log" | tee -a "$LOG"
fi

run_bench() {   # name, then bench_spec arguments
    local name=$1
    shift
    stamp "bench_spec $name"
    $B/benchmarks/bench_spec --data "$DATA" --out "benchmarks/results/spec_$name.json" "$@" \
        2>&1 | tee -a "$LOG"
}

[ "$MODE" != models ] && run_bench tiny-llama-cuda --cuda --model tests/fixtures/tiny-llama --draft tests/fixtures/tiny-llama \
    --limit 16 --batch 1,8 --k 2,4 --max-tokens 128
[ "$MODE" != models ] && run_bench tiny-qwen2-cuda --cuda --model tests/fixtures/tiny-qwen2 \
    --draft tests/fixtures/tiny-qwen2-f16 --limit 16 --batch 1,8 --k 2,4 --max-tokens 128
[ "$MODE" != models ] && run_bench tiny-llama-cpu --model tests/fixtures/tiny-llama --draft tests/fixtures/tiny-llama \
    --limit 8 --batch 1,8 --k 2,4 --max-tokens 128 --threads 4 --draft-threads 1

if [ "$MODE" != quick ]; then
    stamp "models"
    for m in qwen2.5-0.5b qwen2.5-1.5b; do
        python3 scripts/bench_peer.py make $MD/$m $m tests/fixtures/tok-qwen2/tokenizer.json \
            2>&1 | tail -1 | tee -a "$LOG" || exit 1
    done
    run_bench qwen1.5b-draft0.5b --cuda --model $MD/qwen2.5-1.5b --draft $MD/qwen2.5-0.5b \
        --limit 8 --batch 1,16 --k 2,4 --max-tokens 128
    run_bench qwen0.5b-self --cuda --model $MD/qwen2.5-0.5b --draft $MD/qwen2.5-0.5b \
        --limit 8 --batch 1,16 --k 4 --max-tokens 128
fi
tar czf "$OUT/spec_results.tgz" benchmarks/results/spec_*.json 2>/dev/null
stamp "done"
