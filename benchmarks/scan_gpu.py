"""GPU benchmark of the fused Triton scan: one table, two shape families, one run.

Run as ``python benchmarks/scan.py --device cuda`` (or this file directly). Value size 64,
float32. Shapes ``(B*H, N)``:

- throughput: B*H = 512, N in 1k, 4k, 16k, 64k;
- long sequence, little batch: B*H*N = 512*1024, i.e. (512, 1k), (128, 4k), (32, 16k),
  (8, 64k), plus (8, 1M).

Columns: Triton forward and forward+backward (ms, median of ``triton.testing.do_bench``),
achieved GB/s over the minimal bytes of the forward (scores and values read once, outputs
written once), the copy bandwidth of the same GPU on the same bytes (a device-to-device copy,
bytes read plus written), the PyTorch (chunked) path's forward, causal
``scaled_dot_product_attention`` on (B, H, N, 64) in bfloat16 with one query per row expanded
over the sequence (the same outputs), the per-token step of a 2-layer d_model=128 Aaren stack
at batch 64 replayed as a CUDA graph (``StepGraph``) with a state that has absorbed N tokens,
and the step of the same-size Transformer with a KV cache of N tokens. The issue's targets
are checked at the end (PASS/FAIL) and the rows go to ``benchmarks/results/scan_<gpu>.json``.

``--lookback`` adds the single-pass split (decoupled look-back, ``split="lookback"`` of
``aaren_ts.scan.triton_scan``) for the rows that split: its forward time and its share of copy
bandwidth. It is a separate flag because that kernel's waiting between programs has only been
checked in Triton's interpreter, which runs programs one after another; run it after the
plain table.

Without CUDA, ``--quick`` runs tiny shapes on the CPU through Triton's interpreter
(``TRITON_INTERPRET=1``): it checks that the script works; its times mean nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from aaren_ts._checks import json_option  # noqa: E402

THROUGHPUT = [(512, 1 << 10), (512, 1 << 12), (512, 1 << 14), (512, 1 << 16)]
LONG = [(512, 1 << 10), (128, 1 << 12), (32, 1 << 14), (8, 1 << 16), (8, 1 << 20)]
QUICK_THROUGHPUT = [(2, 32), (2, 128)]
QUICK_LONG = [(2, 32), (1, 128)]
DH = 64
STEP_BATCH, STEP_D, STEP_LAYERS, STEP_HEADS = 64, 128, 2, 4
SDPA_MAX_N = 1 << 16  # causal SDPA is O(N^2): the 1M row would take minutes per call
KV_MAX_BYTES = 16 << 30


def _bench(fn: Callable[[], object], device: torch.device, quick: bool) -> float:
    """Median milliseconds (CUDA events through ``do_bench``; a host clock on CPU)."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))
    fn()
    times = []
    for _ in range(1 if quick else 3):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _try(fn: Callable[[], float]) -> float | str:
    """A measurement, or why it could not be made (out of memory)."""
    try:
        return fn()
    except torch.OutOfMemoryError:
        return "oom"
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def lookback_ms(s: torch.Tensor, v: torch.Tensor, device: torch.device, quick: bool) -> float:
    """Forward with the decoupled look-back split (checked against the default path first)."""
    from aaren_ts.scan import init_state, triton_scan

    state = init_state(s.shape[0], v.shape[-1], device=device)
    with torch.no_grad():
        ref = triton_scan.triton_attention(s, v, state, split="two-pass")[0]
        got = triton_scan.triton_attention(s, v, state, split="lookback")[0]
        err = ((got - ref).abs().max() / ref.abs().max()).item()
        if not err <= 1e-5:
            raise RuntimeError(f"look-back forward differs from the two-pass one: {err:.2e}")
        return _bench(lambda: triton_scan.triton_attention(s, v, state, split="lookback"),
                      device, quick)  # fmt: skip


def measure_scan(
    bh: int, n: int, device: torch.device, quick: bool, lookback: bool = False
) -> dict:
    from aaren_ts.scan import aaren_attention

    gen = torch.Generator(device=device).manual_seed(bh * n)
    s = torch.randn(bh, n, device=device, generator=gen)
    v = torch.randn(bh, n, DH, device=device, generator=gen)
    row: dict = {"bh": bh, "n": n}

    def fwd(backend: str) -> Callable[[], object]:
        def call():
            with torch.no_grad():
                return aaren_attention(s, v, backend=backend)

        return call

    row["fwd_ms"] = _try(lambda: _bench(fwd("triton"), device, quick))
    row["fwdbwd_ms"] = _try(lambda: fwd_bwd_ms(s, v, gen, device, quick))
    minimal = (s.numel() + 2 * v.numel()) * 4  # scores + values read, outputs written
    if isinstance(row["fwd_ms"], float):
        row["gbps"] = minimal / row["fwd_ms"] / 1e6
    row["copy_gbps"] = copy_gbps(v, device, quick)
    if lookback:
        from aaren_ts.scan import triton_scan

        if triton_scan.choose_segments(bh, n, device) > 1:
            row["lookback_fwd_ms"] = _try(lambda: lookback_ms(s, v, device, quick))
            if isinstance(row["lookback_fwd_ms"], float):
                row["lookback_pct_copy"] = (
                    100 * minimal / row["lookback_fwd_ms"] / 1e6 / row["copy_gbps"]
                )
    row["torch_fwd_ms"] = _try(lambda: _bench(fwd("chunked"), device, quick))
    row["sdpa_ms"] = _try(lambda: sdpa_ms(s, v, device, quick)) if n <= SDPA_MAX_N else "skip"
    return row


def fwd_bwd_ms(s, v, gen, device: torch.device, quick: bool) -> float:
    """Forward and backward (gradients of scores and values) through the Triton kernels."""
    from aaren_ts.scan import aaren_attention

    s_g, v_g = s.clone().requires_grad_(), v.clone().requires_grad_()
    up = torch.randn(v.shape, device=device, generator=gen)

    def call():
        out = aaren_attention(s_g, v_g, backend="triton")
        return torch.autograd.grad(out, (s_g, v_g), up)

    return _bench(call, device, quick)


def copy_gbps(v: torch.Tensor, device: torch.device, quick: bool) -> float:
    """Device-to-device copy of ``v``'s bytes, counting bytes read plus bytes written."""
    dst = torch.empty_like(v)
    ms = _bench(lambda: dst.copy_(v), device, quick)
    return 2 * v.numel() * v.element_size() / ms / 1e6


def sdpa_ms(s: torch.Tensor, v: torch.Tensor, device: torch.device, quick: bool) -> float:
    """Causal SDPA with one learned query per row: equal (B, H, N, Dh), bfloat16."""
    bh, n = s.shape
    heads = math.gcd(bh, 8)
    shape = (bh // heads, heads, n, DH)
    q = torch.randn(*shape[:2], 1, DH, device=device, dtype=torch.bfloat16).expand(shape)
    k = torch.randn(shape, device=device, dtype=torch.bfloat16)
    vv = v.reshape(shape).to(torch.bfloat16)

    def call():
        with torch.no_grad():
            return F.scaled_dot_product_attention(q, k, vv, is_causal=True)

    return _bench(call, device, quick)


def step_models(device: torch.device):
    from aaren_ts.nn import Aaren, CausalTransformer

    torch.manual_seed(0)
    aaren = Aaren(STEP_D, STEP_LAYERS, STEP_HEADS).to(device).eval()
    transformer = CausalTransformer(STEP_D, STEP_LAYERS, STEP_HEADS).to(device).eval()
    return aaren, transformer


def measure_steps(n: int, models, device: torch.device, quick: bool) -> dict:
    """Aaren step (CUDA graph) after absorbing ``n`` tokens, and the KV-cache step at ``n``."""
    from aaren_ts.nn import KVCache, StepGraph, TransformerState

    aaren, transformer = models
    row: dict = {}
    with torch.no_grad():
        state = aaren.init_state(STEP_BATCH, device)
        chunk = min(n, 1 << 14)
        for start in range(0, n, chunk):  # absorb n tokens in parallel chunks
            x = torch.randn(STEP_BATCH, min(chunk, n - start), STEP_D, device=device)
            _, state = aaren(x, state)
        stepper = StepGraph(aaren, STEP_BATCH)
        x_t = torch.randn(STEP_BATCH, STEP_D, device=device)
        held = stepper.load_state(state) if stepper.captured else state

        def aaren_step():
            return stepper.step(x_t, held)  # same input state each call: timing only

        row["step_us"] = _bench(aaren_step, device, quick) * 1e3
        row["step_graph"] = stepper.captured
        d_head = STEP_D // STEP_HEADS
        cache_bytes = 2 * STEP_LAYERS * STEP_BATCH * n * STEP_D * 4
        if cache_bytes * 2 > KV_MAX_BYTES:
            row["kv_step_us"] = "skip"
            return row

        def kv() -> KVCache:
            shape = (STEP_BATCH, STEP_HEADS, n, d_head)
            return KVCache(torch.randn(shape, device=device), torch.randn(shape, device=device))

        caches = tuple(kv() for _ in range(STEP_LAYERS))
        kv_state = TransformerState(caches, torch.tensor(n, device=device))
        row["kv_step_us"] = _try(
            lambda: _bench(lambda: transformer.step(x_t, kv_state), device, quick) * 1e3
        )
    return row


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return "-" if x is None else str(x)


COLUMNS = [
    ("family", "family"),
    ("bh", "B*H"),
    ("n", "N"),
    ("fwd_ms", "triton fwd ms"),
    ("lookback_fwd_ms", "look-back fwd ms"),
    ("lookback_pct_copy", "look-back % of copy"),
    ("fwdbwd_ms", "triton fwd+bwd ms"),
    ("gbps", "fwd GB/s"),
    ("copy_gbps", "copy GB/s"),
    ("pct_copy", "fwd % of copy"),
    ("torch_fwd_ms", "pytorch fwd ms"),
    ("sdpa_ms", "SDPA bf16 ms"),
    ("sdpa_x", "SDPA / triton fwd"),
    ("step_us", "aaren step us"),
    ("kv_step_us", "KV-cache step us"),
]


def table(rows: list[dict]) -> str:
    columns = [(k, t) for k, t in COLUMNS if any(k in r for r in rows)]
    lines = ["| " + " | ".join(title for _, title in columns) + " |"]
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(key)) for key, _ in columns) + " |")
    return "\n".join(lines)


def derive(row: dict) -> None:
    if isinstance(row.get("gbps"), float):
        row["pct_copy"] = 100 * row["gbps"] / row["copy_gbps"]
    if isinstance(row.get("sdpa_ms"), float) and isinstance(row.get("fwd_ms"), float):
        row["sdpa_x"] = row["sdpa_ms"] / row["fwd_ms"]


def targets(rows: list[dict]) -> list[str]:
    """The issue's targets, each PASS/FAIL with the measured number."""
    out = []

    def check(ok: bool, text: str) -> None:
        out.append(f"{'PASS' if ok else 'FAIL'}: {text}")

    def num(x) -> float:
        return x if isinstance(x, float) else math.nan

    for r in rows:
        pct = num(r.get("pct_copy"))
        if r["family"] == "throughput" and r["n"] >= 4096:
            check(pct >= 85, f"throughput ({r['bh']}, {r['n']}) fwd {pct:.0f}% of copy (>= 85%)")
        if r["family"] == "long":
            check(pct >= 70, f"long ({r['bh']}, {r['n']}) fwd {pct:.0f}% of copy (>= 70%)")
        ratio = num(r.get("fwdbwd_ms")) / num(r.get("fwd_ms"))
        check(ratio <= 3.5, f"({r['bh']}, {r['n']}) fwd+bwd = {ratio:.2f}x fwd (<= 3.5x)")
        if r["family"] == "long" and r["n"] in (1 << 14, 1 << 16):
            need = 15 if r["n"] == 1 << 14 else 60
            x = num(r.get("sdpa_x"))
            check(x >= need, f"long ({r['bh']}, {r['n']}) {x:.1f}x faster than SDPA (>= {need}x)")
    steps = [num(r.get("step_us")) for r in rows]
    check(max(steps) <= 50, f"Aaren step at most {max(steps):.1f} us over all N (<= 50 us)")
    check(
        max(steps) <= 1.5 * min(steps),
        f"Aaren step flat in N: {min(steps):.1f} to {max(steps):.1f} us (within 1.5x)",
    )
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes (checks the script)")
    p.add_argument("--json", type=json_option(), help="where to write the rows (default on CUDA: "
                   "benchmarks/results/scan_<gpu>.json)")  # fmt: skip
    p.add_argument("--lookback", action="store_true", help="also time the look-back split")
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.quick:
        sys.exit("no CUDA device: run on a GPU, or --quick to check the script on CPU")
    if not cuda:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    device = torch.device("cuda" if cuda else "cpu")
    gpu = torch.cuda.get_device_name(device) if cuda else "cpu (Triton interpreter)"
    shapes = [("throughput", *s) for s in (QUICK_THROUGHPUT if args.quick else THROUGHPUT)]
    shapes += [("long", *s) for s in (QUICK_LONG if args.quick else LONG)]
    models = step_models(device)
    rows, steps_by_n = [], {}
    for family, bh, n in shapes:
        row = {
            "gpu": gpu,
            "family": family,
            **measure_scan(bh, n, device, args.quick, args.lookback),
        }
        if n not in steps_by_n:
            steps_by_n[n] = measure_steps(n, models, device, args.quick)
        row.update(steps_by_n[n])
        derive(row)
        rows.append(row)
        print("  " + ", ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    print(f"\n# aaren_ts scan on {gpu} | torch {torch.__version__} | {now}")
    print(f"# command: {command}")
    print(f"# Dh={DH}, float32; step: {STEP_LAYERS} layers, d_model {STEP_D}, batch {STEP_BATCH}")
    print()
    print(table(rows))
    print()
    print("\n".join(targets(rows)))
    path = args.json
    if path is None and cuda:
        slug = gpu.lower().replace("nvidia", "").strip().replace(" ", "_")
        path = REPO_ROOT / "benchmarks" / "results" / f"scan_{slug}.json"
    if path is not None:
        path.write_text(json.dumps({"command": command, "date": now, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
