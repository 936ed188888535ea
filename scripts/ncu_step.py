#!/usr/bin/env python3
"""ncu_step.py CSV [copy GB/s] [N] — one decode step's kernels, as ncu saw them.

Reads `ncu --csv --page raw --metrics gpu__time_duration.sum,
dram__bytes_read.sum,dram__bytes_write.sum` of a bench_cuda run with
--profile-step (one step profiled), and prints each kernel (by name, template
arguments kept, parameters dropped) with its launches, time, DRAM bytes and
the bandwidth they ran at, largest time first, then the sums.  ncu runs the
kernels one at a time, so the sum leaves out the overlap that programmatic
dependent launch gives and the gaps between kernels; it is each kernel's own
cost.  With N, the first N launches are listed one by one as well (grid,
block, time, bytes), the step's first layer and what precedes it."""
import csv
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    bw = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    rows = []
    with open(sys.argv[1], newline="") as f:
        lines = [ln for ln in f if ln.startswith('"')]   # ncu's own log lines are not CSV
    rd = csv.reader(lines)
    head = next(rd, None)
    if head is None:
        sys.exit("ncu_step: no CSV rows in " + sys.argv[1])
    units = next(rd, None)
    col = {n: i for i, n in enumerate(head)}
    need = ["Kernel Name", "gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum"]
    for n in need:
        if n not in col:
            sys.exit("ncu_step: column %s missing" % n)
    scale = {}
    for n in need[1:]:   # to seconds and bytes, whatever unit ncu chose
        u = units[col[n]].strip() if units else ""
        known = {"nsecond": 1e-9, "ns": 1e-9, "usecond": 1e-6, "us": 1e-6, "msecond": 1e-3,
                 "ms": 1e-3, "second": 1.0, "s": 1.0, "byte": 1.0, "B": 1.0, "Kbyte": 1e3,
                 "KB": 1e3, "Mbyte": 1e6, "MB": 1e6, "Gbyte": 1e9, "GB": 1e9}
        if u not in known:
            sys.exit("ncu_step: unit %r of %s not known" % (u, n))
        scale[n] = known[u]
    for r in rd:
        if len(r) < len(head):
            continue
        def num(n):
            v = r[col[n]].replace(",", "")
            try:
                return float(v) * scale[n]
            except ValueError:
                return 0.0
        name = r[col["Kernel Name"]]
        cut = name.find("(")
        name = name[:cut] if cut > 0 else name
        name = name.replace("void ", "")
        grid = r[col["Grid Size"]] if "Grid Size" in col else "?"
        block = r[col["Block Size"]] if "Block Size" in col else "?"
        rows.append((name, num(need[1]), num(need[2]), num(need[3]), grid, block))
    for i, (name, t, rb, wb, grid, block) in enumerate(rows[:first]):
        print("%3d %-44s grid %-14s block %-12s %7.1f us %7.2f MB %6.0f GB/s" % (
            i, name[:44], grid, block, t * 1e6, (rb + wb) / 1e6, (rb + wb) / t / 1e9 if t > 0 else 0))
    agg = {}
    for name, t, rb, wb, _, _ in rows:
        a = agg.setdefault(name, [0, 0.0, 0.0, 0.0])
        a[0] += 1; a[1] += t; a[2] += rb; a[3] += wb
    tot_t = sum(a[1] for a in agg.values())
    tot_b = sum(a[2] + a[3] for a in agg.values())
    print("%-60s %5s %10s %9s %9s %8s %6s" % ("kernel", "n", "us", "MB read", "MB write", "GB/s", "share"))
    for name, a in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        gbs = (a[2] + a[3]) / a[1] / 1e9 if a[1] > 0 else 0.0
        print("%-60s %5d %10.1f %9.1f %9.1f %8.0f %5.1f%%" % (
            name[:60], a[0], a[1] * 1e6, a[2] / 1e6, a[3] / 1e6, gbs, 100 * a[1] / tot_t if tot_t else 0))
    line = "sum: %d launches, %.1f us, %.1f MB, %.0f GB/s" % (
        len(rows), tot_t * 1e6, tot_b / 1e6, tot_b / tot_t / 1e9 if tot_t else 0)
    if bw > 0:
        line += "; the bytes at %.0f GB/s: %.1f us (%.1f%% of the sum)" % (
            bw, tot_b / bw / 1e3, 100 * tot_b / bw / 1e3 / (tot_t * 1e6) if tot_t else 0)
    print(line)


if __name__ == "__main__":
    main()
