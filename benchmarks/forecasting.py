"""Long-horizon forecasting benchmark: Aaren vs Transformer backbones, the paper's protocol.

What it measures
----------------
For every data set, horizon, mode, backbone and seed, ``AarenForecaster`` is fitted on the
protocol's train + validation rows (``aaren_ts.datasets.standard_split``: every channel
standardised with train statistics; the validation rows are the estimator's early-stopping and
calibration tail, ``validation_size``) and scored on every test window (stride 1):

- MSE and MAE of the median forecast on the standardised values, averaged over all channels,
  steps and windows (the Informer / Time-Series-Library metric);
- the empirical coverage of the 80% and 95% intervals (quantiles 0.1/0.9 and 0.025/0.975)
  over the same targets;
- fit time, the time to forecast all test windows in batches, the time of one
  ``update`` of one new observation followed by ``predict`` through sktime, and the peak
  resident memory of the fit (each cell is a fresh subprocess).

Two modes:

- ``window``: ``context_length = lookback`` (96; ILI 36): each forecast reads the last
  ``lookback`` observations, normalised per window, channel-independent: the protocol the
  paper used.
- ``stream``: ``context_length=None`` (the estimator's default): the whole history lives in
  the recurrent state, each row read in the causal local units of its last ``local_window``
  rows ("auto"); test forecasts read everything before them (train, validation and earlier
  test rows), and the intervals' online tracking (``calibration_rate``) moves from the first
  row after fit, as a stream of ``update`` calls would move it.

Both modes get the same budget in optimiser steps (``--steps``; by default the window mode's
12 epochs of 8192 windows in batches of 32: 3072). The test windows are scored in batches
through the fitted network; each cell also checks that the estimator's own ``update`` +
``predict`` gives the same forecast for the first and the last test window (column
``check``: the largest absolute difference). Each cell also scores the protocol's validation
windows (``val_mse``: for choosing settings without the test split), and every table has the
naive, seasonal-naive and training-mean forecasts of the same test windows beside it.

Targets
-------
- Issue 3: Aaren no worse than the Transformer backbone (mean test MSE over seeds) on every
  data set, horizon and mode; ETTh1, horizon 96, window mode: test MSE <= 0.38 (published at
  this protocol: NHITS 0.378, DLinear 0.375, Informer 0.865).
- Issue 14: full history no worse than window (same seeds and budget) everywhere, and below
  seasonal naive; stretch: ETTh1 H=96 <= 0.370, ETTm1 H=96 <= 0.300.

Running it
----------
From the repository root, with the data in ``AAREN_TS_DATA``::

    python benchmarks/forecasting.py                       # CPU budget: see --help
    python benchmarks/forecasting.py --datasets ETTh1 --horizons 96 --seeds 0
    python benchmarks/forecasting.py --quick               # tiny: checks that it works
    python benchmarks/forecasting.py --report benchmarks/results/forecasting_*.json  # one table
    python benchmarks/forecasting.py --device cuda --epochs 10 --windows-per-epoch 0
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time

import numpy as np

from aaren_ts._checks import json_option

DATASETS = ["ETTh1", "ETTm1", "weather", "exchange_rate", "national_illness"]
HORIZONS = {"national_illness": [24, 36, 48, 60]}
DEFAULT_HORIZONS = [96, 192, 336, 720]
LOOKBACK = {"national_illness": 36}
DEFAULT_LOOKBACK = 96
# seasonal-naive period: a day of ETT/weather rows, a week of exchange_rate's daily rows, a
# year of ILI's weekly rows
SEASON = {"ETTh1": 24, "ETTm1": 96, "weather": 144, "exchange_rate": 7, "national_illness": 52}
BASELINES = ("naive", "seasonal naive", "mean")


def baselines(name: str, horizon: int) -> list[dict]:
    """The simple forecasts on the same test windows, standardised like the models': the
    last value (naive), the value one season earlier (seasonal naive) and the training mean
    (mean, 0 after standardisation)."""
    from aaren_ts.datasets import load_forecasting, split_borders, standard_split

    lookback = LOOKBACK.get(name, DEFAULT_LOOKBACK)
    frame = load_forecasting(name)
    values = standard_split(name, frame, lookback).scale(frame).to_numpy()
    (test_start, test_end) = split_borders(name, len(frame), lookback)[2]
    ends = np.arange(test_start + lookback - 1, test_end - horizon)
    steps = np.arange(1, horizon + 1)
    truth = values[ends[:, None] + steps]
    season = SEASON[name]
    back = season * (-(-steps // season))  # the same phase, in the last season before the end
    forecasts = {
        "naive": np.broadcast_to(values[ends][:, None], truth.shape),
        "seasonal naive": values[ends[:, None] + steps - back],
        "mean": np.zeros_like(truth),
    }
    return [
        {
            "dataset": name,
            "horizon": horizon,
            "mode": "baseline",
            "backbone": kind,
            "seed": 0,
            "mse": float(((forecast - truth) ** 2).mean()),
            "mae": float(np.abs(forecast - truth).mean()),
        }
        for kind, forecast in forecasts.items()
    ]


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median_and_levels(f, shifted, centre, scale):
    """Network-unit forecasts ``(N, H, C, Q)`` with their quantile shifts -> (median,
    {level: values}) in the units the estimator was fitted on, exactly as
    ``AarenForecaster._quantile_frame`` forms them."""
    import torch

    ordered = torch.sort(shifted, dim=-1).values
    ordered = ordered * scale.double().unsqueeze(-1) + centre.double().unsqueeze(-1)
    mean, std = f.scaling_[None]
    values = ordered * torch.from_numpy(std)[:, None] + torch.from_numpy(mean)[:, None]
    levels = list(f.quantiles)
    return values[..., levels.index(0.5)], {q: values[..., k] for k, q in enumerate(levels)}


def _window_forecasts(f, data, ends):
    """Window mode: every test window through ``window_forecast`` in batches."""
    import torch

    from aaren_ts.estimators._forecast_net import window_forecast

    length = f.context_length
    out = []
    with torch.no_grad():
        for start in range(0, len(ends), 512):
            e = torch.as_tensor(ends[start : start + 512])
            rows = e.view(-1, 1) + torch.arange(1 - length, 1)
            forecast, centre, scale = window_forecast(
                f.network_, data[rows], f.n_lags, f.channel_independent, stride=f.token_stride
            )
            out.append((forecast, centre, scale))
    return [torch.cat(parts) for parts in zip(*out, strict=True)]


def _stream_forecasts(f, data, ends, fitted: int):
    """Stream mode: one pass over the history, state carried in chunks, outputs kept at
    ``ends`` (the forecasts an update-by-update stream would give there). The intervals'
    online tracking runs over the same rows: filled by the ``fitted`` rows that ``fit``
    read, moved by every row after them, as the stream's ``update`` moves it.

    Returns the forecasts ``(N, H, C, Q)`` with their shifts added, and their local centre
    and scale ``(N, 1, C)``."""
    import torch

    from aaren_ts.estimators._interval_tracking import all_shifts, record, start_tracking

    wanted = torch.as_tensor(ends)
    sequences, _ = f._layout(data[: int(wanted.max()) + 1], None)
    tracker = start_tracking(f.quantile_shifts_, sequences.shape[0], sequences.shape[2])
    horizon = f.network_.horizon
    state, kept, shifts = None, [], []
    # chunks end where fit's rows end: the tracking adapts from there on
    length = sequences.shape[1]
    bounds = sorted({*range(0, length, 1024), min(fitted, length), length})
    with torch.no_grad():
        for start, stop in itertools.pairwise(bounds):
            out, centre, scale, state = f.network_(sequences[:, start:stop], state)
            history = []
            tracker = record(
                tracker,
                out,
                centre,
                scale,
                sequences[:, start:stop],
                f.network_.quantiles,
                f.calibration_rate,
                adapt=start >= fitted and f.calibration_rate > 0,
                history=history,
            )
            inside = wanted[(wanted >= start) & (wanted < stop)] - start
            if len(inside):
                kept.append((out[:, inside], centre[:, inside], scale[:, inside]))
                shifts.extend(
                    torch.from_numpy(all_shifts(tracker._replace(shifts=history[i]), horizon))
                    for i in inside.tolist()
                )
    forecast, centre, scale = (torch.cat(parts, 1) for parts in zip(*kept, strict=True))
    # (B_s, N, H, n_targets, Q) -> (N, H, C, Q); units (B_s, N, n_targets) -> (N, 1, C)
    if f.channel_independent:
        forecast = forecast[:, :, :, 0].permute(1, 2, 0, 3)
        centre, scale = (u[..., 0].T.unsqueeze(1) for u in (centre, scale))
    else:
        forecast, centre, scale = forecast[0], centre[0].unsqueeze(1), scale[0].unsqueeze(1)
    return forecast.double() + torch.stack(shifts)[:, :, None, :], centre, scale


def _scores(f, spec, data, ends, truth_of, fitted):
    """MSE, MAE and interval coverage of the median and quantile forecasts at ``ends``
    (``fitted``: the rows fit read)."""
    import torch

    if spec["mode"] == "window":
        forecast, centre, scale = _window_forecasts(f, data, ends)
        forecast = forecast.double() + torch.from_numpy(f.quantile_shifts_)[None, :, None, :]
    else:
        forecast, centre, scale = _stream_forecasts(f, data, ends, fitted)
    median, levels = _median_and_levels(f, forecast, centre, scale)
    truth = truth_of(ends)
    error = median - truth
    covered = {
        c: float(((levels[lo] <= truth) & (truth <= levels[hi])).double().mean())
        for c, (lo, hi) in {"80": (0.1, 0.9), "95": (0.025, 0.975)}.items()
    }
    return {
        "mse": float((error**2).mean()),
        "mae": float(error.abs().mean()),
        "coverage80": covered["80"],
        "coverage95": covered["95"],
        "median": median,
    }


def run_cell(spec: dict) -> dict:
    import torch

    from aaren_ts.datasets import load_forecasting, split_borders, standard_split
    from aaren_ts.estimators import AarenForecaster

    torch.set_num_threads(spec["threads"])
    name, horizon, lookback = spec["dataset"], spec["horizon"], spec["lookback"]
    frame = load_forecasting(name)
    split = standard_split(name, frame, lookback)
    # the protocol's windows are by row: a positional index (weather repeats a timestamp)
    scaled = split.scale(frame).reset_index(drop=True)
    (_, train_end), (_, val_end), (test_start, test_end) = split_borders(name, len(frame), lookback)
    fit_rows = scaled.iloc[:val_end]
    f = AarenForecaster(
        backbone=spec["backbone"],
        max_horizon=horizon,
        context_length=lookback if spec["mode"] == "window" else None,
        validation_size=(val_end - train_end) / val_end,
        random_state=spec["seed"],
        device=spec["device"],
        **spec["params"],
    )
    rss_before = _rss_mib()
    start = time.perf_counter()
    f.fit(fit_rows)
    fit_s = time.perf_counter() - start
    peak = _peak_mib() - rss_before

    mean, std = f.scaling_[None]
    data = torch.tensor((scaled.to_numpy() - mean) / std, dtype=torch.float32)
    values = torch.tensor(scaled.to_numpy())

    def truth_of(ends):
        return values[ends[:, None] + np.arange(1, horizon + 1)]

    # the protocol's validation windows (all targets in the validation rows): for choosing
    # settings without looking at the test split
    val_start = split_borders(name, len(frame), lookback)[1][0]
    val_ends = np.arange(val_start + lookback - 1, val_end - horizon)
    validation = _scores(f, spec, data[:val_end], val_ends, truth_of, val_end)
    ends = np.arange(test_start + lookback - 1, test_end - horizon)
    start = time.perf_counter()
    scores = _scores(f, spec, data, ends, truth_of, val_end)
    eval_s = time.perf_counter() - start
    median = scores.pop("median")

    # the estimator's own path agrees at the first and the last test window
    check = 0.0
    steps = list(range(1, horizon + 1))
    for k in (0, len(ends) - 1):
        f.update(fit_rows if ends[k] < val_end else scaled.iloc[: ends[k] + 1], update_params=False)
        got = f.predict(fh=steps).to_numpy()
        check = max(check, float(np.abs(got - median[k].numpy()).max()))
    # one new observation through sktime's update, then a forecast
    start = time.perf_counter()
    for extra in range(1, 11):
        f.update(scaled.iloc[: ends[-1] + 1 + extra], update_params=False)
        f.predict(fh=steps)
    update_ms = (time.perf_counter() - start) / 10 * 1e3
    return {
        **{k: spec[k] for k in ("dataset", "horizon", "mode", "backbone", "seed")},
        **scores,
        "val_mse": validation["mse"],
        "epochs": len(f.loss_history_),
        "fit_s": fit_s,
        "eval_s": eval_s,
        "update_ms": update_ms,
        "peak_mib": peak,
        "windows": len(ends),
        "check": check,
    }


def _run_in_subprocess(spec: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {**spec, "failed": " | ".join(tail)}


def _fmt(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def report(results: list[dict], backbones: list[str]) -> list[str]:
    lines = [
        "| data | H | mode | backbone | seeds | MSE | MAE | cover 80% | cover 95% | epochs |"
        " fit s | eval s | update+predict ms | fit peak MiB | check |",
        "|" + "---|" * 15,
    ]
    verdicts = []
    cells: dict[tuple, dict[str, list[dict]]] = {}
    for r in results:
        key = (r["dataset"], r["horizon"], r["mode"])
        cells.setdefault(key, {}).setdefault(r["backbone"], []).append(r)
    mean_mse = {
        key: float(np.mean([r["mse"] for r in runs if "failed" not in r]))
        for key, by_backbone in cells.items()
        for backbone, runs in by_backbone.items()
        if any("failed" not in r for r in runs)
        for key in [(*key, backbone)]
    }
    for (name, horizon, mode), by_backbone in cells.items():
        if mode == "baseline":
            continue
        means = {}
        for backbone in backbones:
            runs = [r for r in by_backbone.get(backbone, []) if "failed" not in r]
            failed = [r for r in by_backbone.get(backbone, []) if "failed" in r]
            if failed:
                lines.append(
                    f"| {name} | {horizon} | {mode} | {backbone} | failed: "
                    f"{failed[0]['failed'][:80]} |" + " |" * 10
                )
            if not runs:
                continue
            # runs read back from older records may lack a field: "-"
            col = lambda k, runs=runs: [r[k] for r in runs if k in r]  # noqa: E731
            means[backbone] = float(np.mean(col("mse")))
            check = f"{max(col('check')):.1e}" if col("check") else "-"
            lines.append(
                f"| {name} | {horizon} | {mode} | {backbone} | {len(runs)} | {_fmt(col('mse'))} "
                f"| {_fmt(col('mae'))} | {_fmt(col('coverage80'), 2)} "
                f"| {_fmt(col('coverage95'), 2)} | {_fmt(col('epochs'), 0)} "
                f"| {_fmt(col('fit_s'), 0)} | {_fmt(col('eval_s'), 1)} "
                f"| {_fmt(col('update_ms'), 1)} | {_fmt(col('peak_mib'), 0)} "
                f"| {check} |"
            )
        if "aaren" in means and "transformer" in means:
            ok = means["aaren"] <= means["transformer"]
            verdicts.append(
                f"{'PASS' if ok else 'FAIL'} aaren <= transformer: {name} H={horizon} {mode}: "
                f"{means['aaren']:.4f} vs {means['transformer']:.4f}"
            )
        if name == "ETTh1" and horizon == 96 and mode == "window" and "aaren" in means:
            ok = means["aaren"] <= 0.38
            verdicts.append(
                f"{'PASS' if ok else 'FAIL'} ETTh1 H=96 aaren MSE <= 0.38: {means['aaren']:.4f}"
            )
    baseline_lines = [
        "| data | H | " + " | ".join(f"{b} MSE | {b} MAE" for b in BASELINES) + " |",
        "|" + "---|" * (2 + 2 * len(BASELINES)),
    ]
    for (name, horizon, mode), by_backbone in cells.items():
        if mode != "baseline":
            continue
        row = [by_backbone[b][0] for b in BASELINES]
        baseline_lines.append(
            f"| {name} | {horizon} | "
            + " | ".join(f"{r['mse']:.3f} | {r['mae']:.3f}" for r in row)
            + " |"
        )
        for backbone in backbones:
            stream = mean_mse.get((name, horizon, "stream", backbone))
            window = mean_mse.get((name, horizon, "window", backbone))
            seasonal = by_backbone["seasonal naive"][0]["mse"]
            if stream is not None and window is not None:
                verdicts.append(
                    f"{'PASS' if stream <= window else 'FAIL'} full history <= window: {name} "
                    f"H={horizon} {backbone}: {stream:.4f} vs {window:.4f}"
                )
            if stream is not None:
                verdicts.append(
                    f"{'PASS' if stream < seasonal else 'FAIL'} full history < seasonal naive: "
                    f"{name} H={horizon} {backbone}: {stream:.4f} vs {seasonal:.4f}"
                )
    if len(baseline_lines) == 2:
        baseline_lines = []
    return [*lines, "", *baseline_lines, "", *summary(cells), "", *verdicts]


def summary(cells: dict) -> list[str]:
    """Full history against window (Aaren) beside the seasonal-naive baseline, one row per
    data set and horizon that has both modes."""

    def mean(runs, key, digits):
        values = [r[key] for r in runs if key in r]
        return f"{np.mean(values):.{digits}f}" if values else "-"

    lines = [
        "| data | H | full history MSE | window MSE | seasonal naive MSE | cover 80/95 full "
        "| cover 80/95 window | fit s full / window | update+predict ms full / window |",
        "|" + "---|" * 9,
    ]
    for (name, horizon, mode), by_backbone in cells.items():
        if mode != "stream" or "aaren" not in by_backbone:
            continue
        stream = [r for r in by_backbone["aaren"] if "failed" not in r]
        window = [
            r
            for r in cells.get((name, horizon, "window"), {}).get("aaren", [])
            if "failed" not in r
        ]
        seasonal = cells.get((name, horizon, "baseline"), {}).get("seasonal naive")
        if not stream or not window:
            continue
        naive = f"{seasonal[0]['mse']:.3f}" if seasonal else "-"
        lines.append(
            f"| {name} | {horizon} | {_fmt([r['mse'] for r in stream])} "
            f"| {_fmt([r['mse'] for r in window])} | {naive} | "
            f"{mean(stream, 'coverage80', 2)} / {mean(stream, 'coverage95', 2)} | "
            f"{mean(window, 'coverage80', 2)} / {mean(window, 'coverage95', 2)} | "
            f"{mean(stream, 'fit_s', 0)} / {mean(window, 'fit_s', 0)} | "
            f"{mean(stream, 'update_ms', 1)} / {mean(window, 'update_ms', 1)} |"
        )
    return lines if len(lines) > 2 else []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--horizons", nargs="+", type=int, help="default: the protocol's")
    parser.add_argument("--modes", nargs="+", default=["window", "stream"])
    parser.add_argument("--backbones", nargs="+", default=["aaren", "transformer"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12, help="window mode: most epochs")
    parser.add_argument(
        "--windows-per-epoch",
        type=int,
        default=8192,
        help="window mode: windows per epoch (0: all of them)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        help="most optimiser steps of either mode (default: the window mode's budget, "
        "epochs x windows-per-epoch / batch size = 3072)",
    )
    parser.add_argument("--stream-epochs", type=int, default=1000, help="stream mode: most epochs")
    parser.add_argument(
        "--stream-patience", type=int, default=10, help="stream mode: early-stopping patience"
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="MODE:KEY=VALUE",
        help="override an estimator parameter of one mode (JSON value), e.g. "
        "stream:local_window=336; repeatable",
    )
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch_threads_default())
    parser.add_argument("--quick", action="store_true", help="tiny budget: checks the script")
    parser.add_argument(
        "--json", type=json_option(kind=str), help="also write every cell's results here"
    )
    parser.add_argument("--report", nargs="+", help="print the tables of saved --json files")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_cell(json.loads(args.worker))))
        return
    if args.report:  # one table over every file given (each baseline once)
        merged, seen = [], set()
        for path in args.report:
            with open(path) as saved:
                data = json.load(saved)
            print(data["header"])
            for r in data["results"]:
                key = (r["dataset"], r["horizon"], r["mode"], r["backbone"], r["seed"])
                if r["mode"] != "baseline" or key not in seen:
                    merged.append(r)
                seen.add(key)
        print("\n".join(["", *report(merged, args.backbones), ""]))
        return
    if args.quick:
        args.epochs, args.stream_epochs, args.windows_per_epoch, args.d_model = 1, 1, 64, 8
        args.steps = args.steps or 2
    params = {
        "channel_independent": True,
        "d_model": args.d_model,
        "n_layers": 2,
        "n_heads": 4,
        "n_lags": 16,
        "batch_size": 32,
        "lr": args.lr,
        "patience": 3,
    }
    # the window mode's tokens are overlapping patches (16 values, every 8th step); the
    # stream mode reads every step, one sequence per channel
    steps = args.steps
    if steps is None and args.windows_per_epoch:
        steps = args.epochs * -(-args.windows_per_epoch // params["batch_size"])
    window_params = {
        **params,
        "max_epochs": args.epochs if args.steps is None else 10**6,
        "max_steps": steps,
        "token_stride": 8,
        "windows_per_epoch": args.windows_per_epoch or None,
    }
    # full history: the same budget in optimiser steps; tokens carry the last 16 values in
    # the local units of the last local_window observations ("auto": 96 when the data allow)
    stream_params = {
        **params,
        "max_epochs": args.stream_epochs,
        "max_steps": steps,
        "patience": args.stream_patience,
    }
    for override in args.param:
        mode, _, assignment = override.partition(":")
        key, _, value = assignment.partition("=")
        if mode not in ("window", "stream") or not key or not value:
            parser.error(f"--param takes MODE:KEY=VALUE (MODE window or stream), not {override!r}")
        (window_params if mode == "window" else stream_params)[key] = json.loads(value)
    command = "python benchmarks/forecasting.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    header = (
        f"# aaren_ts forecasting benchmark | {platform.processor() or platform.machine()} | "
        f"{os.cpu_count()} cpus | {args.threads} threads | device {args.device} | "
        f"{datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}\n"
        f"# command: {command}\n# window mode: {json.dumps(window_params)}\n"
        f"# stream mode: {json.dumps(stream_params)}"
    )
    print(header, flush=True)
    results = []
    for name in args.datasets:
        lookback = LOOKBACK.get(name, DEFAULT_LOOKBACK)
        for horizon in args.horizons or HORIZONS.get(name, DEFAULT_HORIZONS):
            results.extend(baselines(name, horizon))
            for mode in args.modes:
                for backbone in args.backbones:
                    for seed in args.seeds:
                        spec = {
                            "dataset": name,
                            "horizon": horizon,
                            "lookback": lookback,
                            "mode": mode,
                            "backbone": backbone,
                            "seed": seed,
                            "device": args.device,
                            "threads": args.threads,
                            "params": window_params if mode == "window" else stream_params,
                        }
                        result = _run_in_subprocess(spec)
                        results.append(result)
                        if args.json:  # rewritten after every cell: a stopped run keeps its cells
                            with open(args.json, "w") as out:
                                json.dump({"header": header, "results": results}, out, indent=1)
                        brief = result.get("failed") or (
                            f"mse {result['mse']:.4f} mae {result['mae']:.4f} "
                            f"cover {result['coverage80']:.2f}/{result['coverage95']:.2f} "
                            f"fit {result['fit_s']:.0f}s check {result['check']:.1e}"
                        )
                        print(
                            f"# {name} H={horizon} {mode} {backbone} seed {seed}: {brief}",
                            flush=True,
                        )
    print("\n".join(["", *report(results, args.backbones)]))


def torch_threads_default() -> int:
    return min(os.cpu_count() or 1, 8)


if __name__ == "__main__":
    main()
