"""UEA multivariate classification benchmark: Aaren vs Transformer vs GRU backbones, and
MiniRocket as the classical anchor.

What it measures
----------------
For every data set, backbone and seed, ``AarenClassifier`` is fitted on the archive's train
split with the same hyperparameters for every backbone (only ``backbone`` changes) and
scored on the test split:

- accuracy (mean and spread over seeds);
- fit time, and the time of ``predict_proba`` on the whole test split;
- ``n_epochs`` trained.

The constant baseline ("majority") predicts the train split's most frequent class for every
test series (scikit-learn's ``DummyClassifier``), once per data set.

MiniRocket is sktime's ``RocketClassifier(rocket_transform="minirocket")`` (ridge classifier
on 10,000 MiniRocket features), with the same seeds. It needs equal-length series: ragged
sets (JapaneseVowels) are zero-padded at the end to the longest series by sktime's
``PaddingTransformer``. ``AarenClassifier`` reads ragged series as they are.

Data sets: JapaneseVowels, BasicMotions, Handwriting, and any other UEA set found in
``$AAREN_TS_DATA/classification/<Name>/``. ``--sktime-shipped`` adds every classification set
that sktime's own package ships (``sktime/datasets/data/<Name>/``, a ``.ts`` pair with class
labels: ACSF1, ArrowHead, GunPoint, ItalyPowerDemand, OSULeaf, PLAID, UnitTest in sktime
1.2), read from sktime's folder with sktime's ``load_from_tsfile``, never downloaded. A set in
both places is read from ``AAREN_TS_DATA`` (checked against its pinned checksum).

Targets (issue 5)
-----------------
Aaren >= the Transformer backbone (mean accuracy) on every set; JapaneseVowels >= 0.98,
BasicMotions 1.0, Handwriting >= 0.47. Anchors measured on this kind of machine (seed 0):
MiniRocket 0.989 / 1.000 / 0.518, 1-NN DTW 0.949 / 0.975 / 0.607.

Running it
----------
From the repository root, with the data in ``AAREN_TS_DATA`` (MiniRocket needs numba:
``pip install -e ".[bench]"``)::

    python benchmarks/classification.py --threads 1 \
        --json benchmarks/results/classification_cpu.json
    python benchmarks/classification.py --datasets BasicMotions --seeds 0 --backbones aaren
    python benchmarks/classification.py --quick        # tiny: checks that it works
    python benchmarks/classification.py --datasets ArrowHead GunPoint --threads 1
    python benchmarks/classification.py --sktime-shipped --threads 1
    python benchmarks/classification.py --report benchmarks/results/classification_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from aaren_ts._checks import json_option

DATASETS = ["JapaneseVowels", "BasicMotions", "Handwriting"]
BACKBONES = ["aaren", "transformer", "gru"]


def local_datasets() -> list[str]:
    """The three named sets, then any other UEA set found under ``AAREN_TS_DATA``."""
    root = Path(os.environ.get("AAREN_TS_DATA", "")) / "classification"
    found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return DATASETS + [name for name in found if name not in DATASETS]


def sktime_shipped_datasets() -> list[str]:
    """The classification sets sktime's package ships: folders of ``sktime/datasets/data``
    holding ``<Name>_TRAIN.ts`` and ``<Name>_TEST.ts`` whose header declares class labels
    (regression sets such as Tecator declare ``@targetLabel`` instead)."""
    names = []
    for folder in sorted(_sktime_data_dir().iterdir()):
        train = folder / f"{folder.name}_TRAIN.ts"
        if not (train.is_file() and (folder / f"{folder.name}_TEST.ts").is_file()):
            continue
        if _declares_class_labels(train):
            names.append(folder.name)
    return names


def _declares_class_labels(path: Path) -> bool:
    """Whether a ``.ts`` file's header (the lines before ``@data``) says ``@classLabel true``."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            tag = line.strip().lower()
            if tag.startswith("@classlabel"):
                return tag.startswith("@classlabel true")
            if tag.startswith("@data"):
                break
    return False


def _sktime_data_dir() -> Path:
    import sktime.datasets

    return Path(sktime.datasets.__file__).parent / "data"


def load_split(name: str, split: str):
    """One split of ``name``: from ``AAREN_TS_DATA`` (or the cache) where it is there, else
    sktime's shipped copy; ragged sets as pd-multiindex, the others as numpy3D."""
    from aaren_ts.datasets import load_uea
    from aaren_ts.datasets.uea import _local, as_return_type

    shipped = _sktime_data_dir() / name / f"{name}_{split.upper()}.ts"
    if _local(name, shipped.name) is not None or not shipped.is_file():
        return load_uea(name, split)
    from sktime.datasets import load_from_tsfile

    X, y = load_from_tsfile(str(shipped), return_data_type="pd-multiindex")
    return as_return_type(X), np.asarray(y)


def run_aaren(data, backbone: str, seed: int, params: dict) -> dict:
    from aaren_ts.estimators import AarenClassifier

    (X, y), (X_test, y_test) = data
    clf = AarenClassifier(backbone=backbone, random_state=seed, device=params.pop("device"))
    clf.set_params(**params)
    start = time.perf_counter()
    clf.fit(X, y)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    proba = clf.predict_proba(X_test)
    predict_s = time.perf_counter() - start
    accuracy = float((clf.classes_[proba.argmax(1)] == y_test).mean())
    return {
        "accuracy": accuracy,
        "fit_s": fit_s,
        "predict_s": predict_s,
        "n_epochs": clf.n_epochs_,
    }


def run_majority(data) -> dict:
    """The constant baseline: the train split's most frequent class, for every series."""
    from sklearn.dummy import DummyClassifier

    (_, y), (_, y_test) = data
    start = time.perf_counter()
    clf = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(y), 1)), y)
    fit_s = time.perf_counter() - start
    pred = clf.predict(np.zeros((len(y_test), 1)))
    return {"accuracy": float((pred == y_test).mean()), "fit_s": fit_s, "predict_s": 0.0}


def run_minirocket(data, seed: int) -> dict:
    from sktime.classification.kernel_based import RocketClassifier
    from sktime.transformations.padder import PaddingTransformer

    (X, y), (X_test, y_test) = data
    clf = RocketClassifier(rocket_transform="minirocket", random_state=seed)
    if not isinstance(X, np.ndarray):  # ragged: MiniRocket needs equal length
        longest = max(X.groupby(level=0).size().max(), X_test.groupby(level=0).size().max())
        clf = PaddingTransformer(pad_length=int(longest)) * clf
    start = time.perf_counter()
    clf.fit(X, y)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = clf.predict(X_test)
    predict_s = time.perf_counter() - start
    return {"accuracy": float((pred == y_test).mean()), "fit_s": fit_s, "predict_s": predict_s}


def summarise(cells: list[dict]) -> list[str]:
    """Markdown table: one row per data set and model, mean ± spread over seeds."""
    rows = [
        "| data set | model | accuracy mean ± std | min-max | seeds | fit s | predict s | epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for cell in cells:
        groups.setdefault((cell["dataset"], cell["model"]), []).append(cell)
    for (dataset, model), group in groups.items():
        acc = np.array([c["accuracy"] for c in group])
        fit = np.mean([c["fit_s"] for c in group])
        pred = np.mean([c["predict_s"] for c in group])
        epochs = "/".join(str(c["n_epochs"]) for c in group) if "n_epochs" in group[0] else "-"
        rows.append(
            f"| {dataset} | {model} | {acc.mean():.3f} ± {acc.std():.3f} | "
            f"{acc.min():.3f}-{acc.max():.3f} | {len(acc)} | {fit:.1f} | {pred:.2f} | {epochs} |"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", help="default: the three named + local ones")
    parser.add_argument(
        "--sktime-shipped",
        action="store_true",
        help="add every classification set sktime's package ships (offline)",
    )
    parser.add_argument("--backbones", nargs="*", default=BACKBONES, help="none: MiniRocket only")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(  # the AarenClassifier default: "auto"
        "--epochs", type=lambda v: v if v == "auto" else int(v), default="auto"
    )
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--kernel-size",
        type=int,
        nargs="+",
        help="the embedding's size, or several: a multi-scale embedding (default: the "
        "AarenClassifier default)",
    )
    parser.add_argument(
        "--readout",
        choices=["last", "mean"],
        help="the head reads the last step or the mean over steps (default: the "
        "AarenClassifier default)",
    )
    parser.add_argument(
        "--recency", action="store_true", help="aaren: recency=True (cells named aaren+recency)"
    )
    parser.add_argument(
        "--positional",
        action="store_true",
        help="aaren and gru: positional=True (cells named <backbone>+positional)",
    )
    parser.add_argument(
        "--n-networks",
        type=int,
        help="networks averaged per fit (default: the AarenClassifier default)",
    )
    parser.add_argument("--no-minirocket", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny budget: checks the script")
    parser.add_argument(
        "--json",
        type=json_option(kind=str),
        help="write every cell's results here (after every cell)",
    )
    parser.add_argument("--report", nargs="+", help="print the tables of saved --json files")
    args = parser.parse_args(argv)

    if args.report:
        cells = [c for path in args.report for c in json.loads(Path(path).read_text())["cells"]]
        print("\n".join(summarise(cells)))
        return

    import torch

    torch.set_num_threads(args.threads)
    if args.quick:
        args.epochs, args.d_model, args.seeds = 2, 8, args.seeds[:1]
    params = {
        "max_epochs": args.epochs,
        "d_model": args.d_model,
        "n_layers": args.n_layers,
        "dropout": args.dropout,
        "lr": args.lr,
        "batch_size": args.batch_size,
    }
    if args.readout:
        params["readout"] = args.readout
    if args.n_networks is not None:
        params["n_networks"] = args.n_networks
    if args.kernel_size:
        sizes = args.kernel_size
        params["kernel_size"] = sizes[0] if len(sizes) == 1 else tuple(sizes)
    record = {
        "command": "python "
        + shlex.join(["benchmarks/classification.py", *(argv or sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}",
        "torch": torch.__version__,
        "device": args.device,
        "params": params,
        "cells": [],
    }
    # MiniRocket runs last, after every deep model: once numba's parallel code has run, a
    # worker thread of its stays busy in this process and slows torch down (measured here:
    # BasicMotions fits 3-4x slower after JapaneseVowels' MiniRocket).
    datasets = list(args.datasets or ([] if args.sktime_shipped else local_datasets()))
    if args.sktime_shipped:
        datasets += [name for name in sktime_shipped_datasets() if name not in datasets]
    jobs = [(d, "majority", args.seeds[0]) for d in datasets]
    jobs += [(d, b, s) for d in datasets for b in args.backbones for s in args.seeds]
    if not args.no_minirocket:
        jobs += [(d, "minirocket", s) for d in datasets for s in args.seeds]
    loaded: dict[str, tuple] = {}
    for dataset, model, seed in jobs:
        if dataset not in loaded:
            data = (load_split(dataset, "train"), load_split(dataset, "test"))
            if args.quick:  # a few series of each split, every class represented
                data = tuple(_head(X, y, 20) for X, y in data)
            loaded[dataset] = data
        data = loaded[dataset]
        if model == "majority":
            result = run_majority(data)
        elif model == "minirocket":
            result = run_minirocket(data, seed)
        else:
            extra = {"recency": True} if args.recency and model == "aaren" else {}
            if args.positional and model in ("aaren", "gru"):
                extra["positional"] = True
            result = run_aaren(data, model, seed, {**params, **extra, "device": args.device})
            model += "".join(f"+{name}" for name in extra)
        cell = {"dataset": dataset, "model": model, "seed": seed, **result}
        record["cells"].append(cell)
        print(json.dumps(cell), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    print("\n".join(summarise(record["cells"])))


def _head(X, y, n: int):
    """``n`` series spread evenly over the split (the archive's files are sorted by class)."""
    rows = np.linspace(0, len(y) - 1, n).astype(int)
    return series_rows(X, rows), y[rows]


def series_rows(X, rows: np.ndarray):
    """Series ``rows`` of a panel (a 3D array or a pd-multiindex frame)."""
    if isinstance(X, np.ndarray):
        return X[rows]
    keys = X.index.get_level_values(0).unique()[rows]
    return X.loc[keys]


if __name__ == "__main__":
    main()
