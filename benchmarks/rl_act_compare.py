"""Per-action cost of two versions of aaren_ts in one process: a before/after comparison of
``EpisodeStream.act`` that a busy or shared machine cannot skew.

On a shared 2-core host the same code's ``act`` moved by 2x between runs minutes apart (the
GRU's, unchanged, from 0.37 to 0.90 ms), so timings from separate runs cannot tell a 30%
change from the host. Here both versions live in one process: the package of ``--before``
(a checkout or worktree) is copied under another name (``aaren_ts_before``; the package
imports itself only relatively), every model is fitted with each version (the toy
trajectories of ``benchmarks/rl.py``'s latency table, one update), and the streams of both
versions take their turns round by round, so a change of load hits both alike. It prints the
median ``act`` + ``observe`` milliseconds over steps 1-10, 91-110 and 981-1,000 of each
version and the largest difference between their actions (the same fitted weights, so only
rounding may differ).

Running it
----------
::

    git worktree add /tmp/before <commit>
    python benchmarks/rl_act_compare.py --before /tmp/before --threads 1 \
        --json benchmarks/results/rl_act_compare.json
    python benchmarks/rl_act_compare.py --before . --quick   # seconds: checks that it works
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _run_record import run_header  # noqa: E402
from rl import LATENCY_MODELS as MODELS  # noqa: E402  (benchmarks/rl.py's latency models)
from rl import toy_trajectories  # noqa: E402

import aaren_ts.rl  # noqa: E402

SPANS = ((1, 10), (91, 110), (981, 1000))  # episode steps, 1-based, both ends included


def _before_package(checkout: Path, folder: Path):
    """``checkout``'s ``aaren_ts`` imported as ``aaren_ts_before`` (copied into ``folder``)."""
    source = checkout / "aaren_ts"
    if not (source / "__init__.py").is_file():
        raise SystemExit(f"--before {checkout}: no aaren_ts package there")
    shutil.copytree(source, folder / "aaren_ts_before", ignore=shutil.ignore_patterns("*.pyc"))
    sys.path.insert(0, str(folder))
    return importlib.import_module("aaren_ts_before.rl")


def compare(before_rl, steps: int, rounds: int) -> dict:
    """``{label: {"before": [ms per span], "after": [...], "max_action_difference": x}}``."""
    rng = np.random.default_rng(0)
    toy = toy_trajectories(rng)
    policies = {}
    for version, rl in (("before", before_rl), ("after", aaren_ts.rl)):
        for label, settings in MODELS.items():
            policy = rl.DecisionAaren(**settings, max_updates=1, random_state=0).fit(toy)
            warm = policy.start_episode(100.0)  # one-off costs (first calls) not per step
            for _ in range(20):
                warm.act(rng.normal(size=11))
                warm.observe(0.1)
            policies[version, label] = policy
    observations = rng.normal(size=(steps, 11))
    seconds = {key: [] for key in policies}
    actions = {}
    for _ in range(rounds):
        for key, policy in policies.items():  # both versions in turn, round by round
            stream, times, taken = policy.start_episode(100.0), [], []
            for t in range(steps):
                started = time.perf_counter()
                taken.append(stream.act(observations[t]))
                stream.observe(0.1)
                times.append(time.perf_counter() - started)
            seconds[key].append(times)
            actions[key] = np.array(taken)
    spans = [(lo, hi) for lo, hi in SPANS if hi <= steps]
    out = {}
    for label in MODELS:
        row = {}
        for version in ("before", "after"):
            ms = 1e3 * np.array(seconds[version, label])  # rounds x steps
            row[version] = [float(np.median(ms[:, lo - 1 : hi])) for lo, hi in spans]
        row["max_action_difference"] = float(
            np.abs(actions["before", label] - actions["after", label]).max()
        )
        out[label] = row
    return {"spans": spans, "models": out}


def print_table(result: dict) -> None:
    spans = result["spans"]
    print("\nact + observe: median ms over episode steps (both versions in one process)\n")
    print("| model | " + " | ".join(f"steps {lo}-{hi}: before / after" for lo, hi in spans)
          + " | max action difference |")  # fmt: skip
    print("|---|" + "---|" * (len(spans) + 1))
    for label, row in result["models"].items():
        cells = [f"{b:.2f} / {a:.2f}" for b, a in zip(row["before"], row["after"], strict=True)]
        print(f"| {label} | " + " | ".join(cells) + f" | {row['max_action_difference']:.1e} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True,
                        help="a checkout (or worktree) whose aaren_ts is the 'before'")  # fmt: skip
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="30 steps, one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.rounds = 30, 1
    if args.json is not None and not args.json.parent.is_dir():
        raise SystemExit(f"--json {args.json}: no folder {args.json.parent}")
    torch.set_num_threads(args.threads)
    record = run_header("rl_act_compare.py", argv, args.threads, ["torch", "numpy"])
    print(record["command"])
    with tempfile.TemporaryDirectory() as folder:
        before = _before_package(args.before.resolve(), Path(folder))
        try:
            record.update(compare(before, args.steps, args.rounds))
        finally:
            sys.path.remove(folder)
            for name in [m for m in sys.modules if m.split(".")[0] == "aaren_ts_before"]:
                del sys.modules[name]
    print_table(record)
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
