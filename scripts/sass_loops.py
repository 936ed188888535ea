#!/usr/bin/env python3
"""sass_loops.py — what a kernel's loops issue, without a GPU.

    scripts/sass_loops.py --fetch
        downloads NVIDIA's nvdisasm (PyPI: nvidia-cuda-nvdisasm) into
        .dev/nvdisasm (ignored by git); the toolkit here has nvcc and ptxas
        but no disassembler
    scripts/sass_loops.py FILE.cu REGEX [--regions] [--dump N]
        compiles FILE.cu to sm_90a machine code with the Makefile's flags
        (ptxas -v: registers and spills), disassembles it and, for each
        function whose mangled name matches REGEX, prints its instruction
        count and every loop (a backward branch: the instructions from its
        target to it) with its size and most frequent opcodes; --regions
        also splits the function at its BAR instructions (what a block does
        between barriers); --dump N prints the loops of N instructions.

The counts are static: a loop's body as compiled, both sides of a branch
inside it included.  They answered, for example, why kern_qskinny's staging
cost ~70 instructions a 16-byte copy (two integer divisions by run-time
values a piece: kernels/NOTES.md v34).
"""
import collections
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEST = os.path.join(ROOT, ".dev", "nvdisasm")
FLAGS = ["-O3", "-std=c++17", "-gencode=arch=compute_90a,code=sm_90a", "-Iengine", "-Ikernels"]


def nvdisasm():
    if os.environ.get("NVDISASM"):
        return os.environ["NVDISASM"]
    found = glob.glob(os.path.join(DEST, "**", "bin", "nvdisasm"), recursive=True)
    if not found:
        sys.exit("sass_loops: no nvdisasm; run scripts/sass_loops.py --fetch (or set NVDISASM)")
    return found[0]


def fetch():
    os.makedirs(DEST, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", DEST, "nvidia-cuda-nvdisasm"],
                   check=True)
    for whl in glob.glob(os.path.join(DEST, "*.whl")):
        subprocess.run([sys.executable, "-m", "zipfile", "-e", whl, DEST], check=True)
    for f in glob.glob(os.path.join(DEST, "**", "bin", "nvdisasm"), recursive=True):
        os.chmod(f, 0o755)
        print(f)


def functions(sass):
    """{mangled name: [(opcode, operands) or ('LABEL', name)]}"""
    out, name = {}, None
    for line in sass.split("\n"):
        m = re.match(r"\.text\.(\S+):$", line)
        if m:
            name = m.group(1)
            out[name] = []
            continue
        if name is None:
            continue
        m = re.match(r"\s+/\*[0-9a-f]+\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)(.*);", line)
        if m:
            out[name].append((m.group(2), m.group(3).strip()))
        elif re.match(r"\.L_x_\d+:$", line.strip()):
            out[name].append(("LABEL", line.strip()[:-1]))
    return out


def histogram(body, n=10):
    c = collections.Counter(op.split(".")[0] for op, _ in body if op != "LABEL")
    return ", ".join("%s %d" % kv for kv in c.most_common(n))


def report(name, ins, regions, dump):
    code = [x for x in ins if x[0] != "LABEL"]
    print("%s: %d instructions" % (name, len(code)))
    at = {rest: i for i, (op, rest) in enumerate(ins) if op == "LABEL"}
    for i, (op, rest) in enumerate(ins):
        m = re.search(r"`\((\.L_x_\d+)\)", rest) if op.startswith("BRA") else None
        if m and m.group(1) in at and at[m.group(1)] < i:
            body = [x for x in ins[at[m.group(1)]:i + 1] if x[0] != "LABEL"]
            print("  loop of %4d: %s" % (len(body), histogram(body)))
            if dump and len(body) == dump:
                for op2, rest2 in body:
                    print("      %s %s" % (op2, rest2))
    if regions:
        cur = []
        for op, rest in code:
            cur.append((op, rest))
            if op.startswith("BAR"):
                print("  to a barrier %4d: %s" % (len(cur), histogram(cur)))
                cur = []
        print("  to the end   %4d: %s" % (len(cur), histogram(cur)))


def main(argv):
    if argv[:1] == ["--fetch"]:
        return fetch()
    if len(argv) < 2:
        sys.exit(__doc__)
    src, pat = argv[0], re.compile(argv[1])
    regions = "--regions" in argv
    dump = int(argv[argv.index("--dump") + 1]) if "--dump" in argv else 0
    cubin = "/tmp/sass_loops_%d.cubin" % os.getpid()
    r = subprocess.run(["nvcc"] + FLAGS + ["-Xptxas", "-v", "-cubin", "-o", cubin, src], cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr)
    ptxas = r.stderr.split("\n")
    sass = subprocess.run([nvdisasm(), "-c", cubin], capture_output=True, text=True, check=True).stdout
    os.unlink(cubin)
    for name, ins in functions(sass).items():
        if not pat.search(name):
            continue
        for j, l in enumerate(ptxas):   # registers and spills, as ptxas reported them
            if "Function properties for " + name in l:
                print(" ".join(x.strip() for x in ptxas[j + 1:j + 3]))
        report(name, ins, regions, dump)


if __name__ == "__main__":
    main(sys.argv[1:])
