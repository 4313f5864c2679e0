"""Temporal point process benchmark: AarenPointProcess with Aaren / Transformer / GRU
encoders, the exponential Hawkes anchor, and the true model where one is known.

What it measures
----------------
For every data set, backbone and seed, ``AarenPointProcess`` is fitted on the train split
with the same hyperparameters for every backbone (only ``backbone`` changes), early-stopped
on the validation split (the best-validation epoch's weights are kept), and evaluated on the
test split:

- log-likelihood per event, two conventions: ``window`` (ours: every event on
  ``[t_start, t_end]`` plus the survival term of the open interval) and ``easytpp`` (events
  ``2..N`` given the first, no survival term: how EasyTPP's published numbers are given);
- RMSE of the next inter-event time predicted as the mean (``predict(kind="mean")``: the
  mean gap capped at the largest training gap), MAE of it predicted as the median
  (``kind="median"``), and next-mark accuracy (argmax), for events ``2..N`` predicted from
  the events before them (EasyTPP's protocol);
- fit time and epochs trained.

``HawkesPointProcess`` (multivariate exponential Hawkes, maximum likelihood) is the classical
anchor; on ``hawkes1`` (mu=0.2, alpha=0.8, beta=1, Shchur et al. 2020) and on a ``make_hawkes``
set (2 marks) the true model's scores are the floor. Two simple baselines on every data set:
the "previous mark predicts the next" rule (the most frequent successor of each mark in the
training sequences) for accuracy, and a constant gap (the training mean for RMSE, the
training median for MAE).

Running it
----------
From the repository root, with the data in ``AAREN_TS_DATA`` (the runs behind
``benchmarks/RESULTS.md``)::

    python benchmarks/tpp.py --threads 1 --datasets taxi --patience 10 \
        --json benchmarks/results/tpp_taxi.json
    python benchmarks/tpp.py --threads 1 --datasets hawkes1 make_hawkes --patience 10 \
        --json benchmarks/results/tpp_synthetic.json
    python benchmarks/tpp.py --threads 1 --datasets stackoverflow --seeds 0 --patience 10 \
        --json benchmarks/results/tpp_stackoverflow.json
    python benchmarks/tpp.py --threads 1 --datasets hawkes1 --recency --epochs 100 --lr 2e-3 \
        --patience 10 --json benchmarks/results/tpp_hawkes1_long.json
    python benchmarks/tpp.py --threads 1 --datasets hawkes1 taxi stackoverflow --seeds 0 \
        --backbones aaren --defaults --params '{"recency": true}' --label "defaults+recency" \
        --json benchmarks/results/tpp_defaults_recency.json   # choosing defaults (validation)
    python benchmarks/tpp.py --quick                      # tiny: checks that it works
    python benchmarks/tpp.py --report benchmarks/results/tpp_taxi.json ...

A JSON file is rewritten after every row and read back on start, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from aaren_ts._checks import json_option

MAKE_HAWKES = {
    "baseline": [0.1, 0.2],
    "adjacency": [[0.3, 0.2], [0.1, 0.4]],
    "decay": 2.0,
}
HAWKES1 = {"baseline": [0.2], "adjacency": [[0.8]], "decay": 1.0}


def load(name: str, quick: bool):
    from aaren_ts.datasets import load_event_sequences, make_hawkes

    if name == "make_hawkes":
        n = 8 if quick else 200
        seqs = make_hawkes(n_sequences=n + 2 * (n // 4), t_end=100.0, random_state=0, **MAKE_HAWKES)
        parts = {"train": seqs[:n], "valid": seqs[n : n + n // 4], "test": seqs[n + n // 4 :]}
    else:
        parts = load_event_sequences(name)
    if quick:
        parts = {k: v[:8] for k, v in parts.items()}
    return parts


def _errors(test, preds) -> np.ndarray:
    """Predicted minus true next gap, events 2..N of every test sequence."""
    pairs = zip(test, preds, strict=True)
    return np.concatenate([t[1:-1] - s.times[:-1] - np.diff(s.times) for s, (t, _) in pairs])


def metrics(model, test) -> dict:
    """Log-likelihoods under both conventions, RMSE of the predicted mean gap, MAE of the
    predicted median gap (models whose ``predict`` has ``kind``) and mark accuracy, for
    events 2..N."""
    preds = model.predict(test, every_prefix=True)
    hit = [marks[1:-1] == s.marks[1:] for s, (_, marks) in zip(test, preds, strict=True)]
    medians = None
    if "kind" in inspect.signature(model.predict).parameters:
        medians = _errors(test, model.predict(test, every_prefix=True, kind="median"))
    return {
        "ll_window": model.score(test),
        "ll_easytpp": model.score(test, convention="easytpp"),
        "ll_per_time": model.score(test, normalize="time"),
        "rmse": float(np.sqrt((_errors(test, preds) ** 2).mean())),
        "mae_median": None if medians is None else float(np.abs(medians).mean()),
        "accuracy": float(np.concatenate(hit).mean()),
    }


def constant_gap_errors(train, test) -> dict:
    """Always the training mean gap (RMSE) or median gap (MAE), for events 2..N."""
    gaps = np.concatenate([np.diff(s.times) for s in train])
    truth = np.concatenate([np.diff(s.times) for s in test])
    return {
        "rmse": float(np.sqrt(((truth - gaps.mean()) ** 2).mean())),
        "mae_median": float(np.abs(truth - np.median(gaps)).mean()),
    }


def previous_mark_accuracy(train, test, n_marks: int) -> float:
    """The "previous mark predicts the next" rule: the most frequent next mark after each
    mark in the training sequences."""
    counts = np.zeros((n_marks, n_marks))
    for s in train:
        np.add.at(counts, (s.marks[:-1], s.marks[1:]), 1)
    rule = counts.argmax(1)
    return float(np.mean(np.concatenate([rule[s.marks[:-1]] == s.marks[1:] for s in test])))


def run(args) -> dict:
    import torch

    from aaren_ts.estimators import AarenPointProcess, HawkesPointProcess

    torch.set_num_threads(args.threads)
    rows = []
    if args.json and Path(args.json).exists() and not args.quick:
        rows = json.loads(Path(args.json).read_text())["rows"]  # resume
    done = {(r["dataset"], r["model"], r.get("seed")) for r in rows}

    def save():
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(meta(args, rows), indent=1))

    for name in args.datasets:
        parts = load(name, args.quick)
        train, valid, test = parts["train"], parts["valid"], parts["test"]
        n_marks = 1 + max(int(s.marks.max()) for part in parts.values() for s in part)
        if (name, "hawkes", None) not in done:
            t0 = time.perf_counter()
            hawkes = HawkesPointProcess(n_marks=n_marks).fit(train)
            row = {"dataset": name, "model": "hawkes", "seed": None}
            row.update(fit_s=time.perf_counter() - t0, **metrics(hawkes, test))
            row["decay"] = hawkes.decay_
            rows.append(row)
            print(json.dumps(row), flush=True)
            if name in ("hawkes1", "make_hawkes"):
                truth = HawkesPointProcess.from_params(
                    **(HAWKES1 if name == "hawkes1" else MAKE_HAWKES)
                )
                rows.append(
                    {"dataset": name, "model": "true", "seed": None, **metrics(truth, test)}
                )
                print(json.dumps(rows[-1]), flush=True)
            # the simple baselines, on every data set
            rows.append(
                {
                    "dataset": name,
                    "model": "previous-mark",
                    "seed": None,
                    "accuracy": previous_mark_accuracy(train, test, n_marks),
                }
            )
            rows.append(
                {
                    "dataset": name,
                    "model": "constant-gap",
                    "seed": None,
                    **constant_gap_errors(train, test),
                }
            )
            save()
        for seed in args.seeds:  # seed-major: an interrupted run has every backbone's seed 0
            for backbone in args.backbones:
                label = backbone + (f" ({args.label})" if args.label else "")
                if (name, label, seed) in done:
                    continue
                model = AarenPointProcess(
                    backbone=backbone, n_marks=n_marks, device="cpu", random_state=seed,
                    **settings(args),
                )  # fmt: skip
                t0 = time.perf_counter()
                model.fit(train, validation_data=valid)
                fit_s = time.perf_counter() - t0
                row = {"dataset": name, "model": label, "seed": seed, "fit_s": fit_s}
                row.update(
                    epochs=len(model.loss_history_),
                    best_epoch=int(np.argmax(model.validation_history_)) + 1,
                    ll_valid=model.score(valid),  # what defaults are chosen on
                    **metrics(model, test),
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
                save()
    save()
    return meta(args, rows)


def settings(args) -> dict:
    """The AarenPointProcess parameters of a run besides backbone, marks, device and seed:
    the script's (the runs behind the tables) or, with ``--defaults``, the estimator's own,
    either updated by ``--params``."""
    if args.defaults:
        chosen = {}
    else:
        chosen = {
            "d_model": args.d_model,
            "n_layers": args.n_layers,
            "n_heads": args.n_heads,
            "max_epochs": args.epochs,
            "patience": args.patience,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "recency": args.recency,
        }
    chosen.update(json.loads(args.params) if args.params else {})
    if args.quick:
        chosen.update(max_epochs=2, d_model=8)
    return chosen


def meta(args, rows) -> dict:
    return {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "settings": {"estimator_defaults": args.defaults, **settings(args)},
        "rows": rows,
    }


def report(paths: list[str]) -> str:
    """Markdown table: mean ± std over seeds per data set and model."""
    rows = [r for p in paths for r in json.loads(Path(p).read_text())["rows"]]
    cols = ["ll_easytpp", "ll_window", "rmse", "mae_median", "accuracy", "ll_valid", "fit_s"]
    lines = [
        "| data set | model | seeds | LL/event EasyTPP | LL/event window | RMSE tau (mean) | "
        "MAE tau (median) | mark acc | valid LL/event window | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict = {}
    for r in rows:
        group = groups.setdefault((r["dataset"], r["model"]), [])
        if r.get("seed") is None and group:  # a seedless row again (runs split over files)
            continue
        group.append(r)
    for (name, model), rs in groups.items():
        cells = []
        for c in cols:
            vals = [r[c] for r in rs if r.get(c) is not None]
            if not vals:
                cells.append("-")
            elif len(vals) == 1:
                cells.append(f"{vals[0]:.3f}" if c != "fit_s" else f"{vals[0]:.0f}")
            else:
                fmt = "{:.0f} ± {:.0f}" if c == "fit_s" else "{:.3f} ± {:.3f}"
                cells.append(fmt.format(np.mean(vals), np.std(vals)))
        seeds = len([r for r in rs if r.get("seed") is not None]) or "-"
        lines.append(f"| {name} | {model} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["taxi", "stackoverflow", "hawkes1"])
    parser.add_argument("--backbones", nargs="+", default=["aaren", "transformer", "gru"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=30)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--recency", action="store_true", help="Aaren's recency term on times")
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="the estimator's default parameters instead of the script's (--params on top)",
    )
    parser.add_argument("--params", help="JSON parameters, e.g. '{\"recency\": true}'")
    parser.add_argument("--label", help="added to the model's name in the rows")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--json", type=json_option(kind=str), help="write (and resume from) this JSON file"
    )
    parser.add_argument("--quick", action="store_true", help="tiny data and 2 epochs")
    parser.add_argument("--report", nargs="+", help="print the table of these JSON files")
    args = parser.parse_args()
    if args.report:
        print(report(args.report))
        return
    if args.quick:
        args.seeds = args.seeds[:1]
    result = run(args)
    print(report([args.json]) if args.json else json.dumps(result["rows"], indent=1))


if __name__ == "__main__":
    main()
