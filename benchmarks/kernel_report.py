"""Compile every Triton scan kernel for a GPU architecture, without a GPU, and report resources.

Triton's wheel ships ``ptxas`` and ``cuobjdump``, so the kernels can be compiled to machine
code (SASS) for Hopper (``sm_90``) on any Linux machine. For each kernel variant the launchers
use, this prints registers, spills (local memory), shared memory, and counts of the
instructions that decide speed in a memory-bound kernel: global loads and stores and their
width (``LDG.E.128`` is a 16-byte access), ``LDL``/``STL`` (local-memory spills), ``FFMA``
(the float32 block products run on FMA units), ``DFMA``/``DADD``/``DMUL`` (the backward's
float64 suffix sums), ``MUFU.EX2`` (exponentials), barriers.

Arguments are specialised as Triton's JIT does at launch: pointers and sizes divisible by 16,
a unit last stride as a constant.

    python benchmarks/kernel_report.py            # sm_90, value sizes 16 64 256
    python benchmarks/kernel_report.py --arch 100 # another architecture
    python benchmarks/kernel_report.py --sass "fwd fp32" "bwd fp32"  # SASS of these only

Disassembling is the slow part (about 0.4 s of CPU per kernel, against 2 ms for the resource
usage): ``--sass`` limits the instruction counts to the kernels named, and the others report
registers, local and shared memory with empty counts. A kernel with no local memory has no
``LDL``/``STL`` to count.

``tests/test_triton_compile.py`` uses it to check, on every CI run, that the kernels compile
for Hopper with no local-memory spills and with 16-byte global loads.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

# Compile for real, even on a CPU-only machine. This must come before Triton is imported:
# under the interpreter even Triton's own library functions (tl.sum...) are interpreted, so a
# process that imported Triton that way cannot compile (the tests run this in a subprocess).
os.environ.pop("TRITON_INTERPRET", None)

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from aaren_ts._checks import json_option
from aaren_ts.scan import triton_kernels as kernels

BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
OPS = re.compile(
    r"\b(LDG\.E[\.\w]*|STG\.E[\.\w]*|LDGSTS[\.\w]*|LDL[\.\w]*|STL[\.\w]*|FFMA|HMMA[\.\w]*"
    r"|MUFU\.EX2|BAR\.SYNC[\.\w]*|DFMA|DADD|DMUL)"
)


@dataclass
class Report:
    name: str
    registers: int
    local_bytes: int
    shared_bytes: int
    ops: dict[str, int]


def _arg_type(name: str, half: bool) -> str:
    if name in ("s_ptr", "v_ptr", "ds_ptr", "dv_ptr"):
        return "*bf16" if half else "*fp32"
    if name in ("o_ptr", "do_ptr"):
        return "*bf16" if half else "*fp32"
    if name == "counter_ptr":
        return "*i32"
    if name.startswith(("agg_", "inc_")):
        return "*i64"
    if name.endswith(("_g_ptr", "_h_ptr")) and name != "h_ptr":
        return "*fp64"  # the backward's suffix sums
    if name.endswith("_ptr"):
        return "*fp32"
    return "i64" if name.startswith("stride") else "i32"


def compile_kernel(fn, consts: dict, half: bool = False, arch: int = 90, warps: int = 4):
    """Compile ``fn`` as launched with ``consts``: a Triton ``CompiledKernel``."""
    consts = {"stride_vd": 1, **consts} if "stride_vd" in fn.arg_names else dict(consts)
    signature, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in consts:
            signature[name] = "constexpr"
            continue
        signature[name] = _arg_type(name, half)
        if name.endswith("_ptr") or name in ("d", "stride_vr", "stride_vn"):
            attrs[(i,)] = [["tt.divisibility", 16]]
    source = ASTSource(fn, signature, constexprs=consts, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})


def report(name: str, compiled, sass: bool = True) -> Report:
    """Resources of ``compiled``, and its instruction counts when ``sass``."""
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        usage = _run("-res-usage", cubin)
        listing = _run("-sass", cubin) if sass else ""

    def field(key: str) -> int:
        found = re.search(rf"{key}:(\d+)", usage)
        return int(found.group(1)) if found else -1

    ops = collections.Counter(OPS.findall(listing))
    return Report(name, field("REG"), field("LOCAL"), field("SHARED"), dict(sorted(ops.items())))


def _run(flag: str, cubin: Path) -> str:
    return subprocess.run(
        [str(BIN / "cuobjdump"), flag, str(cubin)], capture_output=True, text=True, check=True
    ).stdout


def variants(block_d: int) -> list[tuple[str, object, dict, bool, int]]:
    """``(label, kernel, constants, half inputs, warps)`` as ``triton_scan`` launches them."""
    warps = 4 if block_d <= 64 else 8
    t = {"BLOCK_T": 16, "BLOCK_D": block_d}
    out = []
    for half in (False, True):
        kind = "bf16" if half else "fp32"
        out += [
            (f"fwd {kind}", kernels.fwd_kernel, {**t, "WRITE_OUT": True, "SAVE_F32": half}),
            (f"fwd summary {kind}", kernels.fwd_kernel,
             {**t, "WRITE_OUT": False, "SAVE_F32": False}),
            (f"fwd look-back {kind}", kernels.fwd_lookback_kernel,
             {**t, "SAVE_F32": half, "PUBLISH_INCLUSIVE": True}),
            (f"bwd {kind}", kernels.bwd_kernel,
             {**t, "WRITE_GRADS": True, "H_FROM_O": True, "WRITE_H": False}),
            (f"bwd summary {kind}", kernels.bwd_kernel,
             {**t, "WRITE_GRADS": False, "H_FROM_O": True, "WRITE_H": True}),
            (f"bwd from h {kind}", kernels.bwd_kernel,
             {**t, "WRITE_GRADS": True, "H_FROM_O": False, "WRITE_H": False}),
        ]  # fmt: skip
    out = [(label, fn, consts, "bf16" in label, warps) for label, fn, consts in out]
    out += [
        ("fwd carry", kernels.fwd_carry_kernel, {"BLOCK_D": block_d}, False, warps),
        ("bwd carry", kernels.bwd_carry_kernel, {"BLOCK_D": block_d}, False, warps),
    ]
    return out


def main(argv: list[str] | None = None) -> list[Report]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", type=int, default=90, help="compute capability x10 (90: Hopper)")
    p.add_argument("--block-d", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--json", type=json_option(), help="also write the reports here")
    p.add_argument(
        "--sass", nargs="+", metavar="KERNEL",
        help="count instructions of these kernels only (labels as printed; default: all)",
    )  # fmt: skip
    args = p.parse_args(argv)
    labels = {label for label, *_ in variants(args.block_d[0])}
    if args.sass and set(args.sass) - labels:
        p.error(
            f"--sass: unknown kernels {sorted(set(args.sass) - labels)}; known: {sorted(labels)}"
        )
    reports = []
    print(f"# Triton {triton.__version__}, sm_{args.arch}")
    print("| kernel | BLOCK_D | regs | local B | shared B | SASS ops |")
    print("|---|---|---|---|---|---|")
    for block_d in args.block_d:
        for label, fn, consts, half, warps in variants(block_d):
            sass = args.sass is None or label in args.sass
            r = report(label, compile_kernel(fn, consts, half, args.arch, warps), sass)
            reports.append(r)
            ops = ", ".join(f"{k} {v}" for k, v in r.ops.items())
            print(f"| {label} | {block_d} | {r.registers} | {r.local_bytes} | {r.shared_bytes} "
                  f"| {ops} |", flush=True)  # fmt: skip
    if args.json:
        rows = [{"block_d": b, **asdict(r)} for b, r in zip(
            [b for b in args.block_d for _ in variants(b)], reports, strict=True)]  # fmt: skip
        args.json.write_text(json.dumps(rows, indent=2))
    return reports


if __name__ == "__main__":
    main()
