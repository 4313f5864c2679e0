"""Benchmark of the Aaren scan backends: time and peak memory against the sequence length.

What it measures
----------------
For every sequence length ``N`` and every registered backend of
``aaren_ts.scan.aaren_attention`` (``naive``, ``recurrent``, ``chunked``, and ``triton`` or any
other kernel that is registered), on ``bh`` rows (batch x heads) with value size ``dh``:

- the forward time (under ``torch.no_grad()``) and the forward+backward time
  (``outputs.sum().backward()`` w.r.t. scores and values), the minimum over ``--repeats`` runs
  after one warm-up run;
- the peak extra memory, over the inputs, of one forward and of one forward+backward call;
- the per-token time of ``aaren_step`` with a state that has already absorbed ``N`` tokens; the
  streaming update is O(1), so this column should stay flat as ``N`` grows;
- the time of ``values.clone()`` on the same size, a memory-bandwidth floor: on a small CPU the
  chunked scan is bound by memory traffic, so ``chunked fwd / clone`` says how far it is from
  that floor;
- on CUDA also ``scaled_dot_product_attention`` with one query per row expanded over the
  sequence and ``is_causal=True`` (the same outputs as the scan), as row ``sdpa``.

Each (backend, N, mode) measurement runs in a fresh subprocess (this script re-invoked with a
hidden ``--worker`` argument). On CPU that is the only way to see torch's allocations: the
worker reads its resident set size just before the call and reports the process's peak RSS
(``getrusage``) minus it. On CUDA it uses ``torch.cuda.max_memory_allocated``. A worker that
dies (out of memory, a crashed kernel) costs one cell, reported as ``failed``. Cells whose
estimated memory exceeds ``--max-gb`` GiB, or that would take far too long (the token loop at
large ``N``), are skipped with the reason in the cell.

Project targets on CPU
----------------------
- the chunked scan is at least 20x faster than the token loop (``recurrent``) at N=4096;
- the chunked scan is faster than the naive O(N^2) oracle from N=1024 on;
- the chunked scan's memory is linear in ``N`` (peak MiB per token does not grow with ``N``).

The script ends with a PASS/FAIL line for each target where both numbers were measured.

Running it
----------
From the repository root (a checkout needs no install; only torch is required)::

    python benchmarks/scan.py                  # CPU: N = 1024 4096 16384 65536, bh=512, dh=64
    python benchmarks/scan.py --device cuda    # the GPU table of benchmarks/scan_gpu.py
    python benchmarks/scan.py --quick          # tiny sizes: checks that the script works
    python benchmarks/scan.py --n 4096 --backends recurrent chunked --json scan.json
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import json
import math
import os
import platform
import resource
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent

try:  # also from a checkout that is not installed, as _scan below
    from aaren_ts._checks import json_option
except ModuleNotFoundError:
    sys.path.insert(0, str(REPO_ROOT))
    from aaren_ts._checks import json_option

FULL_DEFAULTS = {"n": [1024, 4096, 16384, 65536], "bh": 512, "dh": 64, "repeats": 3}
QUICK_DEFAULTS = {"n": [256, 1024], "bh": 8, "dh": 16, "repeats": 1}
DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
MODES = ("fwd", "fwd+bwd")
SDPA = "sdpa"
SEED = 0
MIB = 2**20
GIB = 2**30
# aaren_step timing: tokens timed per repeat, after this many warm-up tokens.
STEP_TOKENS = 200
STEP_WARMUP = 20
# The state for the step timing is built from the N tokens in slices of this many, so that the
# step column needs no N-sized memory and exists for every N.
STATE_SLICE = 4096
# The token loop runs one Python iteration per token: beyond these lengths a cell takes many
# minutes, so it is skipped unless --all.
RECURRENT_MAX_N = {"fwd": 16384, "fwd+bwd": 16384}
# A cell whose estimated single call exceeds SLOW_CELL_S is skipped; one above ONE_RUN_S is
# timed on its first (memory-measuring) call alone, without a warm-up or repeats.
SLOW_CELL_S = 600.0
ONE_RUN_S = 30.0
RESULT_TAG = "@@aaren-scan-bench@@ "
# Peaks below this are within the noise of the RSS method (the kernel updates the peak RSS
# lazily, and freed heap memory is reused), so the linearity check ignores them.
MIN_JUDGED_MIB = 16.0

# Memory model for skipping cells that cannot fit: peak extra memory in units of one
# (bh, N, dh) tensor in the accumulation dtype ("linear") or one (bh, N, N) tensor
# ("quadratic"). Measured on CPU with --bh 16 --dh 64 --n 1024 4096 (chunked 1.2 and 7.3,
# recurrent 3.5 and 12, naive 3.1 and 3.1 quadratic, clone 1.0) and rounded up; SDPA is a
# guess. The estimate only has to be right within the factor 4 between the default N values.
LINEAR_FACTORS = {
    ("chunked", "fwd"): 2.0,
    ("chunked", "fwd+bwd"): 5.0,
    ("recurrent", "fwd"): 4.5,
    ("recurrent", "fwd+bwd"): 14.0,
    ("naive", "fwd"): 2.0,
    ("naive", "fwd+bwd"): 4.0,
    (SDPA, "fwd"): 2.0,
    (SDPA, "fwd+bwd"): 6.0,
    ("clone", "time"): 1.5,
}
QUADRATIC_FACTORS = {("naive", "fwd"): 3.5, ("naive", "fwd+bwd"): 4.0}
# A registered kernel we know nothing about is assumed to need what the chunked path needs.
UNKNOWN_BACKEND_FACTORS = {"fwd": 3.0, "fwd+bwd": 8.0}


# ---------------------------------------------------------------------------------------------
# Worker side: one measurement in a fresh process.
# ---------------------------------------------------------------------------------------------


def _scan() -> ModuleType:
    """``aaren_ts.scan``, also when the script runs from a checkout that is not installed."""
    try:
        return importlib.import_module("aaren_ts.scan")
    except ModuleNotFoundError as err:
        if err.name not in ("aaren_ts", "aaren_ts.scan"):
            raise
        sys.path.insert(0, str(REPO_ROOT))
        return importlib.import_module("aaren_ts.scan")


def _sync(device: str) -> None:
    """Wait for queued GPU work, so that wall-clock time covers the kernels, not launches."""
    if device == "cuda":
        torch.cuda.synchronize()


def _current_rss() -> int:
    """Resident set size of this process now, in bytes (Linux /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _random(shape: tuple[int, ...], spec: dict, grad: bool = False) -> torch.Tensor:
    """Standard normal inputs of ``shape`` on the spec's device and dtype."""
    dtype = DTYPES[spec["dtype"]]
    return torch.randn(*shape, device=spec["device"], dtype=dtype, requires_grad=grad)


def _build_call(spec: dict) -> Callable[[], None]:
    """The call that one measurement times: a forward, or a forward+backward, on fresh inputs."""
    backend, n, bh, dh = spec["backend"], spec["n"], spec["bh"], spec["dh"]
    grad = spec["mode"] == "fwd+bwd"
    torch.manual_seed(SEED)
    if backend == SDPA:
        # One query per row, expanded over the sequence: causal SDPA then computes exactly the
        # scan's outputs (prefix softmax of q.k_i over v_i), on inputs of equal size.
        q = _random((1, bh, 1, dh), spec, grad)
        k = _random((1, bh, n, dh), spec, grad)
        v = _random((1, bh, n, dh), spec, grad)
        leaves = [q, k, v]
        sdpa = torch.nn.functional.scaled_dot_product_attention

        def forward() -> torch.Tensor:
            return sdpa(q.expand(1, bh, n, dh), k, v, is_causal=True)

    else:
        scores = _random((bh, n), spec, grad)
        values = _random((bh, n, dh), spec, grad)
        leaves = [scores, values]
        aaren_attention = _scan().aaren_attention

        def forward() -> torch.Tensor:
            return aaren_attention(scores, values, backend=backend)

    if grad:

        def call() -> None:
            for leaf in leaves:  # no accumulation across repeats, and last run's grads freed
                leaf.grad = None
            forward().sum().backward()

    else:

        def call() -> None:
            with torch.no_grad():
                forward()

    return call


def _first_call_peak(call: Callable[[], None], device: str) -> tuple[float, bool, float]:
    """Run ``call`` once: its peak extra memory in MiB, whether that is exact, and its ms.

    Not exact means the call never rose above an earlier peak of the process (imports, input
    creation), so the number is only an upper bound. The first call is the one measured
    because it is also the warm-up: later runs may reuse memory the allocator kept.
    """
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        start = time.perf_counter()
        call()
        torch.cuda.synchronize()
        ms = (time.perf_counter() - start) * 1e3
        return (torch.cuda.max_memory_allocated() - before) / MIB, True, ms
    peak_before = _peak_rss()
    rss_before = _current_rss()
    start = time.perf_counter()
    call()
    ms = (time.perf_counter() - start) * 1e3
    peak_after = _peak_rss()
    if peak_after <= peak_before:
        return (peak_before - rss_before) / MIB, False, ms
    return (peak_after - rss_before) / MIB, True, ms


def _min_time_ms(call: Callable[[], None], repeats: int, device: str) -> float:
    """The fastest of ``repeats`` runs of ``call``, in milliseconds."""
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        call()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _warm_up(spec: dict) -> None:
    """Run the same backend and mode once on small inputs, before the measured inputs exist.

    The first call of a code path faults in pages of torch's libraries and sets up thread
    pools; without this, several MiB of that would count as the measured call's peak.
    """
    _build_call({**spec, "n": min(spec["n"], 256), "bh": min(spec["bh"], 2)})()


def _measure_call(spec: dict) -> dict:
    """Peak memory of the first run, then the best time of ``repeats`` more.

    ``repeats == 0`` (a very slow cell) reports the first run's time instead.
    """
    _warm_up(spec)
    call = _build_call(spec)
    peak, exact, first_ms = _first_call_peak(call, spec["device"])
    if spec["repeats"] == 0:
        return {"ms": first_ms, "peak_mib": peak, "peak_exact": exact, "one_run": True}
    ms = _min_time_ms(call, spec["repeats"], spec["device"])
    return {"ms": ms, "peak_mib": peak, "peak_exact": exact}


def _measure_clone(spec: dict) -> dict:
    """``values.clone()`` time: one read and one write of the values, the bandwidth floor."""
    _random((2, 256, spec["dh"]), spec).clone()  # the same warm-up as in _measure_call
    torch.manual_seed(SEED)
    values = _random((spec["bh"], spec["n"], spec["dh"]), spec)

    def call() -> None:
        values.clone()

    peak, exact, _ = _first_call_peak(call, spec["device"])
    ms = _min_time_ms(call, spec["repeats"], spec["device"])
    return {"ms": ms, "peak_mib": peak, "peak_exact": exact}


def _measure_step(spec: dict) -> dict:
    """Per-token ``aaren_step`` time in microseconds, after the state has absorbed N tokens."""
    scan = _scan()
    device, n, bh, dh = spec["device"], spec["n"], spec["bh"], spec["dh"]
    torch.manual_seed(SEED)
    with torch.no_grad():
        state = None
        for start in range(0, n, STATE_SLICE):
            size = min(STATE_SLICE, n - start)
            _, state = scan.aaren_attention(
                _random((bh, size), spec), _random((bh, size, dh), spec), state, return_state=True
            )
        total = STEP_WARMUP + STEP_TOKENS
        # Token-major, then unbound: each step gets contiguous (bh,) and (bh, dh) slices.
        scores = _random((total, bh), spec).unbind(0)
        values = _random((total, bh, dh), spec).unbind(0)
        for k in range(STEP_WARMUP):
            _, state = scan.aaren_step(state, scores[k], values[k])
        best = math.inf
        for _ in range(spec["repeats"]):
            current = state  # every repeat starts from the same N + warm-up tokens
            _sync(device)
            start_time = time.perf_counter()
            for k in range(STEP_WARMUP, total):
                _, current = scan.aaren_step(current, scores[k], values[k])
            _sync(device)
            best = min(best, time.perf_counter() - start_time)
    return {"us": best / STEP_TOKENS * 1e6}


def _machine_info(spec: dict) -> dict:
    """Device name, memory and registered backends, read where the measurements run."""
    info = {"backends": _scan().available_backends(), "threads": torch.get_num_threads()}
    if spec["device"] == "cuda":
        props = torch.cuda.get_device_properties(0)
        info["device_name"] = torch.cuda.get_device_name(0)
        info["total_bytes"] = props.total_memory
    return info


def _failure_note(err: BaseException) -> str:
    """A short cell text for an exception raised inside a worker."""
    text = str(err).lower()
    if isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in text:
        return "failed: OOM"
    if "can't allocate memory" in text:  # the CPU allocator's wording
        return "failed: OOM"
    return f"failed: {type(err).__name__}"


def run_worker(spec: dict) -> None:
    """Entry point of a worker process: measure ``spec`` and print one tagged JSON line."""
    special = {"info": _machine_info, "clone": _measure_clone, "step": _measure_step}
    try:
        result = special.get(spec["backend"], _measure_call)(spec)
        result["status"] = "ok"
    except Exception as err:  # reported in the cell, with the traceback on stderr
        traceback.print_exc()
        result = {"status": "failed", "note": _failure_note(err)}
    print(RESULT_TAG + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# Parent side: plan the cells, run the workers, print the tables.
# ---------------------------------------------------------------------------------------------


def run_in_subprocess(spec: dict, timeout: float) -> dict:
    """Run one measurement in a fresh Python process; a dead worker becomes a ``failed`` cell."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = dict(os.environ)
    # The worker must import the same aaren_ts as this process, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "note": "failed: timeout"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG) :])
            if result["status"] != "ok":
                _log(_last_line(proc.stderr))
            return result
    if proc.returncode < 0:
        # Killed by a signal, usually SIGKILL from the kernel's out-of-memory killer.
        reason = signal.Signals(-proc.returncode).name
    else:
        reason = f"exit {proc.returncode}"
    _log(_last_line(proc.stderr))
    return {"status": "failed", "note": f"failed: {reason}"}


def _last_line(text: str) -> str:
    """The last non-empty line of a worker's stderr, for the progress log."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return f"    worker: {lines[-1]}" if lines else "    worker: (no stderr)"


def _log(message: str) -> None:
    """Progress goes to stderr, so that stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


def estimate_gib(what: str, mode: str, n: int, args: argparse.Namespace) -> float:
    """Rough total memory of one measurement (inputs plus peak extra), in GiB."""
    dtype = DTYPES[args.dtype]
    acc_bytes = max(dtype.itemsize, 4)  # half inputs are accumulated in float32
    linear = args.bh * n * args.dh * acc_bytes
    quadratic = args.bh * n * n * acc_bytes
    inputs = args.bh * n * (args.dh + 1) * dtype.itemsize
    if what == SDPA:
        inputs = 2 * args.bh * n * args.dh * dtype.itemsize  # keys and values
    if what == "step":
        return 3 * args.bh * min(n, STATE_SLICE) * args.dh * acc_bytes / GIB
    factor = LINEAR_FACTORS.get((what, mode), UNKNOWN_BACKEND_FACTORS.get(mode, 1.0))
    extra = factor * linear + QUADRATIC_FACTORS.get((what, mode), 0.0) * quadratic
    return (inputs + extra) / GIB


def estimate_seconds(
    what: str, mode: str, n: int, args: argparse.Namespace, results: dict
) -> float | None:
    """Rough time of one call of the token loop (None for the other, fast, backends).

    Extrapolated linearly from the largest smaller N already measured (forward and backward
    of the token loop are both linear in N), else unknown.
    """
    if what != "recurrent":
        return None
    smaller = [
        (m, r["ms"] / 1e3)
        for (m, w, md), r in results.items()
        if w == what and md == mode and m < n and r["status"] == "ok"
    ]
    if smaller:
        n0, seconds = max(smaller)
        return seconds * n / n0
    return None


def skip_reason(
    what: str, mode: str, n: int, args: argparse.Namespace, seconds: float | None
) -> str | None:
    """Why a cell is not run (too slow, or over the memory budget), or None to run it."""
    if what == "recurrent" and not args.all:
        if n > RECURRENT_MAX_N[mode]:
            return "skip: slow"
        if seconds is not None and seconds > SLOW_CELL_S:
            return f"skip: slow (~{seconds / 60:.0f} min)"
    gib = estimate_gib(what, mode, n, args)
    if gib > args.max_gb:
        return f"skip: ~{gib:.0f} GiB" if gib >= 10 else f"skip: ~{gib:.1f} GiB"
    return None


def measure(what: str, mode: str, n: int, args: argparse.Namespace, results: dict) -> dict:
    """One cell: skipped, or measured in a worker process (with a progress line)."""
    seconds = estimate_seconds(what, mode, n, args, results)
    reason = skip_reason(what, mode, n, args, seconds)
    label = f"N={n:<6} {what:<9} {mode:<7}"
    if reason is not None:
        _log(f"{label} {reason}")
        return {"status": "skip", "note": reason}
    spec = {
        "mode": mode,
        "backend": what,
        "device": args.device,
        "dtype": args.dtype,
        "n": n,
        "bh": args.bh,
        "dh": args.dh,
        # A very slow cell is timed on its one memory-measuring call: a warm-up hardly
        # matters there, and repeats would multiply minutes.
        "repeats": 0 if seconds is not None and seconds > ONE_RUN_S else args.repeats,
    }
    started = time.perf_counter()
    result = run_in_subprocess(spec, args.timeout)
    took = time.perf_counter() - started
    _log(f"{label} {_summary(result)}  ({took:.1f} s with process start)")
    return result


def _summary(result: dict) -> str:
    """One progress-log line for a cell's result."""
    if result["status"] != "ok":
        return result["note"]
    if "us" in result:
        return f"{result['us']:.1f} us/token"
    return f"{result['ms']:.2f} ms, peak {_fmt_mib(result)} MiB"


def _fmt(x: float) -> str:
    """A time or size with about three significant digits, without exponents."""
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def _fmt_mib(result: dict) -> str:
    """Peak MiB of a result; ``<=`` marks an upper bound (the call stayed below an old peak)."""
    text = _fmt(max(result["peak_mib"], 0.0))
    return text if result["peak_exact"] else f"<={text}"


def _cell(result: dict, key: str) -> str:
    """The table text for one field of a result: the number, or why there is none."""
    if result["status"] != "ok":
        return result["note"]
    if key == "peak_mib":
        return _fmt_mib(result)
    return _fmt(result[key]) + ("*" if result.get("one_run") else "")


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table with columns padded to equal width, so it also reads as plain text."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _ok(results: dict, n: int, what: str, mode: str) -> dict | None:
    """The result of a cell if it was measured, else None."""
    result = results.get((n, what, mode))
    return result if result is not None and result["status"] == "ok" else None


def main_table(results: dict, args: argparse.Namespace) -> str:
    """One row per (N, backend): times, peak memory and the aaren_step time."""
    header = ["N", "backend", "fwd ms", "fwd+bwd ms", "fwd peak MiB", "fwd+bwd peak MiB"]
    header.append("step us")
    rows = []
    for n in args.n:
        step = results[(n, "step", "time")]
        for what in args.backends:
            fwd, both = results[(n, what, "fwd")], results[(n, what, "fwd+bwd")]
            row = [str(n), what, _cell(fwd, "ms"), _cell(both, "ms")]
            row += [_cell(fwd, "peak_mib"), _cell(both, "peak_mib")]
            # The step time does not depend on the backend; SDPA has no streaming step at all.
            row.append("-" if what == SDPA else _cell(step, "us"))
            rows.append(row)
    return _markdown(header, rows)


def _ratio(num: dict | None, den: dict | None, key: str = "ms") -> str:
    """``num / den`` as ``12.3x``, or ``-`` where either was not measured."""
    if num is None or den is None or den[key] <= 0:
        return "-"
    r = num[key] / den[key]
    return f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def ratio_table(results: dict, args: argparse.Namespace) -> str:
    """Every other backend against chunked, chunked MiB per token, and the clone floor."""
    others = [b for b in args.backends if b != "chunked"]
    header = [f"{b} {m} / chunked {m}" for m in MODES for b in others]
    header += ["chunked fwd MiB/N", "chunked fwd+bwd MiB/N", "clone ms", "chunked fwd / clone"]
    rows = []
    for n in args.n:
        row = [str(n)]
        for mode in MODES:
            chunked = _ok(results, n, "chunked", mode)
            row += [_ratio(_ok(results, n, b, mode), chunked) for b in others]
        for mode in MODES:
            chunked = _ok(results, n, "chunked", mode)
            per_token = "-" if chunked is None else f"{max(chunked['peak_mib'], 0) / n:.4g}"
            if chunked is not None and not chunked["peak_exact"]:
                per_token = f"<={per_token}"
            row.append(per_token)
        clone = _ok(results, n, "clone", "time")
        row.append(_cell(results[(n, "clone", "time")], "ms"))
        row.append(_ratio(_ok(results, n, "chunked", "fwd"), clone))
        rows.append(row)
    return _markdown(["N", *header], rows)


def target_checks(results: dict, args: argparse.Namespace) -> list[str]:
    """PASS/FAIL for the project's CPU targets, where both numbers of a comparison exist."""
    lines: list[str] = []
    for mode in MODES:
        loop, chunked = _ok(results, 4096, "recurrent", mode), _ok(results, 4096, "chunked", mode)
        if loop and chunked:
            speedup = loop["ms"] / chunked["ms"]
            verdict = "PASS" if speedup >= 20 else "FAIL"
            lines.append(
                f"{verdict}: chunked {mode} is {speedup:.1f}x faster than recurrent at "
                "N=4096 (target >= 20x)"
            )
    if not lines:
        lines.append("n/a: chunked vs recurrent at N=4096 (not both measured)")
    compared = len(lines)
    for n in args.n:
        for mode in MODES:
            naive, chunked = _ok(results, n, "naive", mode), _ok(results, n, "chunked", mode)
            if n >= 1024 and naive and chunked:
                verdict = "PASS" if chunked["ms"] < naive["ms"] else "FAIL"
                lines.append(
                    f"{verdict}: chunked {mode} {chunked['ms']:.2f} ms vs naive "
                    f"{naive['ms']:.2f} ms at N={n} (target: chunked faster from N=1024)"
                )
    if len(lines) == compared:
        lines.append("n/a: chunked vs naive from N=1024 on (not both measured at any such N)")
    for mode in MODES:
        points = [(n, _ok(results, n, "chunked", mode)) for n in sorted(args.n)]
        points = [
            (n, r["peak_mib"] / n)
            for n, r in points
            if r and r["peak_exact"] and r["peak_mib"] >= MIN_JUDGED_MIB
        ]
        if len(points) < 2:
            lines.append(
                f"n/a: chunked {mode} memory linear in N (needs 2 N with exact peaks "
                f">= {MIN_JUDGED_MIB:.0f} MiB)"
            )
            continue
        (n0, first), (n1, last) = points[0], points[-1]
        # Constant overheads make small N look costlier per token, so only growth fails.
        growth = last / first
        verdict = "PASS" if growth <= 1.25 else "FAIL"
        lines.append(
            f"{verdict}: chunked {mode} peak MiB per token {first:.4g} at N={n0}, "
            f"{last:.4g} at N={n1} ({growth:.2f}x; target: linear in N, <= 1.25x)"
        )
    return lines


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or whatever the platform module knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _total_ram_bytes() -> int:
    """Total RAM from /proc/meminfo, in bytes."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` fills in tiny sizes where none were given."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--n", type=int, nargs="+", help="sequence lengths (default 1024 ... 65536)")
    p.add_argument("--bh", type=int, help="rows, i.e. batch x heads (default 512)")
    p.add_argument("--dh", type=int, help="value size per head (default 64)")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.add_argument("--repeats", type=int, help="timed runs after the warm-up; min is kept (3)")
    p.add_argument(
        "--max-gb",
        type=float,
        help="memory budget per measurement in GiB (default: 60%% of RAM on CPU, 80%% of the "
        "device memory on CUDA); bigger cells are skipped",
    )
    p.add_argument("--quick", action="store_true", help="tiny run: n 256 1024, bh 8, dh 16")
    p.add_argument("--json", type=json_option(), help="also write the results as JSON to this path")
    p.add_argument("--backends", nargs="+", help="only these (registered backends, 'sdpa')")
    p.add_argument("--all", action="store_true", help="also run the slow token-loop cells")
    p.add_argument(
        "--timeout", type=float, default=3600, help="seconds per measurement before 'failed'"
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        return args
    defaults = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # Ascending, so that slow cells can be extrapolated from the smaller N before them.
    args.n = sorted(set(args.n))
    if min(args.n) < 1 or args.bh < 1 or args.dh < 1 or args.repeats < 1:
        p.error("--n, --bh, --dh and --repeats must be positive")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error(
            f"--device cuda: no CUDA device is available to torch {torch.__version__} "
            f"(built with CUDA {torch.version.cuda})"
        )
    args.parser = p
    return args


def resolve_backends(args: argparse.Namespace, registered: dict[str, str]) -> list[str]:
    """The backends to time: the registered ones (plus SDPA on CUDA), or the ``--backends``."""
    # The Triton kernels need CUDA (the GPU table is benchmarks/scan_gpu.py).
    known = [b for b in registered if args.device == "cuda" or b != "triton"]
    known += [SDPA] if args.device == "cuda" else []
    if args.backends is None:
        return known
    unknown = [b for b in args.backends if b not in known]
    if unknown:
        args.parser.error(f"--backends {unknown} not available on {args.device}; known: {known}")
    return list(dict.fromkeys(args.backends))


def header_lines(args: argparse.Namespace, info: dict) -> list[str]:
    """Machine, software, date, the exact command and the settings."""
    if args.device == "cuda":
        machine = f"cuda: {info['device_name']}"
    else:
        machine = f"cpu: {_cpu_name()}, {os.cpu_count()} cores"
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    return [
        f"# aaren_ts scan benchmark | {machine} | torch {torch.__version__} | "
        f"{info['threads']} threads | {now}",
        f"# command: {command}",
        f"# bh={args.bh} rows, dh={args.dh}, dtype={args.dtype}, min of {args.repeats} "
        f"repeat(s) after 1 warm-up, budget {args.max_gb:.1f} GiB per measurement, "
        f"step us = mean over {STEP_TOKENS} aaren_step calls",
    ]


def run_benchmark(args: argparse.Namespace) -> None:
    """Measure every cell, then print the report (and write the JSON if asked)."""
    info = run_in_subprocess({"backend": "info", "device": args.device}, args.timeout)
    if info["status"] != "ok":
        sys.exit(f"cannot start a worker on {args.device}: {info['note']}")
    args.backends = resolve_backends(args, info["backends"])
    if args.max_gb is None:
        total = info["total_bytes"] if args.device == "cuda" else _total_ram_bytes()
        args.max_gb = (0.8 if args.device == "cuda" else 0.6) * total / GIB

    results: dict[tuple[int, str, str], dict] = {}
    for n in args.n:
        results[(n, "clone", "time")] = measure("clone", "time", n, args, results)
        results[(n, "step", "time")] = measure("step", "time", n, args, results)
        for what in args.backends:
            for mode in MODES:
                results[(n, what, mode)] = measure(what, mode, n, args, results)

    report = [*header_lines(args, info), "", main_table(results, args), ""]
    if any(r.get("one_run") for r in results.values()):
        report += [f"* one run without warm-up (estimated over {ONE_RUN_S:.0f} s per call)", ""]
    report += ["Ratios to chunked (time), chunked memory per token, and the clone floor:", ""]
    report += [ratio_table(results, args), ""]
    if args.device == "cpu":
        report += ["CPU targets:", *target_checks(results, args)]
    else:
        report.append("(the PASS/FAIL targets are for CPU; run with --device cpu to check them)")
    print("\n".join(report), flush=True)
    if args.json is not None:
        write_json(args, info, results)


def write_json(args: argparse.Namespace, info: dict, results: dict) -> None:
    """The raw results, one record per (N, what, mode), with the settings."""
    settings = {k: v for k, v in vars(args).items() if k not in ("parser", "worker", "json")}
    payload = {
        "command": [Path(sys.executable).name, *sys.argv],
        "torch": torch.__version__,
        "machine": info,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in settings.items()},
        "rows": [
            {"n": n, "what": what, "mode": mode, **result}
            for (n, what, mode), result in results.items()
        ],
    }
    args.json.write_text(json.dumps(payload, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, or one measurement when invoked as a worker."""
    args = parse_args(argv)
    if args.worker is not None:
        run_worker(json.loads(args.worker))
    elif args.device == "cuda":
        # The GPU table (Triton kernels, copy bandwidth, SDPA, the streaming step).
        from scan_gpu import main as gpu_main

        gpu_main(["--json", str(args.json)] if args.json else [])
    else:
        run_benchmark(args)


if __name__ == "__main__":
    main()
