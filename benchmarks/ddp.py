"""Data-parallel training (DDP) against single-process training: same forecasts, and the cost.

Fits one seeded ``AarenForecaster`` with ``devices=1`` and with ``devices=2,
strategy="ddp"`` (two gloo ranks spawned by ``fit`` on CPU; NCCL ranks with
``--device cuda``) and prints the epochs trained, the largest relative difference of the
forecasts and the fit wall times. On a CPU the second number is dominated by starting the
ranks; data parallelism is meant for several GPUs or nodes.

Run: ``python benchmarks/ddp.py [--devices 2] [--device cpu]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sktime.datasets import load_airline

from aaren_ts.estimators import AarenForecaster


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-epochs", type=int, default=5)
    args = parser.parse_args(argv)
    y = load_airline()
    params = dict(
        context_length=24,
        batch_size=32,
        validation_size=0.2,
        max_epochs=args.max_epochs,
        d_model=16,
        n_layers=1,
        n_heads=2,
        device=args.device,
        random_state=0,
    )
    fits = {}
    for devices in (1, args.devices):
        start = time.perf_counter()
        f = AarenForecaster(devices=devices, strategy="ddp", **params).fit(y, fh=range(1, 13))
        fits[devices] = (f, time.perf_counter() - start)
    (one, t1), (many, tn) = fits[1], fits[args.devices]
    p1, pn = one.predict().to_numpy(), many.predict().to_numpy()
    print("| | 1 process | DDP |")
    print("|---|---|---|")
    print(f"| world size | {one.world_size_} | {many.world_size_} |")
    print(f"| epochs trained | {len(one.loss_history_)} | {len(many.loss_history_)} |")
    difference = np.abs(pn - p1).max() / np.abs(p1).max()
    print(f"| max relative forecast difference | - | {difference:.1e} |")
    print(f"| fit wall time (s) | {t1:.1f} | {tn:.1f} |")


if __name__ == "__main__":
    main()
