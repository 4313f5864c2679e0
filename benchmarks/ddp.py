"""Data-parallel training (DDP) against single-process training: same predictions, and the cost.

Fits one seeded ``AarenForecaster`` (airline) and one seeded ``AarenClassifier``
(BasicMotions, ``dropout=0``) with ``devices=1`` and with ``devices=2, strategy="ddp"`` (two
gloo ranks spawned by ``fit`` on CPU; NCCL ranks with ``--device cuda``) and prints the
epochs trained, the largest difference of the predictions (relative for the forecasts,
absolute for the class probabilities) and the fit wall times. On a CPU the DDP time is
dominated by starting the ranks; data parallelism is meant for several GPUs or nodes.

Run: ``python benchmarks/ddp.py [--devices 2] [--device cpu] [--estimator forecaster]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sktime.datasets import load_airline, load_basic_motions

from aaren_ts.estimators import AarenClassifier, AarenForecaster


def _table(one, t1, many, tn, difference: str) -> None:
    print("| | 1 process | DDP |")
    print("|---|---|---|")
    print(f"| world size | {one.world_size_} | {many.world_size_} |")
    print(f"| epochs trained | {len(one.loss_history_)} | {len(many.loss_history_)} |")
    print(difference)
    print(f"| fit wall time (s) | {t1:.1f} | {tn:.1f} |")


def _timed_fits(make, devices: int, fit):
    fits = {}
    for n in (1, devices):
        start = time.perf_counter()
        fitted = fit(make(devices=n, strategy="ddp"))
        fits[n] = (fitted, time.perf_counter() - start)
    return (*fits[1], *fits[devices])


def forecaster(args) -> None:
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
    one, t1, many, tn = _timed_fits(
        lambda **kw: AarenForecaster(**params, **kw),
        args.devices,
        lambda f: f.fit(y, fh=range(1, 13)),
    )
    p1, pn = one.predict().to_numpy(), many.predict().to_numpy()
    difference = np.abs(pn - p1).max() / np.abs(p1).max()
    print("AarenForecaster, airline, 12-step forecast\n")
    _table(one, t1, many, tn, f"| max relative forecast difference | - | {difference:.1e} |")


def classifier(args) -> None:
    X, y = load_basic_motions(split="train", return_type="numpy3D")
    X_test, y_test = load_basic_motions(split="test", return_type="numpy3D")
    params = dict(
        batch_size=8,
        validation_size=0.2,
        max_epochs=args.max_epochs,
        d_model=16,
        n_layers=1,
        n_heads=2,
        dropout=0.0,
        prefix_loss=0.2,
        device=args.device,
        random_state=0,
    )
    one, t1, many, tn = _timed_fits(
        lambda **kw: AarenClassifier(**params, **kw), args.devices, lambda c: c.fit(X, y)
    )
    p1, pn = one.predict_proba(X_test), many.predict_proba(X_test)
    accuracy = [float((m.predict(X_test) == y_test).mean()) for m in (one, many)]
    print("AarenClassifier, BasicMotions (40 test series)\n")
    _table(
        one,
        t1,
        many,
        tn,
        f"| max abs probability difference | - | {np.abs(pn - p1).max():.1e} |\n"
        f"| test accuracy | {accuracy[0]:.3f} | {accuracy[1]:.3f} |",
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--estimator", choices=["forecaster", "classifier", "all"], default="all")
    args = parser.parse_args(argv)
    if args.estimator in ("forecaster", "all"):
        forecaster(args)
    if args.estimator == "all":
        print()
    if args.estimator in ("classifier", "all"):
        classifier(args)


if __name__ == "__main__":
    main()
