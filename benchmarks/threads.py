"""Fit time against torch threads and network width: what ``n_threads=None`` is based on.

An ``AarenForecaster`` (full history, the defaults otherwise) is fitted on the airline data
(120 months, ``--epochs`` epochs) at each ``d_model`` with ``n_threads=1`` and with
``n_threads=-1`` (torch's setting: one thread per core), on an otherwise idle machine and
beside one CPU-bound process (a pure-Python loop). The table gives the median seconds of
``--repeats`` fits and the ratio of torch's setting to one thread: above 1, one thread is
faster. The automatic choice (``aaren_ts.estimators._threads.SMALL_WIDTH``) runs widths up to
128 on one thread.

Running it
----------
::

    python benchmarks/threads.py --widths 32 64 128 256 --repeats 3 --json out.json
    python benchmarks/threads.py --quick     # one width, one epoch: checks that it works
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from aaren_ts._checks import json_option, positive_int_option  # noqa: E402
from aaren_ts.estimators import AarenForecaster  # noqa: E402
from benchmarks._run_record import run_header  # noqa: E402
from benchmarks.first_hour import start_busy, stop_busy  # noqa: E402


def fit_seconds(d_model: int, n_threads: int, epochs: int) -> float:
    from sktime.datasets import load_airline

    y = load_airline().iloc[:120]
    forecaster = AarenForecaster(
        max_horizon=12, d_model=d_model, max_epochs=epochs, n_threads=n_threads, random_state=0
    )
    start = time.perf_counter()
    forecaster.fit(y)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", nargs="+", type=positive_int_option(), default=[32, 128, 256])
    parser.add_argument("--epochs", type=positive_int_option(), default=5)
    parser.add_argument("--repeats", type=positive_int_option(), default=3)
    parser.add_argument("--json", type=json_option(), help="write the results here")
    parser.add_argument("--quick", action="store_true", help="width 16, 1 epoch, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.widths, args.epochs, args.repeats = [16], 1, 1
    warnings.simplefilter("ignore")
    record = run_header("threads.py", argv, threads=0, packages=["torch", "sktime"])
    record["threads"] = f"1 and torch's setting ({torch.get_num_threads()})"
    record["results"] = []
    fit_seconds(args.widths[0], 1, 1)  # warm-up: imports and first allocations
    for condition in ("idle", "loaded"):
        busy = start_busy() if condition == "loaded" else None
        try:
            for d_model in args.widths:
                row = {"condition": condition, "d_model": d_model}
                for n_threads, key in ((1, "one_thread_s"), (-1, "torch_default_s")):
                    runs = [
                        fit_seconds(d_model, n_threads, args.epochs) for _ in range(args.repeats)
                    ]
                    row[key] = round(statistics.median(runs), 3)
                row["ratio"] = round(row["torch_default_s"] / row["one_thread_s"], 2)
                record["results"].append(row)
                print(row, flush=True)
        finally:
            if busy is not None:
                stop_busy(busy)
    print()
    print(
        f"{'condition':<10}{'d_model':>8}{'1 thread (s)':>14}{'torch default (s)':>19}{'ratio':>8}"
    )
    for r in record["results"]:
        print(
            f"{r['condition']:<10}{r['d_model']:>8}{r['one_thread_s']:>14.2f}"
            f"{r['torch_default_s']:>19.2f}{r['ratio']:>7.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(record, indent=2))
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
