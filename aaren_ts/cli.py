"""The ``aaren-ts`` command: a quick demo, and the benchmark scripts by name.

- ``aaren-ts demo [--epochs N] [--plot PATH]``: the quickstart. Fits an ``AarenForecaster`` on
  the airline data (bundled with sktime, nothing to download) up to 1959, forecasts 1960 with
  80% intervals and prints it beside what happened, with its mean absolute error and a
  seasonal-naive forecast's on the same months (about 15 s on one CPU core);
- ``aaren-ts bench forecasting|classification|tpp|scan [--quick] [ARGS...]``: runs
  ``benchmarks/NAME.py`` of the repository checkout with this Python, passing ``ARGS`` on
  (``aaren-ts bench scan --quick --backends chunked``); the script prints its tables. The
  benchmarks are not part of the installed package: they are found beside the package source
  (an editable install, ``pip install -e .``) or in ``AAREN_TS_BENCHMARKS``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ._checks import plot_option

BENCHMARKS = ("forecasting", "classification", "tpp", "scan")
ENV_BENCHMARKS = "AAREN_TS_BENCHMARKS"


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="aaren-ts",
        description="Aaren (attention as an RNN) for time series: demo and benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"aaren-ts {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        # argparse %-formats a command's help (hence %%) but not its description
        help="fit on the airline data, forecast a year with 80%% intervals",
        description="The quickstart: fit AarenForecaster (full history) on the airline "
        "data up to 1959, forecast 1960 with 80% intervals and print it beside what "
        "happened, with its mean absolute error and a seasonal-naive forecast's.",
    )
    demo.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    demo.add_argument(
        "--plot",
        type=plot_option(),  # checked before training: a bad path fails now, not at the end
        metavar="PATH",
        help="save the forecast plot here (.png, .pdf, .svg, ...)",
    )
    bench = commands.add_parser(
        "bench",
        help="run a benchmark script and print its tables",
        description="Run benchmarks/NAME.py with this Python; further arguments go to the "
        f"script. Scripts are looked up beside the package source or in ${ENV_BENCHMARKS}.",
    )
    bench.add_argument("name", choices=BENCHMARKS, help="which benchmark")
    bench.add_argument("--quick", action="store_true", help="the script's tiny run")
    return parser


def benchmarks_dir() -> Path:
    """Where the benchmark scripts are: ``$AAREN_TS_BENCHMARKS``, else ``benchmarks/`` beside
    the package source (the repository checkout of an editable install).

    Raises ``FileNotFoundError`` naming both places when neither holds them.
    """
    configured = os.environ.get(ENV_BENCHMARKS)
    if configured:
        where = Path(configured)
        if not where.is_dir():
            raise FileNotFoundError(f"{ENV_BENCHMARKS}={configured} is not a directory")
        return where
    where = Path(__file__).resolve().parents[1] / "benchmarks"
    if not where.is_dir():
        raise FileNotFoundError(
            f"the benchmark scripts are not beside the package ({where} does not exist): they "
            "live in the repository checkout, not in the installed package. Install from a "
            f"checkout with 'pip install -e .', or set {ENV_BENCHMARKS} to its benchmarks/ folder"
        )
    return where


def _bench(name: str, quick: bool, extra: Sequence[str]) -> int:
    try:
        script = benchmarks_dir() / f"{name}.py"
    except FileNotFoundError as err:
        print(f"aaren-ts bench: {err}", file=sys.stderr)
        return 2
    if not script.is_file():
        print(f"aaren-ts bench: no {script.name} in {script.parent}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    # the script imports the same aaren_ts as this command, wherever it is run from
    source = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    command = [sys.executable, str(script), *(["--quick"] if quick else []), *extra]
    print("$ " + " ".join(command[1:]), flush=True)
    return subprocess.run(command, env=env, check=False).returncode


# the demo fits 132 months; at about 0.1 s an epoch this bounds it at a couple of minutes
MAX_DEMO_EPOCHS = 1000


def _demo(epochs: int, plot: Path | None) -> int:
    import warnings

    import numpy as np
    import pandas as pd
    from sktime.datasets import load_airline
    from sktime.forecasting.naive import NaiveForecaster

    from .estimators import AarenForecaster

    if epochs < 1:
        print(f"aaren-ts demo: --epochs must be >= 1, got {epochs}", file=sys.stderr)
        return 2
    if epochs > MAX_DEMO_EPOCHS:  # 10**20 ran until killed: the demo keeps every epoch
        print(
            f"aaren-ts demo: --epochs must be <= {MAX_DEMO_EPOCHS} (a minute or two on a "
            f"laptop), got {epochs}",
            file=sys.stderr,
        )
        return 2
    y = load_airline()
    history, future = y.iloc[:-12], y.iloc[-12:]
    # the default full-history model; the last 2 years of the fit calibrate its intervals
    forecaster = AarenForecaster(
        max_horizon=12, max_epochs=epochs, validation_size=0.2, patience=epochs, random_state=0
    )
    start = time.perf_counter()
    forecaster.fit(history)
    print(
        f"AarenForecaster fitted on {len(history)} months of airline passengers "
        f"({history.index[0]} to {history.index[-1]}) in {time.perf_counter() - start:.1f} s"
    )
    fh = list(range(1, 13))
    forecast = forecaster.predict(fh=fh)
    interval = forecaster.predict_interval(fh=fh, coverage=0.8)
    table = pd.DataFrame(
        {
            "forecast": forecast.to_numpy(),
            "80% lower": interval.iloc[:, 0].to_numpy(),
            "80% upper": interval.iloc[:, 1].to_numpy(),
            "observed": future.to_numpy(),
        },
        index=forecast.index,
    )
    print(table.round(1).to_string())
    error = float(np.abs(table["forecast"] - table["observed"]).mean())
    with warnings.catch_warnings():  # sktime's notice about a future default, not about this
        warnings.simplefilter("ignore", FutureWarning)
        # the baseline, fitted on the same months: each month of 1960 as it was in 1959
        naive = NaiveForecaster(strategy="last", sp=12).fit(history).predict(fh=fh)
    baseline = float(np.abs(naive.to_numpy() - table["observed"].to_numpy()).mean())
    print(f"1960 forecast: MAE {error:.1f} (seasonal naive: {baseline:.1f})")
    inside = float(table["observed"].between(table["80% lower"], table["80% upper"]).mean())
    print(f"80% intervals cover {inside:.0%} of 1960")
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")  # a file, never a window
        from .plotting import plot_forecast

        fig, _ = plot_forecast(
            history, forecast, interval, y_test=future, title="AarenForecaster: airline, 1960"
        )
        fig.savefig(plot, dpi=110)
        import matplotlib.pyplot as plt

        plt.close(fig)
        print(f"plot saved to {plot}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``aaren-ts`` command line (``argv`` default: ``sys.argv[1:]``); returns the
    exit status.

    Examples
    --------
    >>> from aaren_ts.cli import main
    >>> main(["--version"])
    Traceback (most recent call last):
    ...
    SystemExit: 0
    """
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        return _bench(args.name, args.quick, [a for a in extra if a != "--"])
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return _demo(args.epochs, args.plot)


if __name__ == "__main__":
    raise SystemExit(main())
