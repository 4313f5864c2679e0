"""One stream, one observation at a time: Aaren against the online tools people use today.

The stream is ETTh1's oil temperature (``OT``), standardised with the protocol's train
statistics. Every model is fitted (or warmed up) on the protocol's train and validation months
(11,520 hourly rows), then reads the 2,880 test rows one at a time; after each row it forecasts
the next 24 hours. Scores: MSE and MAE over every forecast whose 24 targets lie in the test
months (2,856 forecasts), in standardised units; cost: milliseconds per tick (absorb one row +
forecast 24), median and 95th percentile, and the fit or warm-up time.

Models (``--models``; each runs where its package is installed):

- ``aaren``: ``AarenForecaster()`` with its defaults (full history), ``update(row,
  update_params=False)`` then ``predict(fh=1..24)``: the constant-memory recurrence.
- ``river_snarimax`` and ``river_holtwinters``: river's online SNARIMAX (p=2, d=0, q=1,
  seasonal AR of period 24) and additive Holt-Winters (alpha 0.3, beta 0.01, gamma 0.6,
  period 24), ``learn_one`` on every row of the history and the stream, ``forecast(24)``
  after each.
- ``statsforecast_ets`` and ``statsforecast_arima``: statsforecast's ``AutoETS`` (season 24)
  and ``AutoARIMA`` (season 24, selected on the last 2,000 history rows to keep its search
  within minutes), fitted once; each tick ``forward(y=history so far, h=24)`` applies the
  fitted model to the longer series (statsforecast's way to forecast a series that grew).
- ``patchtst``: neuralforecast's ``PatchTST`` (input 96, h 24, defaults otherwise; trained
  ``--patchtst-steps`` steps on the history). Per tick it re-predicts from its last 96 rows:
  the timing is the median of ``--latency-ticks`` single-window ``predict`` calls; the scores
  come from one batched ``predict`` over every tick's window (the same computation: windows
  are scaled one by one; the first ticks are checked equal, column ``check``).
- ``seasonal_naive`` (the value 24 hours earlier), ``naive`` (the last value) and ``mean``
  (the training mean, 0 after standardising): the simple baselines, beside every table.

statsforecast needs pandas < 3 and river none of the project's pandas: run those in an
environment that has them (``benchmarks/RESULTS.md`` gives both commands) and merge the JSON
files with ``--report``.

Running it
----------
::

    python benchmarks/streaming_peers.py --models aaren seasonal_naive naive mean \\
        river_snarimax river_holtwinters statsforecast_ets --seeds 0 1 2 --json peers.json
    python benchmarks/streaming_peers.py --models aaren patchtst --json nf.json
    python benchmarks/streaming_peers.py --report peers.json nf.json
    python benchmarks/streaming_peers.py --quick       # a short stream: checks that it works
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from aaren_ts._checks import json_option, positive_int_option  # noqa: E402
from benchmarks._run_record import run_header  # noqa: E402

HORIZON, SEASON, COLUMN = 24, 24, "OT"
MODELS = (
    "aaren",
    "river_snarimax",
    "river_holtwinters",
    "statsforecast_ets",
    "statsforecast_arima",
    "patchtst",
    "seasonal_naive",
    "naive",
    "mean",
)
SEEDED = {"aaren", "patchtst"}
PACKAGES = ["torch", "pandas", "numpy", "sktime", "river", "statsforecast", "neuralforecast"]


def stream_data(quick: bool) -> tuple[pd.Series, pd.Series]:
    """(history, test): ETTh1's OT over the protocol's train + validation and test rows,
    standardised with the train statistics, on an hourly DatetimeIndex."""
    from aaren_ts.datasets import load_forecasting, split_borders

    frame = load_forecasting("ETTh1")
    (_, train_end), (_, val_end), (_, test_end) = split_borders("ETTh1", len(frame), 0)
    series = frame[COLUMN].astype(float)
    train = series.iloc[:train_end]
    series = (series - train.mean()) / train.std(ddof=0)
    series.index = pd.DatetimeIndex(pd.to_datetime(series.index), freq="h")
    history, test = series.iloc[:val_end], series.iloc[val_end:test_end]
    if quick:  # a short history and stream, scaled the same way
        history, test = history.iloc[-600:], test.iloc[:60]
    return history, test


# ---------------------------------------------------------------- one model per function
# Each returns (forecasts (ticks, 24), per-tick seconds, fit seconds, notes): the forecast
# after absorbing test row t is row t.


def _timed_ticks(
    test: pd.Series, tick: Callable[[int], np.ndarray]
) -> tuple[np.ndarray, list[float]]:
    forecasts, seconds = [], []
    for t in range(len(test)):
        start = time.perf_counter()
        forecasts.append(np.asarray(tick(t), dtype=float))
        seconds.append(time.perf_counter() - start)
    return np.stack(forecasts), seconds


def run_aaren(history: pd.Series, test: pd.Series, seed: int, quick: bool) -> tuple:
    from aaren_ts.estimators import AarenForecaster

    params = {"max_horizon": HORIZON, "random_state": seed, "device": "cpu"}
    if quick:
        params.update(max_epochs=1, d_model=8)
    model = AarenForecaster(**params)
    start = time.perf_counter()
    model.fit(history.rename("y"), fh=list(range(1, HORIZON + 1)))
    fit_s = time.perf_counter() - start
    rows = test.rename("y")

    def tick(t: int) -> np.ndarray:
        model.update(rows.iloc[t : t + 1], update_params=False)
        return model.predict().to_numpy()

    forecasts, seconds = _timed_ticks(test, tick)
    return forecasts, seconds, fit_s, "defaults (full history), update_params=False"


def run_river_snarimax(history: pd.Series, test: pd.Series, seed: int, quick: bool) -> tuple:
    from river import time_series

    model = time_series.SNARIMAX(p=2, d=0, q=1, m=SEASON, sp=1, sd=0, sq=0)
    return _river(model, history, test, "SNARIMAX(p=2, d=0, q=1, m=24, sp=1)")


def run_river_holtwinters(history: pd.Series, test: pd.Series, seed: int, quick: bool) -> tuple:
    from river import time_series

    model = time_series.HoltWinters(alpha=0.3, beta=0.01, gamma=0.6, seasonality=SEASON)
    return _river(model, history, test, "HoltWinters(0.3, 0.01, 0.6, seasonality=24)")


def _river(model, history: pd.Series, test: pd.Series, notes: str) -> tuple:
    start = time.perf_counter()
    for value in history.to_numpy():
        model.learn_one(float(value))
    fit_s = time.perf_counter() - start
    values = test.to_numpy()

    def tick(t: int) -> np.ndarray:
        model.learn_one(float(values[t]))
        return np.asarray(model.forecast(horizon=HORIZON))

    forecasts, seconds = _timed_ticks(test, tick)
    return forecasts, seconds, fit_s, notes


def _statsforecast(model, fit_on: np.ndarray, history: pd.Series, test: pd.Series) -> tuple:
    start = time.perf_counter()
    model.fit(fit_on)
    fit_s = time.perf_counter() - start
    values = np.concatenate([history.to_numpy(), test.to_numpy()])
    first = len(history)

    def tick(t: int) -> np.ndarray:
        return model.forward(y=values[: first + t + 1], h=HORIZON)["mean"]

    forecasts, seconds = _timed_ticks(test, tick)
    return forecasts, seconds, fit_s


def run_statsforecast_ets(history: pd.Series, test: pd.Series, seed: int, quick: bool) -> tuple:
    from statsforecast.models import AutoETS

    model = AutoETS(season_length=SEASON)
    out = _statsforecast(model, history.to_numpy(), history, test)
    return (*out, "AutoETS(season_length=24) on the whole history; forward per tick")


def run_statsforecast_arima(history: pd.Series, test: pd.Series, seed: int, quick: bool) -> tuple:
    from statsforecast.models import AutoARIMA

    model = AutoARIMA(season_length=SEASON)
    out = _statsforecast(model, history.to_numpy()[-2000:], history, test)
    return (*out, "AutoARIMA(season_length=24) selected on the last 2,000 rows; forward")


def run_patchtst(history: pd.Series, test: pd.Series, seed: int, quick: bool, args) -> tuple:
    import logging

    from neuralforecast import NeuralForecast
    from neuralforecast.models import PatchTST

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    window = 96
    model = PatchTST(
        h=HORIZON, input_size=window, max_steps=2 if quick else args.patchtst_steps,
        random_seed=seed, accelerator="cpu", devices=1, enable_progress_bar=False,
        enable_model_summary=False, logger=False, scaler_type="identity",
    )  # fmt: skip
    nf = NeuralForecast(models=[model], freq="h")
    frame = history.rename("y").rename_axis("ds").reset_index().assign(unique_id="OT")
    start = time.perf_counter()
    nf.fit(df=frame[["unique_id", "ds", "y"]])
    fit_s = time.perf_counter() - start
    full = pd.concat([history, test])
    first = len(history)

    def windows(ticks: range) -> pd.DataFrame:
        parts = []
        for t in ticks:
            part = full.iloc[first + t + 1 - window : first + t + 1]
            parts.append(pd.DataFrame({"unique_id": t, "ds": part.index, "y": part.to_numpy()}))
        return pd.concat(parts, ignore_index=True)

    batched = nf.predict(df=windows(range(len(test))))
    forecasts = batched["PatchTST"].to_numpy().reshape(len(test), HORIZON)
    seconds, check = [], 0.0
    for t in range(min(args.latency_ticks, len(test))):
        start = time.perf_counter()
        single = nf.predict(df=windows(range(t, t + 1)))["PatchTST"].to_numpy()
        seconds.append(time.perf_counter() - start)
        check = max(check, float(np.abs(single - forecasts[t]).max()))
    notes = f"input 96, {model.max_steps} steps; per tick: single-window predict"
    return forecasts, seconds, fit_s, notes, check


def baseline(name: str, history: pd.Series, test: pd.Series) -> np.ndarray:
    """Forecasts of a simple baseline after each test row."""
    full = np.concatenate([history.to_numpy(), test.to_numpy()])
    first = len(history)
    ends = first + np.arange(len(test))  # index of the last absorbed row
    if name == "naive":
        return np.repeat(full[ends][:, None], HORIZON, axis=1)
    if name == "mean":  # the training mean: 0 in standardised units
        return np.zeros((len(test), HORIZON))
    steps = np.arange(1, HORIZON + 1)
    back = ends[:, None] + steps[None, :] - SEASON * np.ceil(steps / SEASON)[None, :]
    return full[back.astype(int)]


def scores(forecasts: np.ndarray, test: pd.Series) -> dict:
    values = test.to_numpy()
    n = len(values) - HORIZON  # forecasts after row t need rows t+1 .. t+24
    targets = np.stack([values[t + 1 : t + 1 + HORIZON] for t in range(n)])
    error = forecasts[:n] - targets
    return {"mse": float(np.mean(error**2)), "mae": float(np.mean(np.abs(error))), "n": n}


def run_model(name: str, seed: int, history, test, args) -> dict:
    row = {"model": name, "seed": seed if name in SEEDED else None}
    if name in ("seasonal_naive", "naive", "mean"):
        return {**row, **scores(baseline(name, history, test), test), "notes": "baseline"}
    runner = globals()[f"run_{name}"]
    extra = (args,) if name == "patchtst" else ()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = runner(history, test, seed, args.quick, *extra)
        except ImportError as err:  # a peer's package lives in another environment
            raise SystemExit(
                f"--models {name} needs {err.name or err}, which this Python does not have "
                "(statsforecast needs pandas < 3: see the module docstring)"
            ) from err
    forecasts, seconds, fit_s, notes = out[:4]
    ms = np.asarray(seconds) * 1000
    row.update(scores(forecasts, test))
    row.update(
        tick_ms_median=float(np.median(ms)),
        tick_ms_p95=float(np.percentile(ms, 95)),
        fit_s=fit_s,
        notes=notes,
        check=out[4] if len(out) > 4 else None,
    )
    return row


def _cells(args) -> Iterator[tuple[str, int]]:
    for name in args.models:
        for seed in args.seeds if name in SEEDED else [0]:
            yield name, seed


def summary(rows: list[dict]) -> list[dict]:
    """Mean +- std over seeds per model."""
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        group = [r for r in rows if r["model"] == name]

        def stat(key: str, group: list[dict] = group) -> tuple[float, float] | None:
            values = [r[key] for r in group if r.get(key) is not None]
            if not values:
                return None
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            return statistics.mean(values), spread

        out.append({
            "model": name, "seeds": len(group), "mse": stat("mse"), "mae": stat("mae"),
            "tick_ms_median": stat("tick_ms_median"), "tick_ms_p95": stat("tick_ms_p95"),
            "fit_s": stat("fit_s"), "notes": group[0].get("notes", ""),
        })  # fmt: skip
    return out


def merged_rows(records: list[dict]) -> list[dict]:
    """The rows of several runs; a model that more than one run scored keeps one row per
    run, labelled with that run's file order and pandas version (never pooled across
    environments or code versions)."""
    runs_of: dict[str, int] = {}
    for record in records:
        for name in {row["model"] for row in record["rows"]}:
            runs_of[name] = runs_of.get(name, 0) + 1
    rows = []
    for i, record in enumerate(records, 1):
        pandas = record["versions"].get("pandas", "?")
        for row in record["rows"]:
            if runs_of[row["model"]] > 1:
                row = {**row, "model": f"{row['model']} (run {i}, pandas {pandas})"}
            rows.append(row)
    return rows


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    mean, spread = value
    if len(value) and spread:
        return f"{mean:.{digits}f} ± {spread:.{digits}f}"
    return f"{mean:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| model | seeds | MSE | MAE | ms per tick (median) | ms per tick (p95) | fit s | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary(rows):
        lines.append(
            f"| {r['model']} | {r['seeds']} | {_fmt(r['mse'])} | {_fmt(r['mae'])} | "
            f"{_fmt(r['tick_ms_median'], 2)} | {_fmt(r['tick_ms_p95'], 2)} | "
            f"{_fmt(r['fit_s'], 1)} | {r['notes']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=["aaren", "seasonal_naive"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=positive_int_option(), default=1)
    parser.add_argument("--patchtst-steps", type=positive_int_option(), default=1000)
    parser.add_argument("--latency-ticks", type=positive_int_option(), default=100)
    parser.add_argument("--quick", action="store_true", help="600 history rows, 60 ticks")
    parser.add_argument("--json", type=json_option("--json"), default=None)
    parser.add_argument("--report", nargs="+", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.report:
        records = [json.loads(path.read_text()) for path in args.report]
        for record in records:
            print(f"# {record['command']}\n# {record['date']}, versions {record['versions']}")
        print(table(merged_rows(records)))
        return None
    import torch

    torch.set_num_threads(args.threads)
    history, test = stream_data(args.quick)
    rows = []
    for name, seed in _cells(args):
        row = run_model(name, seed, history, test, args)
        print(f"# {name} seed {seed}: mse {row['mse']:.4f} mae {row['mae']:.4f} "
              f"tick {row.get('tick_ms_median', 0):.2f} ms", flush=True)  # fmt: skip
        rows.append(row)
    print(table(rows))
    record = {
        **run_header("streaming_peers.py", argv, args.threads, PACKAGES),
        "history_rows": len(history),
        "ticks": len(test),
        "rows": rows,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
