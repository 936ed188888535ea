#!/usr/bin/env python3
"""ncu_sass_top.py CSV [N] — the N (default 40) SASS instructions with the most
warp stall samples, from `ncu --page source --print-source sass --csv`
(SourceCounters and WarpStateStats sections), each with its share of all
samples and the instruction; then the samples by opcode."""
import csv
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    with open(sys.argv[1], newline="") as f:
        lines = [ln for ln in f if ln.startswith('"')]
    rd = csv.reader(lines)
    head = next((r for r in rd if r and r[0] == "Address"), None)   # after the kernel's name
    if head is None:
        sys.exit("ncu_sass_top: no header row (Address, Source, ...)")
    col = {n: i for i, n in enumerate(head)}
    samp = next((n for n in head if n.startswith("Warp Stall Sampling (All")), None)
    src = "Source" if "Source" in col else None
    if samp is None or src is None:
        sys.exit("ncu_sass_top: columns missing; have: " + ", ".join(head[:30]))
    rows = []
    for r in rd:
        if len(r) < len(head):
            continue
        try:
            n = float(r[col[samp]].replace(",", "") or 0)
        except ValueError:
            continue
        rows.append((n, r[col["Address"]] if "Address" in col else "", r[col[src]]))
    total = sum(n for n, _, _ in rows) or 1.0
    print("%d instructions, %.0f stall samples" % (len(rows), total))
    for n, addr, text in sorted(rows, key=lambda x: -x[0])[:top]:
        print("%6.2f%%  %-8s %s" % (100 * n / total, addr, text.strip()[:110]))
    ops = {}
    for n, _, text in rows:
        t = text.strip().split()
        op = t[0] if t else "?"
        if op.startswith("@") and len(t) > 1:
            op = t[1]
        ops[op.split(".")[0]] = ops.get(op.split(".")[0], 0) + n
    print("by opcode: " + ", ".join("%s %.1f%%" % (o, 100 * n / total)
                                    for o, n in sorted(ops.items(), key=lambda x: -x[1])[:16]))


if __name__ == "__main__":
    main()
