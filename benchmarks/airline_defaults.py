"""The README's airline forecasts over seeds: the defaults, Aaren and the Transformer backbone,
beside the naive and seasonal-naive forecasts (issue 19).

The README tour and ``aaren-ts demo`` fit ``AarenForecaster(max_horizon=12, random_state=0)``
on the airline data up to 1958 (Forecast: 1959 is forecast) or up to 1959 (Plots, the demo:
1960). This prints the mean absolute error of the 12-month forecast for ``--seeds`` seeds
and both backbones, with the mean +- std, beside the last-value naive and the
seasonal-naive forecast (the same month a year earlier).

Running it
----------
::

    python benchmarks/airline_defaults.py              # seeds 0 1 2, both backbones
    python benchmarks/airline_defaults.py --quick      # seed 0, 1 epoch: checks that it works
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from sktime.datasets import load_airline

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from aaren_ts.estimators import AarenForecaster  # noqa: E402

TARGETS = {"1959 (README Forecast)": 24, "1960 (README Plots, demo)": 12}  # months held out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="seed 0, 1 epoch")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    seeds, extra = ([0], {"max_epochs": 1}) if args.quick else (args.seeds, {})
    y = load_airline()
    print(f"| forecast | naive | seasonal naive | Aaren ({len(seeds)} seeds) | Transformer |")
    print("|---|---|---|---|---|")
    for label, held_out in TARGETS.items():
        train, test = y.iloc[:-held_out], y.iloc[-held_out:].iloc[:12].to_numpy()
        naive = np.abs(train.iloc[-1] - test).mean()
        seasonal = np.abs(y.iloc[-held_out - 12 : -held_out].to_numpy() - test).mean()
        cells = []
        for backbone in ("aaren", "transformer"):
            errors = []
            for seed in seeds:
                f = AarenForecaster(max_horizon=12, backbone=backbone, random_state=seed, **extra)
                forecast = f.fit(train).predict(fh=range(1, 13)).to_numpy()
                errors.append(np.abs(forecast - test).mean())
            each = ", ".join(f"{e:.1f}" for e in errors)
            cells.append(f"{np.mean(errors):.1f} +- {np.std(errors):.1f} ({each})")
        print(f"| {label} | {naive:.1f} | {seasonal:.1f} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
