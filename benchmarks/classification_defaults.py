"""Choosing ``AarenClassifier``'s defaults on validation folds of the training data.

What it measures
----------------
For every data set (the UEA sets under ``$AAREN_TS_DATA/classification``, or those named
with ``--datasets``, which may be sets sktime ships: ``classification.py``'s ``load_split``)
and every candidate setting (the defaults, and one change to them each), the **train** split
is cut into ``--folds`` stratified folds; the classifier is fitted on all folds but one and
scored (accuracy) on the one held out, for each fold in turn. The test split is never read.
The table gives the mean held-out accuracy per data set and candidate, and their mean over
the data sets: the number defaults are chosen by.

Running it
----------
From the repository root, with the data in ``AAREN_TS_DATA``::

    python benchmarks/classification_defaults.py --threads 1 \
        --json benchmarks/results/classification_defaults.json
    python benchmarks/classification_defaults.py --candidates defaults recency --threads 1 \
        --json benchmarks/results/classification_defaults_a.json   # split over processes
    python benchmarks/classification_defaults.py \
        --report benchmarks/results/classification_defaults_*.json
    python benchmarks/classification_defaults.py --quick       # tiny: checks that it works
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from aaren_ts._checks import json_option  # noqa: E402
from benchmarks._run_record import run_header  # noqa: E402
from benchmarks.classification import load_split, local_datasets, series_rows  # noqa: E402

PACKAGES = ["torch", "numpy", "scikit-learn", "sktime"]
# one change to the defaults each (what was tried: benchmarks/RESULTS.md)
CANDIDATES: dict[str, dict] = {
    "defaults": {},
    "recency": {"recency": True},
    "kernel_size=7": {"kernel_size": 7},
    "dropout=0.2": {"dropout": 0.2},
    # 200 epochs whatever the size of the set: the default before max_epochs="auto"
    "max_epochs=200": {"max_epochs": 200},
    # three times the optimiser steps (ArrowHead's fits ended underfitted at 200 epochs)
    "max_epochs=600": {"max_epochs": 600},
    # the "auto" budget's floor in optimiser steps (the default is 1200)
    "min_steps=800": {"min_steps": 800},
    "label_smoothing=0.1": {"label_smoothing": 0.1},
    "lr=3e-3": {"lr": 3e-3},
    "lr=3e-4": {"lr": 3e-4},  # a slower rate: steadier last iterates on the small sets?
    # multi-scale causal embeddings (issue 17's list)
    "kernel_size=(3,7)": {"kernel_size": (3, 7)},
    "kernel_size=(3,11)": {"kernel_size": (3, 11)},
    "kernel_size=(3,5,7)": {"kernel_size": (3, 5, 7)},
    "kernel_size=(3,15)": {"kernel_size": (3, 15)},
    "kernel_size=(3,21)": {"kernel_size": (3, 21)},
    # the head reads the mean of the backbone's outputs over all steps so far
    "readout=mean": {"readout": "mean"},
    # the sinusoidal code of each step's index added to its embedding (the Transformer
    # backbone's own position signal; ArrowHead, where Aaren trails it, is shape data)
    "positional": {"positional": True},
    "positional=False": {"positional": False},  # the defaults before "auto"
    # width and depth: Aaren's learned query makes each head one pooled summary per layer,
    # so more heads or layers give the last step more summaries to read (ArrowHead, GunPoint)
    "n_heads=8": {"n_heads": 8},
    "d_model=128": {"d_model": 128},
    "n_layers=3": {"n_layers": 3},
    # three networks with their own seeds, their class probabilities averaged: the folds'
    # single fits differ from seed to seed by as much as the candidates above
    "n_networks=3": {"n_networks": 3},
    "n_networks=1": {"n_networks": 1},
}


def cross_validate(X, y, params: dict, folds: int, seed: int, quick: bool) -> list[dict]:
    """Held-out accuracy of each fold (stratified, shuffled with ``seed``)."""
    from sklearn.model_selection import StratifiedKFold

    from aaren_ts.estimators import AarenClassifier

    out = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (fit_rows, held_rows) in enumerate(splitter.split(np.zeros(len(y)), y)):
        clf = AarenClassifier(random_state=seed, device="cpu", **params)
        if quick:
            clf.set_params(max_epochs=2, d_model=8)
        start = time.perf_counter()
        clf.fit(series_rows(X, fit_rows), y[fit_rows])
        fit_s = time.perf_counter() - start
        accuracy = float((clf.predict(series_rows(X, held_rows)) == y[held_rows]).mean())
        out.append({"fold": fold, "accuracy": accuracy, "fit_s": fit_s})
    return out


def majority_folds(y, folds: int, seed: int) -> list[dict]:
    """The constant baseline on the same folds: each held-out fold scored by the most
    frequent class of the folds fitted on."""
    from sklearn.dummy import DummyClassifier
    from sklearn.model_selection import StratifiedKFold

    out = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (fit_rows, held_rows) in enumerate(splitter.split(np.zeros(len(y)), y)):
        clf = DummyClassifier(strategy="most_frequent").fit(
            np.zeros((len(fit_rows), 1)), y[fit_rows]
        )
        accuracy = float((clf.predict(np.zeros((len(held_rows), 1))) == y[held_rows]).mean())
        out.append({"fold": fold, "accuracy": accuracy, "fit_s": 0.0})
    return out


def report(rows: list[dict]) -> str:
    """Mean held-out accuracy per candidate (rows) and data set (columns), and the mean."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    candidates = list(dict.fromkeys(r["candidate"] for r in rows))
    lines = [
        "| candidate | " + " | ".join(datasets) + " | mean |",
        "|---|" + "---:|" * (len(datasets) + 1),
    ]
    for name in candidates:
        means = []
        for d in datasets:
            acc = [r["accuracy"] for r in rows if r["candidate"] == name and r["dataset"] == d]
            means.append(float(np.mean(acc)) if acc else float("nan"))
        cells = " | ".join(f"{m:.3f}" for m in means)
        lines.append(f"| {name} | {cells} | {np.mean(means):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", help="default: the UEA sets found locally")
    parser.add_argument(
        "--candidates",
        nargs="*",
        choices=list(CANDIDATES),
        default=None,
        help="none: --baseline only",
    )
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 epochs, tiny model")
    parser.add_argument(
        "--baseline", action="store_true", help="also the constant (majority class) baseline"
    )
    parser.add_argument("--json", type=json_option(kind=str), help="rows written after each")
    parser.add_argument("--report", nargs="+", help="print the table of saved --json files")
    args = parser.parse_args(argv)
    if args.report:
        rows = [r for path in args.report for r in json.loads(Path(path).read_text())["rows"]]
        print(report(rows))
        return

    import torch

    torch.set_num_threads(args.threads)
    header = run_header("classification_defaults.py", argv, args.threads, PACKAGES)
    record = {**header, "rows": []}
    names = list(CANDIDATES) if args.candidates is None else args.candidates

    def save() -> None:  # after every row: a long screen stopped early keeps what it has
        if args.json:
            Path(args.json).write_text(json.dumps(record, indent=1) + "\n")

    for dataset in args.datasets or local_datasets():
        X, y = load_split(dataset, "train")  # never the test split
        for row in majority_folds(y, args.folds, args.seed) if args.baseline else []:
            record["rows"].append({"dataset": dataset, "candidate": "majority (baseline)", **row})
        save()  # the baseline alone (--candidates with no names) is written too
        for name in names:
            for row in cross_validate(X, y, CANDIDATES[name], args.folds, args.seed, args.quick):
                record["rows"].append({"dataset": dataset, "candidate": name, **row})
                print(json.dumps(record["rows"][-1]), flush=True)
                save()
    print(report(record["rows"]))


if __name__ == "__main__":
    main()
