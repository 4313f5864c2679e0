"""Long streams: many single-observation ``update`` calls on one fitted ``AarenForecaster``.

A forecaster (full-history mode, Aaren backbone) is fitted on a short series, then fed
``--steps`` new observations one at a time through the public sktime ``update``
(``update_params=False``: the state advances, the weights stay). It checks the three
properties of issue 8:

* resident memory (psutil RSS) grows by less than 5 MB between the end of the warm-up (the
  first 1% of the updates) and the end of the stream;
* the time per update is flat: the mean of the last 10% of the updates is within 20% of the
  mean of the first 10%;
* the final forecast equals (<= 1e-4, in the data's units) the forecast of one pass of the
  same network over the whole history (fit rows and every streamed row) from scratch.

It prints a markdown table and ``PASS:``/``FAIL:`` lines, and writes the figures as JSON.

Running it
----------
::

    python benchmarks/long_stream.py --steps 1000000 --json benchmarks/results/long_stream_cpu.json
    python benchmarks/long_stream.py --quick          # 2000 steps: checks that the script works
    python benchmarks/long_stream.py --network-only --steps 1000000   # float32 drift only
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from aaren_ts._checks import json_option  # noqa: E402
from aaren_ts.estimators import AarenForecaster  # noqa: E402

N_FIT = 512
HORIZON = 3


def series(n: int, start: int = 0, seed: int = 0) -> np.ndarray:
    """A noisy daily-and-weekly seasonal signal: the stream's values ``start..start+n``."""
    t = np.arange(start, start + n, dtype=np.float64)
    noise = np.random.default_rng([seed, start]).standard_normal(n)
    return np.sin(2 * np.pi * t / 24) + 0.5 * np.sin(2 * np.pi * t / 168) + 0.1 * noise


def one_pass_forecast(forecaster: AarenForecaster, values: np.ndarray) -> pd.DataFrame:
    """The forecast of one pass of the fitted network over ``values`` (the whole history),
    with the stream's state swapped in only for the ``predict`` call."""
    frame = pd.DataFrame({"y": values}, index=pd.RangeIndex(len(values)))
    scaled = forecaster._scaled(frame, forecaster.scaling_[None])
    fresh = forecaster._encode(scaled, None, None, frame.index[-1])
    streamed = forecaster.streams_
    forecaster.streams_ = {None: fresh}
    try:
        return forecaster.predict(fh=list(range(1, HORIZON + 1)))
    finally:
        forecaster.streams_ = streamed


def run(steps: int, d_model: int, seed: int, progress: bool = True) -> dict:
    history = series(N_FIT + steps, seed=seed)
    y = pd.Series(history[:N_FIT], index=pd.RangeIndex(N_FIT), name="y")
    forecaster = AarenForecaster(
        d_model=d_model, n_layers=2, n_heads=2, max_epochs=1, max_horizon=HORIZON,
        random_state=seed, device="cpu",
    )  # fmt: skip
    forecaster.fit(y)
    process = psutil.Process(os.getpid())
    warmup = max(1, steps // 100)
    # written now, so that its pages (8 bytes an update) are resident before the warm-up;
    # np.empty's pages would be touched one by one and read as 8 MB of growth at 10^6
    times = np.full(steps, np.nan)
    rss_after_warmup = 0
    rss_max = 0
    started = time.perf_counter()
    for i in range(steps):
        t = N_FIT + i
        row = pd.Series(history[t : t + 1], index=pd.RangeIndex(t, t + 1), name="y")
        tick = time.perf_counter()
        forecaster.update(row, update_params=False)
        times[i] = time.perf_counter() - tick
        if i + 1 == warmup:
            gc.collect()
            rss_after_warmup = process.memory_info().rss
        if i + 1 >= warmup and (i + 1) % max(1, steps // 200) == 0:
            rss_max = max(rss_max, process.memory_info().rss)
            if progress and (i + 1) % max(1, steps // 20) == 0:
                done = (i + 1) / steps
                elapsed = time.perf_counter() - started
                print(
                    f"  {i + 1}/{steps} updates, {times[: i + 1].mean() * 1e3:.2f} ms each, "
                    f"RSS {rss_max / 2**20:.1f} MiB, ETA {elapsed / done - elapsed:.0f} s",
                    flush=True,
                )
    total = time.perf_counter() - started
    gc.collect()
    rss_max = max(rss_max, process.memory_info().rss)
    streamed = forecaster.predict(fh=list(range(1, HORIZON + 1)))
    reference = one_pass_forecast(forecaster, history)
    tenth = max(1, steps // 10)
    first, last = times[:tenth].mean(), times[-tenth:].mean()
    return {
        "steps": steps,
        "n_fit": N_FIT,
        "d_model": d_model,
        "torch_threads": torch.get_num_threads(),
        "total_s": total,
        "update_ms_mean": float(times.mean() * 1e3),
        "update_ms_median": float(np.median(times) * 1e3),
        "update_ms_first10": float(first * 1e3),
        "update_ms_last10": float(last * 1e3),
        "time_ratio_last_first": float(last / first),
        # the 10th percentile is what an update costs when the machine is not busy elsewhere:
        # on a shared box the means follow the load, not the stream's length
        "update_ms_p10_first10": float(np.percentile(times[:tenth], 10) * 1e3),
        "update_ms_p10_last10": float(np.percentile(times[-tenth:], 10) * 1e3),
        "update_ms_p10_by_decile": [
            float(np.percentile(part, 10) * 1e3) for part in np.array_split(times, 10)
        ],
        "update_ms_mean_by_decile": [
            float(part.mean() * 1e3) for part in np.array_split(times, 10)
        ],
        "rss_after_warmup_mib": rss_after_warmup / 2**20,
        "rss_growth_mb": (rss_max - rss_after_warmup) / 1e6,
        "forecast_max_abs_diff": float(np.abs(streamed.to_numpy() - reference.to_numpy()).max()),
        "forecast_streamed": streamed.to_numpy().ravel().tolist(),
        "forecast_one_pass": reference.to_numpy().ravel().tolist(),
    }


def network_steps(steps: int, d_model: int, seed: int) -> list[dict]:
    """The same forecaster's network stepped ``steps`` times, one row at a time, from the state
    ``fit`` left (the recurrence ``update`` runs, without sktime's per-call checks, about
    1 ms a step instead of 4), against one pass over the whole history at a few checkpoints:
    float32 drift of the streamed state at 10^6 steps, measured where the full ``update``
    loop would not fit in the time at hand."""
    history = series(N_FIT + steps, seed=seed)
    y = pd.Series(history[:N_FIT], index=pd.RangeIndex(N_FIT), name="y")
    forecaster = AarenForecaster(
        d_model=d_model, n_layers=2, n_heads=2, max_epochs=1, max_horizon=HORIZON,
        random_state=seed, device="cpu",
    ).fit(y)  # fmt: skip
    whole = pd.DataFrame({"y": history})
    rows_, _ = forecaster._layout(forecaster._scaled(whole, forecaster.scaling_[None]), None)
    net, std = forecaster.network_, float(forecaster.scaling_[None][1][0])
    state = forecaster.streams_[None]["state"]
    checkpoints = {c for c in (10**4, 10**5, 3 * 10**5) if c < steps} | {steps}
    rows, started = [], time.perf_counter()

    def in_row_units(forecast, centre, scale, _state):
        return forecast * scale[:, :, None, :, None] + centre[:, :, None, :, None]

    with torch.no_grad():
        for k in range(steps):
            *out, state = net(rows_[:, N_FIT + k : N_FIT + k + 1], state)  # the O(1) step
            if k + 1 in checkpoints:
                ref = in_row_units(*net(rows_[:, : N_FIT + k + 1], None))  # one pass
                last = in_row_units(*out, None)
                diff = float((last[:, -1] - ref[:, -1]).abs().max()) * std  # data's units
                rows.append({"steps": k + 1, "max_abs_diff": diff,
                             "seconds": time.perf_counter() - started})  # fmt: skip
                print(f"  {k + 1} steps: max |streamed - one pass| = {diff:.2e}", flush=True)
    return rows


def verdicts(row: dict) -> list[tuple[str, bool]]:
    return [
        (f"RSS growth {row['rss_growth_mb']:.2f} MB < 5 MB", row["rss_growth_mb"] < 5),
        (
            f"per-update time last 10% / first 10% = {row['time_ratio_last_first']:.3f} within 20%",
            abs(row["time_ratio_last_first"] - 1) <= 0.2,
        ),
        (
            f"final forecast vs one pass: max |diff| {row['forecast_max_abs_diff']:.2e} <= 1e-4",
            row["forecast_max_abs_diff"] <= 1e-4,
        ),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1_000_000, help="single-row updates")
    p.add_argument("--d-model", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2000 steps (overrides --steps)")
    p.add_argument(
        "--network-only",
        action="store_true",
        help="step the fitted network directly (no sktime update): exactness at --steps",
    )
    p.add_argument("--json", type=json_option(), help="also write the figures here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    steps = 2000 if args.quick else args.steps
    if steps < 10:
        raise SystemExit("--steps must be at least 10")
    if args.network_only:
        rows = network_steps(steps, args.d_model, args.seed)
        ok = rows[-1]["max_abs_diff"] <= 1e-4
        print(("PASS: " if ok else "FAIL: ") + f"{steps} network steps: max |diff| "
              f"{rows[-1]['max_abs_diff']:.2e} <= 1e-4")  # fmt: skip
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            command = "python benchmarks/long_stream.py " + shlex.join(argv or sys.argv[1:])
            now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
            record = {"command": command, "date": now, "mode": "network-only", "rows": rows}
            args.json.write_text(json.dumps(record, indent=2))
        return {"rows": rows}
    row = run(steps, args.d_model, args.seed)
    print()
    print("| updates | total s | ms/update (mean) | first 10% ms | last 10% ms | last/first "
          "| p10 first / last 10% ms | RSS growth MB | max abs diff vs one pass |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {steps} | {row['total_s']:.0f} | {row['update_ms_mean']:.3f} | "
        f"{row['update_ms_first10']:.3f} | {row['update_ms_last10']:.3f} | "
        f"{row['time_ratio_last_first']:.3f} | {row['update_ms_p10_first10']:.3f} / "
        f"{row['update_ms_p10_last10']:.3f} | {row['rss_growth_mb']:.2f} | "
        f"{row['forecast_max_abs_diff']:.2e} |"
    )
    for text, ok in verdicts(row):
        print(("PASS: " if ok else "FAIL: ") + text)
    if args.json:
        command = "python benchmarks/long_stream.py " + shlex.join(argv or sys.argv[1:])
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": command, "date": now, **row}, indent=2))
    return row


if __name__ == "__main__":
    main()
