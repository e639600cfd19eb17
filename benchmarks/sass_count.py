"""SASS instructions per element in the main loop of each CUDA kernel of a built bce_ext.

    python benchmarks/sass_count.py [bce_ext/_C*.so] [--kernel REGEX] [--arch sm_90]

Disassembles the extension with cuobjdump (from $CUDA_HOME/bin, PATH, or the copy that ships with
triton), finds each kernel's main loop (the backward branch that spans the most instructions) and
counts the instructions on paths through one iteration of it, from its first instruction to the
backward branch: the loop's control flow is a DAG once that branch is removed. Paths are told apart
by their 128-bit global loads and stores (the vectorised iteration has the most), and among those
the shortest and longest are reported: in the current kernels the shortest is the hard-label path
(one log per element) and the longest the soft-label path; in the kernels before issue 13 (no
hard-label path) the shortest is the unweighted iteration. Per element = per iteration / elements
per iteration (16 bytes of the dtype: float64 2, float32 4, float16 and bfloat16 8).

A static count, not a measurement: it says how many instructions the SM must issue per element on
that path, which bounds the forward's throughput when it is issue-bound (benchmarks/CUDA_NOTES.md).
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict

ELEMENTS_PER_ITERATION = {"d": 2, "f": 4, "N3c104HalfE": 8, "N3c108BFloat16E": 8}
DTYPE_NAMES = {"d": "float64", "f": "float32", "N3c104HalfE": "float16",
               "N3c108BFloat16E": "bfloat16"}
INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")


def find_cuobjdump():
    candidates = [os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "cuobjdump"),
                  shutil.which("cuobjdump")]
    try:
        import triton  # noqa: F401  (ships cuobjdump where a bare toolkit has none)
        candidates.append(os.path.join(os.path.dirname(sys.modules["triton"].__file__),
                                       "backends", "nvidia", "bin", "cuobjdump"))
    except ImportError:
        pass
    for c in candidates:
        if c and os.path.exists(c):
            return c
    sys.exit("cuobjdump not found: set CUDA_HOME")


def functions(sass_text):
    """{mangled name: [(address, opcode, operands, predicated)]}."""
    out, name = {}, None
    for line in sass_text.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            name = m.group(1)
            out[name] = []
            continue
        m = INSTRUCTION.search(line)
        if m and name:
            out[name].append((int(m.group(1), 16), m.group(3), m.group(4).strip(),
                              bool(m.group(2))))
    return out


def branch_target(operands):
    m = re.match(r"(?:`\(\.L_x_\d+\)|0x([0-9a-f]+))", operands)
    return int(m.group(1), 16) if m and m.group(1) else None


def loops(code):
    """(first index, backward-branch index) of every loop."""
    index = {addr: i for i, (addr, *_rest) in enumerate(code)}
    found = []
    for i, (addr, op, operands, _pred) in enumerate(code):
        if op.startswith("BRA"):
            target = branch_target(operands)
            if target is not None and target < addr and target in index:
                found.append((index[target], i))
    return found


def main_loop(code):
    """The vectorised main loop and its path counts: of the loops whose paths make the most 128-bit
    accesses, the one with the fewest instructions (where a kernel has a loop for aligned operands
    and a general one, the former)."""
    best = None
    for first, last in loops(code):
        counts = path_counts(code, first, last)
        if not counts:
            continue
        key = (max(k[0] + k[1] for k in counts), -(last - first))
        if best is None or key > best[0]:
            best = (key, (first, last), counts)
    return (best[1], best[2]) if best else (None, None)


def features(op):
    """What tells paths apart: 128-bit loads, 128-bit stores, and FCHK (one per float32 IEEE
    division: the backward's grad_input has one per element, grad_target another)."""
    return (int(op.startswith("LDG.E.128")), int(op.startswith("STG.E.128")), int(op == "FCHK"))


def path_counts(code, first, last):
    """{(128-bit loads, 128-bit stores, FCHK): (min, max) instructions} over the paths from
    instruction `first` to `last` (the backward branch), both included."""
    index = {code[i][0]: i for i in range(first, last + 1)}
    memo = {}

    def walk(i):
        if i in memo:
            return memo[i]
        _addr, op, operands, pred = code[i]
        here = features(op)
        succ = []
        if i == last:
            memo[i] = {here: (1, 1)}
            return memo[i]
        if op.startswith("BRA"):
            target = branch_target(operands)
            if target in index and index[target] > i:
                succ.append(index[target])
            if pred or op.startswith("BRA.DIV"):
                succ.append(i + 1)
        elif op == "EXIT":
            if pred:
                succ.append(i + 1)
        else:
            succ.append(i + 1)
        res = {}
        for s in succ:
            if s > last:
                continue
            for key, (lo, hi) in walk(s).items():
                k2 = tuple(a + b for a, b in zip(key, here))
                old = res.get(k2)
                res[k2] = (min(lo + 1, old[0]), max(hi + 1, old[1])) if old else (lo + 1, hi + 1)
        memo[i] = res
        return res

    sys.setrecursionlimit(100000)
    return walk(first)


# The kernels' variant flags (csrc/cuda/kernel_variants.cuh: Variant), bit by bit.
FLAG_NAMES = ["reduce", "strict", "weight", "pos_weight", "smooth", "grad_scalar", "ignore"]


def kernel_label(mangled):
    """(kernel name, dtype key, label) from a mangled name: the loss (its formulas' class), the
    dtype and the variant flags, e.g. forward_kernel<Bce, float32, reduce|weight>."""
    m = re.search(r"\d([a-z_]+_kernel)I(?:NS_6losses(\d+)(\w+?)I.*?EEEE)?"
                  r"(d|f|N3c104HalfE|N3c108BFloat16E)(?:Li(\d+)E)?", mangled)
    if not m:
        return None
    name, loss, dtype, flags = m.group(1), m.group(3), m.group(4), m.group(5)
    if loss:
        loss = loss[:int(m.group(2))]
    bits = [FLAG_NAMES[b] for b in range(len(FLAG_NAMES)) if flags and int(flags) >> b & 1]
    parts = [p for p in (loss, DTYPE_NAMES[dtype], "|".join(bits) or (flags and "-")) if p]
    return name, dtype, f"{name}<{', '.join(parts)}>"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("so", nargs="?", default=None)
    parser.add_argument("--kernel", default=".", help="regex on the kernel label")
    parser.add_argument("--arch", default="sm_90")
    args = parser.parse_args()
    so = args.so or sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "bce_ext",
                                                  "_C*.so")))[0]
    sass = subprocess.run([find_cuobjdump(), "-sass", "-arch", args.arch, so], check=True,
                          capture_output=True, text=True).stdout
    rows = defaultdict(list)
    for mangled, code in functions(sass).items():
        label = kernel_label(mangled)
        if not label or not code:
            continue
        name, dtype, text = label
        if not re.search(args.kernel, text):
            continue
        loop, counts = main_loop(code)
        if loop is None:
            continue
        widest = max(key[0] for key in counts)
        per = ELEMENTS_PER_ITERATION[dtype]
        for key, (lo, hi) in sorted(counts.items()):
            # The vectorised iteration, and for the backward one or two divisions per element.
            if key[0] == widest and key[2] in (0, per, 2 * per):
                rows[name].append((text, per, key, lo, hi))
    print("Paths through one iteration of each kernel's main loop with the most 128-bit loads,")
    print("by (128-bit loads, 128-bit stores, FCHK) on the path; min and max instructions.")
    print(f"{'kernel<loss, dtype, variant>':64} {'elems':>5} {'ld,st,div':>9} "
          f"{'min/iter':>8} {'max/iter':>8} {'min/elem':>8} {'max/elem':>8}")
    for name in sorted(rows):
        for text, per, key, lo, hi in sorted(rows[name]):
            print(f"{text:64} {per:5d} {','.join(map(str, key)):>9} {lo:8d} {hi:8d} "
                  f"{lo / per:8.1f} {hi / per:8.1f}")

if __name__ == "__main__":
    main()
