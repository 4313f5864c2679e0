"""Quickstart: fit an AarenForecaster, forecast with 80% intervals, then stream new months.

1. Fit on the airline data's first ten years (1949-1958), one global Aaren model.
2. Forecast 1959 with 80% prediction intervals.
3. Stream 1959-1960 in one month at a time with ``update(..., update_params=False)``: each new
   observation passes through the recurrent state in O(1), with no retraining and no
   re-reading of history, and the next month's forecast and interval are read off.
4. Save a plot of history, forecasts and intervals (``forecasting_quickstart.png`` beside this
   file; needs matplotlib, the ``plot`` extra).

Run: ``python examples/forecasting_quickstart.py``
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from sktime.datasets import load_airline

from aaren_ts.estimators import AarenForecaster

OUT = Path(__file__).with_name("forecasting_quickstart.png")


def main() -> None:
    y = load_airline()
    train = y.iloc[:120]
    forecaster = AarenForecaster(
        max_horizon=12, max_epochs=150, lr=3e-3, chunk_length=64, random_state=0
    )
    start = time.perf_counter()
    forecaster.fit(train)
    print(f"fit on {len(train)} months in {time.perf_counter() - start:.1f} s")

    horizon = list(range(1, 13))
    forecast = forecaster.predict(fh=horizon)
    interval = forecaster.predict_interval(fh=horizon, coverage=0.8)
    actual = y.iloc[120:132]
    print(f"1959 forecast: mean absolute error {np.abs(forecast - actual).mean():.1f} passengers")

    # Stream the last two years one month at a time; sktime hands update the whole window,
    # the forecaster reads only the month it has not seen.
    steps, lower, upper, point = [], [], [], []
    start = time.perf_counter()
    for stop in range(120, len(y)):
        next_interval = forecaster.predict_interval(fh=[1], coverage=0.8)
        steps.append(y.index[stop])
        lower.append(next_interval.iloc[0, 0])
        upper.append(next_interval.iloc[0, 1])
        point.append(forecaster.predict(fh=[1]).iloc[0])
        forecaster.update(y.iloc[: stop + 1], update_params=False)
    per_update = (time.perf_counter() - start) / (len(y) - 120)
    streamed = y.iloc[120:].to_numpy()
    inside = np.mean((streamed >= np.array(lower)) & (streamed <= np.array(upper)))
    print(
        f"streamed {len(steps)} months: {per_update * 1e3:.1f} ms per month (predict + update), "
        f"one-step 80% intervals covered {inside:.0%} of them"
    )
    plot(y, forecast, interval, pd.Series(point, index=steps), lower, upper)


def plot(y, forecast, interval, streamed, lower, upper) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'aaren-ts[plot]'): no plot")
        return
    to_time = lambda index: index.to_timestamp()  # noqa: E731
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(to_time(y.index), y.to_numpy(), color="black", lw=1.2, label="observed")
    ax.plot(to_time(forecast.index), forecast.to_numpy(), color="tab:blue", label="1959 forecast")
    ax.fill_between(
        to_time(interval.index),
        interval.iloc[:, 0],
        interval.iloc[:, 1],
        color="tab:blue",
        alpha=0.2,
        label="80% interval",
    )
    ax.plot(
        to_time(streamed.index), streamed.to_numpy(), color="tab:orange", label="streamed one-step"
    )
    ax.fill_between(to_time(streamed.index), lower, upper, color="tab:orange", alpha=0.2)
    ax.set_title("AarenForecaster: fit to 1958, then O(1) updates one month at a time")
    ax.set_ylabel("passengers (thousands)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(OUT, dpi=120)
    print(f"plot saved to {OUT}")


if __name__ == "__main__":
    main()
