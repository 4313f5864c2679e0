"""A new user's first hour: wall time of the README's main command and of the test suite,
on an otherwise idle machine and beside a second CPU-bound process.

Each command runs ``--repeats`` times in a row idle, then as many times with one busy
process (a pure-Python loop, one core) started beside it and stopped after. The table
gives every run's seconds, the median per condition and the loaded / idle ratio of the
medians: a thread-oversubscribed run shows as a ratio of 10 or more (issue 19 measured up
to 34x before the estimators ran small networks on one thread).

Every run also records the CPU seconds its processes used (user + system, the command and
everything it started; the busy process is not counted): on the shared host the test suite
took 650 s of CPU at one hour and 842 s an hour later with less work in it, so where the CPU
seconds grow with the wall time and the code did not change, the host slowed down. (A fixed
pure-Python loop timed before each run did not see that slowdown, 0.35-0.6 s throughout,
and was dropped.)

Targets (issue 19; this 2-core machine): the main command under 30 s and ``python -m
pytest`` with the data folder under 8 minutes, three times in a row, idle and loaded.

Running it
----------
::

    python benchmarks/first_hour.py                       # both commands, 3 + 3 runs each
    python benchmarks/first_hour.py --commands quickstart --repeats 3 --json out.json
    python benchmarks/first_hour.py --quick               # one tiny command: checks the script
    python benchmarks/first_hour.py --commands tests --conditions loaded   # one condition
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import resource  # the children's CPU time (Unix)
except ImportError:  # pragma: no cover - Windows
    resource = None

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from aaren_ts._checks import json_option, positive_int_option  # noqa: E402
from benchmarks._run_record import run_header  # noqa: E402

# what a new user runs (README: "Two commands"), from the repository root
COMMANDS = {
    "quickstart": [sys.executable, "examples/forecasting_quickstart.py", "--plot", "{tmp}/q.png"],
    "tests": [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
    "quick": [sys.executable, "-c", "import aaren_ts.scan"],  # --quick: the script itself
}


# one core's worth of pure-Python work, until terminated
_BUSY_LOOP = "x = 0\nwhile True:\n    x = (x * 1103515245 + 12345) % 2**31\n"


def start_busy() -> subprocess.Popen:
    """The second CPU-bound process of the loaded condition: a bare interpreter (``-S``, no
    site imports) running the loop, so it loads the core from its first second. (A spawned
    ``multiprocessing`` child re-ran the calling script's imports first: torch and the
    estimators for ``threads.py``, seconds of CPU before the loop.)"""
    return subprocess.Popen([sys.executable, "-S", "-c", _BUSY_LOOP])


def stop_busy(busy: subprocess.Popen) -> None:
    busy.terminate()
    busy.wait()


def _children_cpu() -> float | None:
    if resource is None:
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str]) -> tuple[float, int, float | None]:
    """Wall seconds, exit status and CPU seconds (the command and every process it waited
    for) of one run; output discarded, as a user would skim it."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [part.replace("{tmp}", tmp) for part in command]
        cpu_before = _children_cpu()
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        cpu_after = _children_cpu()
    if done.returncode != 0:
        print(f"  exit {done.returncode}: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    cpu = None if cpu_before is None else cpu_after - cpu_before
    return seconds, done.returncode, cpu


def measure(name: str, repeats: int, conditions: list[str]) -> dict:
    runs = {condition: [] for condition in conditions}
    for condition in runs:
        busy = start_busy() if condition == "loaded" else None
        try:
            for i in range(repeats):
                seconds, status, cpu = timed(COMMANDS[name])
                runs[condition].append({
                    "seconds": round(seconds, 2), "exit": status,
                    "cpu_s": None if cpu is None else round(cpu, 1),
                })  # fmt: skip
                cpu_text = "" if cpu is None else f", CPU {cpu:.1f} s"
                print(f"{name:<11}{condition:<8}run {i + 1}: {seconds:7.1f} s (exit {status}"
                      f"{cpu_text})")  # fmt: skip
        finally:
            if busy is not None:
                stop_busy(busy)
    medians = {f"median_{c}": statistics.median(r["seconds"] for r in runs[c]) for c in runs}
    ratio = None
    if len(runs) == 2:
        ratio = medians["median_loaded"] / medians["median_idle"]
    return {"runs": runs, **medians, "ratio": ratio}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--commands", nargs="+", choices=["quickstart", "tests"], default=["quickstart", "tests"]
    )
    parser.add_argument("--repeats", type=positive_int_option(), default=3)
    parser.add_argument(
        "--conditions", nargs="+", choices=["idle", "loaded"], default=["idle", "loaded"],
        help="measure only these (a rerun of one condition on a host whose speed moved)",
    )  # fmt: skip
    parser.add_argument("--json", type=json_option(), help="write the results here")
    parser.add_argument("--quick", action="store_true", help="one tiny command, 1 + 1 runs")
    args = parser.parse_args(argv)
    names, repeats = (["quick"], 1) if args.quick else (args.commands, args.repeats)
    record = run_header("first_hour.py", argv, threads=1, packages=["torch", "sktime"])
    record["threads"] = "each command's own: estimators n_threads=None, tests one per worker"
    record["cpu_count"] = os.cpu_count()
    record["aaren_ts_data"] = os.environ.get("AAREN_TS_DATA")
    record["results"] = {name: measure(name, repeats, args.conditions) for name in names}
    print()
    print(f"{'command':<11}{'idle runs (s)':<26}{'loaded runs (s)':<26}{'loaded/idle':>11}")
    for name, r in record["results"].items():
        idle, loaded = (
            ", ".join(f"{x['seconds']:.1f}" for x in r["runs"].get(c, [])) or "-"
            for c in ("idle", "loaded")
        )
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        print(f"{name:<11}{idle:<26}{loaded:<26}{ratio:>11}")
    if args.json:
        args.json.write_text(json.dumps(record, indent=2))
        print(f"results written to {args.json}")
    runs = [x for r in record["results"].values() for c in r["runs"].values() for x in c]
    if any(x["exit"] for x in runs):
        sys.exit("a measured command failed (its output is above)")


if __name__ == "__main__":
    main()
