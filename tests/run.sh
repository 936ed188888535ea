#!/bin/sh
# Runs every test binary in $1 and prints the closing "N passed, N failed,
# N skipped" summed over all of them.  A binary that crashes counts as one
# failure.
dir=${1:-build/tests}
pass=0; fail=0; skip=0
for t in "$dir"/test_*; do
    [ -x "$t" ] || continue
    echo "== $(basename "$t")"
    out=$("$t" 2>&1); rc=$?
    echo "$out"
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' | tail -1)
    if [ -n "$line" ]; then
        p=$(echo "$line" | cut -d' ' -f1); f=$(echo "$line" | cut -d' ' -f3)
        s=$(echo "$line" | cut -d' ' -f5)
        pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
        [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && fail=$((fail + 1))
    else
        echo "FAIL $(basename "$t") exited $rc without a summary"; fail=$((fail + 1))
    fi
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
