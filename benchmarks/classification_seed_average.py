"""One network against the average of several, on validation folds of the training data.

What it measures
----------------
For every data set named and every backbone, the **train** split is cut into ``--folds``
stratified folds (shuffled with ``--seed``); for each model seed in ``--model-seeds`` a
single network (``n_networks=1``, ``random_state`` = the model seed, every other setting the
``AarenClassifier`` default) is fitted on all folds but one and its class probabilities on
the held-out fold are kept. The report gives, per data set and backbone, the held-out
accuracy of single networks (the mean over seeds and folds, and per seed) and of the average
of the seeds' probabilities, fold by fold: what ``n_networks=len(model_seeds)`` gives with
``random_state=0`` when the model seeds are ``0, 1, ..., n - 1`` (member ``i`` of that
ensemble is the plain fit of seed ``i``). The test split is never read.

Running it
----------
From the repository root, with the data in ``AAREN_TS_DATA``::

    python benchmarks/classification_seed_average.py --threads 1 --datasets ArrowHead \
        --json benchmarks/results/classification_seed_average_arrowhead.json
    python benchmarks/classification_seed_average.py \
        --report benchmarks/results/classification_seed_average_*.json
    python benchmarks/classification_seed_average.py --quick --datasets BasicMotions
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
from benchmarks.classification import load_split, series_rows  # noqa: E402

PACKAGES = ["torch", "numpy", "scikit-learn", "sktime"]


def held_out_probabilities(X, y, backbone: str, seed: int, folds: int, fold_seed: int, quick):
    """One row per fold: the single network's held-out probabilities and accuracy."""
    from sklearn.model_selection import StratifiedKFold

    from aaren_ts.estimators import AarenClassifier

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=fold_seed)
    for fold, (fit_rows, held_rows) in enumerate(splitter.split(np.zeros(len(y)), y)):
        clf = AarenClassifier(backbone=backbone, n_networks=1, random_state=seed, device="cpu")
        if quick:
            clf.set_params(max_epochs=2, d_model=8)
        start = time.perf_counter()
        clf.fit(series_rows(X, fit_rows), y[fit_rows])
        fit_s = time.perf_counter() - start
        proba = clf.predict_proba(series_rows(X, held_rows))
        train_accuracy = float((clf.predict(series_rows(X, fit_rows)) == y[fit_rows]).mean())
        yield {
            "fold": fold,
            "accuracy": float((clf.classes_[proba.argmax(1)] == y[held_rows]).mean()),
            "train_accuracy": train_accuracy,
            "fit_s": fit_s,
            "proba": proba.tolist(),
            "held": [str(v) for v in y[held_rows]],
            "classes": [str(c) for c in clf.classes_],
        }


def summarise(rows: list[dict]) -> dict:
    """Single networks' mean accuracy (overall and per seed) and the seed average's per fold."""
    seeds = sorted({r["seed"] for r in rows})
    folds = sorted({r["fold"] for r in rows})
    per_seed = {s: float(np.mean([r["accuracy"] for r in rows if r["seed"] == s])) for s in seeds}
    averaged = []
    for fold in folds:
        fold_rows = [r for r in rows if r["fold"] == fold]
        if len(fold_rows) < len(seeds):  # a run stopped part-way: no average for this fold
            continue
        proba = np.mean([r["proba"] for r in fold_rows], axis=0)
        predicted = np.asarray(fold_rows[0]["classes"])[proba.argmax(1)]
        averaged.append(float((predicted == np.asarray(fold_rows[0]["held"])).mean()))
    return {
        "single": float(np.mean([r["accuracy"] for r in rows])),
        "per_seed": per_seed,
        "averaged": averaged,
    }


def report(rows: list[dict]) -> str:
    lines = [
        "| data set | backbone | single networks (mean) | per seed | average of the seeds "
        "(per fold) | average (mean) |",
        "|---|---|---:|---|---|---:|",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for backbone in dict.fromkeys(r["backbone"] for r in rows if r["dataset"] == dataset):
            cell = [r for r in rows if r["dataset"] == dataset and r["backbone"] == backbone]
            s = summarise(cell)
            seeds = " / ".join(f"{v:.3f}" for v in s["per_seed"].values())
            folds = " / ".join(f"{v:.3f}" for v in s["averaged"]) or "-"
            mean = f"{np.mean(s['averaged']):.3f}" if s["averaged"] else "-"
            lines.append(
                f"| {dataset} | {backbone} | {s['single']:.3f} | {seeds} | {folds} | {mean} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=[])
    parser.add_argument("--backbones", nargs="+", default=["aaren"])
    parser.add_argument("--model-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="the folds' shuffle")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 epochs, tiny model")
    parser.add_argument("--json", type=json_option(kind=str), help="rows written after each")
    parser.add_argument("--report", nargs="+", help="print the table of saved --json files")
    args = parser.parse_args(argv)
    if args.report:
        rows = [r for path in args.report for r in json.loads(Path(path).read_text())["rows"]]
        print(report(rows))
        return

    import torch

    torch.set_num_threads(args.threads)
    record = {**run_header("classification_seed_average.py", argv, args.threads, PACKAGES)}
    record["rows"] = []
    for dataset in args.datasets:
        X, y = load_split(dataset, "train")  # never the test split
        for backbone in args.backbones:
            for seed in args.model_seeds:
                for row in held_out_probabilities(
                    X, y, backbone, seed, args.folds, args.seed, args.quick
                ):
                    row = {"dataset": dataset, "backbone": backbone, "seed": seed, **row}
                    record["rows"].append(row)
                    brief = {k: v for k, v in row.items() if k not in ("proba", "held")}
                    print(json.dumps(brief), flush=True)
                    if args.json:  # after every row: a stopped run keeps what it has
                        Path(args.json).write_text(json.dumps(record) + "\n")
    print(report(record["rows"]))


if __name__ == "__main__":
    main()
