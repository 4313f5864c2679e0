"""Event forecasting on NYC taxi trips: when is the next event, and which?

Taxi (EasyTPP's preprocessing) holds sequences of pick-ups and drop-offs of single drivers,
10 event types (5 boroughs x pick-up/drop-off), times in hours. ``AarenPointProcess`` reads
the events with an Aaren encoder and forecasts the next event (time and type). The test
events are then streamed through ``update`` one at a time, O(1) each, as a live system would
see them: the forecasts made along the way equal those of one parallel pass over the whole
sequences.

Writes ``examples/event_forecasting.png`` (``--plot PATH`` elsewhere): predicted vs actual
next-event time over the streamed events, the learned intensity of one test sequence
(``aaren_ts.plotting.plot_intensity``) and the time-rescaling QQ plot of the streamed sequences
(``plot_qq``: under a perfect model the compensator increments are Exp(1)). Each sequence's
first event is its origin (at its start time, nothing before it to forecast): the printed
"forecast N events", the left panel and the QQ plot's legend all count the other events.

Run from the repository root (the data from ``AAREN_TS_DATA``, or downloaded)::

    python examples/event_forecasting.py            # a few minutes on one CPU core
    python examples/event_forecasting.py --quick    # a small run: checks that it works
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from aaren_ts._checks import plot_option
from aaren_ts.datasets import DataUnavailableError, load_event_sequences
from aaren_ts.estimators import AarenPointProcess

PLOT = Path(__file__).with_suffix(".png")


def main(argv: list[str] | None = None):
    """Run the example (``argv`` default: the command line); returns the figure it wrote."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data and 2 epochs")
    parser.add_argument(
        "--plot",
        "--out",
        dest="out",
        type=plot_option(),
        default=PLOT,
        help="where to write the PNG",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    try:
        data = load_event_sequences("taxi")
    except DataUnavailableError as err:  # offline, without a local copy: say how to get one
        sys.exit(str(err))
    train, valid, test = data["train"], data["valid"], data["test"]
    if args.quick:
        train, valid, test = train[:100], valid[:20], test[:20]
    print(f"train {len(train)} sequences, {sum(len(s.times) for s in train)} events")

    model = AarenPointProcess(
        n_marks=10, d_model=64, max_epochs=2 if args.quick else 20, random_state=0
    )
    model.fit(train, validation_data=valid)
    print(f"test log-likelihood: {model.score(test):.3f} nats/event (window convention), "
          f"{model.score(test, convention='easytpp'):.3f} (EasyTPP convention)")  # fmt: skip

    # Stream the test events one by one; before each event, forecast it.
    streamed = test[:50]
    predicted, actual, gap = [], [], 0.0
    parallel = model.predict(streamed, every_prefix=True)
    for seq, (parallel_times, _) in zip(streamed, parallel, strict=True):
        stream = model.start_stream(seq.t_start)
        previous = seq.t_start
        for j, (t, k) in enumerate(zip(seq.times, seq.marks, strict=True)):
            next_time, _ = stream.predict()  # the forecast before seeing event j
            gap = max(gap, abs(next_time - parallel_times[j]))
            # an event at t_start (every taxi sequence's first: its origin) has no interval
            # before it to forecast; the time-rescaling QQ plot leaves it out too
            if t > seq.t_start:
                predicted.append(next_time - previous)
                actual.append(t - previous)
            previous = t
            stream.update(t, k)  # O(1): one step of the encoder
    n_events = sum(len(s.times) for s in streamed)
    # the number every panel of the plot shows: events with an interval before them
    forecast = len(actual)
    print(f"streamed {n_events} events of {len(streamed)} test sequences "
          f"({n_events - forecast} of them origins); largest difference to the parallel pass: "
          f"{gap:.2e}")  # fmt: skip
    predicted, actual = np.array(predicted), np.array(actual)
    rmse = float(np.sqrt(np.mean((predicted - actual) ** 2)))
    print(f"forecast {forecast} events: RMSE of the next inter-event time {rmse:.3f} hours")

    import matplotlib

    matplotlib.use("Agg")  # a file, never a window
    import matplotlib.pyplot as plt

    from aaren_ts.plotting import plot_intensity, plot_qq

    fig, (ax1, ax2, ax3) = plt.subplots(
        1, 3, figsize=(15, 4), gridspec_kw={"width_ratios": [1, 1.4, 1]}, layout="constrained"
    )
    ax1.scatter(actual, predicted, s=6, alpha=0.5)
    top = float(np.quantile(np.concatenate([actual, predicted]), 0.99))
    ax1.plot([0, top], [0, top], "k--", lw=1)
    ax1.set(xlim=(0, top), ylim=(0, top), xlabel="actual time to next event (h)")
    ax1.set(
        ylabel="predicted (conditional mean, h)",
        title=f"forecast {forecast} events, RMSE {rmse:.3f} h",
    )
    seq = test[0]
    plot_intensity(model, seq, t_max=float(seq.times[min(12, len(seq.times) - 1)]), ax=ax2)
    ax2.set(xlabel="time (h)", ylabel="total intensity (1/h)", title="learned intensity, test 0")
    # time-rescaling: under a perfect model the compensator increments are Exp(1); its legend
    # counts the same events as the left panel
    plot_qq(model, streamed, ax=ax3)
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    print(f"wrote {args.out}")
    return fig


if __name__ == "__main__":
    main()
