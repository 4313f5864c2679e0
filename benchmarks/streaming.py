"""Streaming cost per tick: panels of many series and a single series, through the public API.

A full-history ``AarenForecaster`` (Aaren backbone) is fitted on a panel of ``S`` sine-like
series (64 rows each; one training step: this measures streaming, not accuracy). Each tick
then gives every series one new row with ``update(update_params=False)`` and asks for
``predict(fh=1..24)``. The median milliseconds per tick over ``--ticks`` ticks are printed
per panel size, with the ratio to the smallest panel, and the single-series latency of
``update`` and ``predict`` separately (median over ``--single-ticks`` ticks).

Targets (issue 16): a 1,000-series tick at most 8x the 10-series one, 10,000 series within
100 ms, and a single-series ``update`` + ``predict`` within 1 ms.

Running it
----------
::

    python benchmarks/streaming.py --threads 1
    python benchmarks/streaming.py --threads 1 --sizes 10 100 1000 10000 --json out.json
    python benchmarks/streaming.py --quick        # a few ticks: checks that the script works
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


from aaren_ts._checks import json_option, positive_int_option  # noqa: E402
from aaren_ts.estimators import AarenForecaster  # noqa: E402
from benchmarks._run_record import run_header  # noqa: E402

N_FIT, HORIZON = 64, 24


def _values(n_series: int, start: int, stop: int) -> np.ndarray:
    t = np.arange(start, stop, dtype=np.float64)
    phase = np.arange(n_series, dtype=np.float64)[:, None]
    return np.sin(t[None, :] / 5.0 + phase) + 0.01 * phase  # (S, T)


def panel(n_series: int, start: int, stop: int) -> pd.DataFrame:
    """Rows ``start..stop`` of every series, in sktime's pd-multiindex layout."""
    keys = [f"s{i}" for i in range(n_series)]
    index = pd.MultiIndex.from_product([keys, pd.RangeIndex(start, stop)])
    return pd.DataFrame({"y": _values(n_series, start, stop).ravel()}, index=index)


def _forecaster() -> AarenForecaster:
    return AarenForecaster(
        d_model=16, n_layers=1, n_heads=2, max_epochs=1, max_steps=1, max_horizon=HORIZON,
        random_state=0, device="cpu",
    )  # fmt: skip


def panel_tick_ms(n_series: int, ticks: int) -> float:
    """Median milliseconds of one tick (update one row per series + predict 1..24)."""
    model = _forecaster().fit(panel(n_series, 0, N_FIT))
    fh = list(range(1, HORIZON + 1))
    times = []
    for k in range(ticks + 1):  # the first tick warms up
        new = panel(n_series, N_FIT + k, N_FIT + k + 1)
        start = time.perf_counter()
        model.update(new, update_params=False)
        model.predict(fh=fh)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times[1:]))


def single_series_ms(ticks: int) -> dict[str, float]:
    """Median milliseconds of a single series' public update (one row) and predict."""
    values = _values(1, 0, N_FIT + ticks + 1)[0]
    y = pd.Series(values, name="y")
    model = _forecaster().fit(y.iloc[:N_FIT])
    fh = list(range(1, HORIZON + 1))
    update, predict = [], []
    for t in range(N_FIT, N_FIT + ticks):
        row = y.iloc[t : t + 1]
        start = time.perf_counter()
        model.update(row, update_params=False)
        middle = time.perf_counter()
        model.predict(fh=fh)
        update.append(middle - start)
        predict.append(time.perf_counter() - middle)
    skip = max(1, ticks // 10)  # warm-up
    return {
        "update_ms": 1000 * float(np.median(update[skip:])),
        "predict_ms": 1000 * float(np.median(predict[skip:])),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--ticks", type=positive_int_option(), default=5)
    parser.add_argument("--single-ticks", type=positive_int_option(), default=200)
    parser.add_argument("--threads", type=positive_int_option(), default=1)
    parser.add_argument("--quick", action="store_true", help="sizes 10 and 50, 2 ticks")
    parser.add_argument("--json", type=json_option("--json"), default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.ticks, args.single_ticks = [10, 50], 2, 20
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # sktime's remember_data notice
    rows = []
    for size in args.sizes:
        rows.append({"series": size, "tick_ms": panel_tick_ms(size, args.ticks)})
    base = rows[0]["tick_ms"]
    for row in rows:
        row["ratio"] = row["tick_ms"] / base
        row["ms_per_series"] = row["tick_ms"] / row["series"]
    single = single_series_ms(args.single_ticks)
    print(f"| series | ms per tick | x {args.sizes[0]}-series tick | ms per series |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['series']} | {row['tick_ms']:.1f} | {row['ratio']:.1f} | "
            f"{row['ms_per_series']:.3f} |"
        )
    print(
        f"\nsingle series: update {single['update_ms']:.3f} ms, predict "
        f"{single['predict_ms']:.3f} ms (median of {args.single_ticks} ticks)"
    )
    result = {
        **run_header("streaming.py", argv, args.threads, ["torch", "pandas", "sktime"]),
        "panel": rows,
        "single": single,
    }  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
