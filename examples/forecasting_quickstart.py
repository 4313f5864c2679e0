"""Quickstart: fit AarenForecaster, forecast with 80% intervals, then stream new months.

Two forecasters on the airline data, both fitted on 1949-1958:

- ``full history`` (the default, ``context_length=None``, every other setting at its
  default too): the whole history lives in the recurrent state; each new month passes
  through it in O(1) time and memory. Every month is read in the units of the last
  ``local_window`` months (here 24: twice the horizon), and the forecast starts from the
  last value, so the model follows the growing level and the widening swings. As months
  arrive, its intervals re-calibrate on the outcomes they missed (``calibration_rate``).
- ``window`` (``context_length=36``): each forecast reads only the last three years,
  normalised on their own, and the intervals are calibrated on a held-out tail
  (``validation_size=0.2``).

The airline data grow and their swings widen: 1960 peaks above anything seen in training.

For each: forecast 1959 with 80% intervals, then stream 1959-1960 in one month at a time with
``update(..., update_params=False)`` (no retraining; sktime passes the whole series so far,
the forecaster reads only the month it has not seen) and read off the next month's forecast
and interval. Each forecast's mean absolute error is printed beside that of sktime's seasonal
naive forecast (each month as it was a year before, fitted on the same months) on the same
months::

    [window] 1959 forecast: MAE 31.6 (seasonal naive: 47.3)

A plot of both is saved to ``forecasting_quickstart.png`` beside this file (``--plot PATH`` to
save it elsewhere; needs matplotlib, the ``plot`` extra): the last years of the history up to
the fit's cutoff, the 24 months after it as observed points, the 12-month forecast and the
one-step forecasts, each with its 80% band. Beside it, ``forecasting_quickstart_attention.png``:
the attention weights of each of the full-history model's learned queries over the 144 months,
at the end of the stream.

Run: ``python examples/forecasting_quickstart.py [--plot PATH]``
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sktime.datasets import load_airline
from sktime.forecasting.naive import NaiveForecaster

from aaren_ts._checks import plot_option
from aaren_ts.estimators import AarenForecaster

OUT = Path(__file__).with_name("forecasting_quickstart.png")
TRAIN = 120  # months 1949-1958: what both forecasters (and the seasonal-naive baseline) fit on

FORECASTERS = {
    "full history": AarenForecaster(max_horizon=12, random_state=0),
    "window": AarenForecaster(
        max_horizon=12,
        context_length=36,
        max_epochs=150,
        lr=3e-3,
        validation_size=0.2,  # early stopping on the tail (after 5 epochs without gain)
        random_state=0,
    ),
}


def seasonal_naive(y_train: pd.Series, fh: list[int]) -> pd.Series:
    """sktime's seasonal-naive forecast: each month as it was a year before."""
    with warnings.catch_warnings():  # sktime's notice about a future default, not about this
        warnings.simplefilter("ignore", FutureWarning)
        return NaiveForecaster(strategy="last", sp=12).fit(y_train).predict(fh=fh)


def mae_line(name: str, what: str, forecast: pd.Series, naive: pd.Series, y: pd.Series) -> str:
    """``[name] what: MAE x (seasonal naive: y)``, both on the months of ``forecast``."""
    actual = y.loc[forecast.index].to_numpy()
    error = np.abs(forecast.to_numpy() - actual).mean()
    baseline = np.abs(naive.loc[forecast.index].to_numpy() - actual).mean()
    return f"[{name}] {what}: MAE {error:.1f} (seasonal naive: {baseline:.1f})"


def run(name: str, forecaster: AarenForecaster, y: pd.Series, naive: dict) -> dict:
    start = time.perf_counter()
    forecaster.fit(y.iloc[:TRAIN])
    print(f"[{name}] fit on {TRAIN} months in {time.perf_counter() - start:.1f} s")
    horizon = list(range(1, 13))
    forecast = forecaster.predict(fh=horizon)
    interval = forecaster.predict_interval(fh=horizon, coverage=0.8)
    print(mae_line(name, "1959 forecast", forecast, naive["1959 forecast"], y))

    steps, lower, upper, point = [], [], [], []
    start = time.perf_counter()
    for stop in range(TRAIN, len(y)):
        next_interval = forecaster.predict_interval(fh=[1], coverage=0.8)
        steps.append(y.index[stop])
        lower.append(next_interval.iloc[0, 0])
        upper.append(next_interval.iloc[0, 1])
        point.append(forecaster.predict(fh=[1]).iloc[0])
        forecaster.update(y.iloc[: stop + 1], update_params=False)
    per_update = (time.perf_counter() - start) / (len(y) - TRAIN)
    streamed = pd.Series(point, index=steps)
    print(mae_line(name, "one-step forecasts 1959-1960", streamed, naive["one-step"], y))
    actual = y.iloc[TRAIN:].to_numpy()
    inside = np.mean((actual >= np.array(lower)) & (actual <= np.array(upper)))
    print(
        f"[{name}] streamed {len(steps)} months: {per_update * 1e3:.1f} ms per month "
        f"(predict + update), one-step 80% intervals covered {inside:.0%} of them"
    )
    return {
        "forecast": forecast,
        "interval": interval,
        "streamed": streamed,
        "lower": lower,
        "upper": upper,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--plot",
        type=plot_option(),
        default=OUT,
        metavar="PATH",
        help=f"where to save the plot ({OUT})",
    )
    args = parser.parse_args()
    y = load_airline()
    # the baseline, on the same training months: 1959 as 1958 was; one step ahead, each month
    # as it was a year before (what the seasonal-naive forecast refitted each month gives)
    naive = {
        "1959 forecast": seasonal_naive(y.iloc[:TRAIN], list(range(1, 13))),
        "one-step": y.shift(12).iloc[TRAIN:],
    }
    results = {name: run(name, f, y, naive) for name, f in FORECASTERS.items()}
    plot(y, results, args.plot)


def plot(y: pd.Series, results: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'aaren-ts[plot]'): no plot")
        return
    from aaren_ts.plotting import plot_attention, plot_forecast

    fig, axes = plt.subplots(1, len(results), figsize=(13, 4.5), sharey=True, layout="constrained")
    for ax, (name, r) in zip(axes, results.items(), strict=True):
        # the history up to the fit's cutoff (its last 4 years, so that the forecasts are
        # readable); the months after it are what is forecast
        plot_forecast(
            y.iloc[TRAIN - 48 : TRAIN],
            r["forecast"],
            r["interval"],
            y_test=y.iloc[TRAIN:],
            ax=ax,
            label="12-month forecast",
            title=f"{name}: fit to 1958, one update a month",
        )
        when = r["streamed"].index.to_timestamp()
        ax.plot(when, r["streamed"], color="tab:orange", label="one-step forecast")
        ax.fill_between(
            when, r["lower"], r["upper"], color="tab:orange", alpha=0.3, lw=0,
            label="one-step 80% interval",
        )  # fmt: skip
        ax.set_ylabel("passengers (thousands)")
        ax.tick_params(labelleft=True)  # both panels alike: same labels, same size
        ax.legend(loc="upper left")
    fig.savefig(path, dpi=110)
    print(f"plot saved to {path}")
    # which months the full-history model's learned queries weigh at the end of the stream
    fig, _ = plot_attention(FORECASTERS["full history"], y)
    attention = path.with_name(f"{path.stem}_attention{path.suffix}")
    fig.savefig(attention, dpi=110)
    print(f"attention plot saved to {attention}")
    plt.close("all")


if __name__ == "__main__":
    main()
