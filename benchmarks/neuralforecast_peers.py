"""Aaren vs neuralforecast's VanillaTransformer, PatchTST and NHITS on ETTh1, neuralforecast's
own protocol, identical budgets.

What it measures
----------------
ETTh1's first 20 months (14,400 hourly rows; the Informer/TSLib borders: 12 months train,
4 validation, 4 test) are standardised per channel with the train mean and standard deviation,
and the 7 channels become 7 series of one long data frame (``unique_id`` = channel), as in
neuralforecast's long-horizon experiments. Every model runs

    NeuralForecast(models=[model], freq="h").cross_validation(
        df, val_size=2880, test_size=2880, n_windows=None, step_size=STEP)

which trains once on the train months (the validation months are held out and not scored:
no early stopping, ``limit_val_batches=0``) and forecasts every test cutoff
``STEP`` hours apart, each from the ``input_size`` values before it. MSE and MAE are averaged
over all channels, forecast steps and test windows on the standardised values (the TSLib
metric; ``step_size=1`` gives TSLib's 2,880 - h + 1 windows).

Identical for all four models: ``input_size`` (96), ``max_steps``, ``batch_size`` (7: all
series), ``windows_batch_size``, ``learning_rate``, ``scaler_type``, ``random_seed``, the loss
(neuralforecast's default, MAE), ``accelerator="cpu"``. Each model otherwise keeps
neuralforecast's default architecture; Aaren uses ``aaren_ts.integrations.neuralforecast``'s
defaults (``d_model=64``, 2 layers, 4 heads, patches of 16 every 8 steps).

Each (model, horizon) cell runs in a fresh subprocess, which reports its fit time (a Lightning
``Timer`` around training only), the whole ``cross_validation`` time, its peak resident memory
(``ru_maxrss``) and its resident memory after importing everything but before fitting (the
difference is what fitting and forecasting added).

Running it
----------
From the repository root, with the data in ``AAREN_TS_DATA``::

    python benchmarks/neuralforecast_peers.py --horizons 96 192 \\
        --models Aaren PatchTST NHITS VanillaTransformer --max-steps 300 \\
        --windows-batch-size 64 --step-size 24 \\
        --out benchmarks/results/neuralforecast_peers_etth1.json

    python benchmarks/neuralforecast_peers.py --quick      # tiny: checks that it works

(the run in ``benchmarks/RESULTS.md``: on a shared 2-core CPU, VanillaTransformer's fit takes
4-7 times the others' (about 400 s for 300 steps), which sets the budget; ``--step-size 24`` scores
every 24th test cutoff instead of all of them.)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time

from aaren_ts._checks import json_option

MODELS = ("Aaren", "VanillaTransformer", "PatchTST", "NHITS")
TRAIN, VAL, TEST = 12 * 30 * 24, 4 * 30 * 24, 4 * 30 * 24  # ETT hourly protocol (rows)


def etth1_long(n_rows: int | None = None):
    """ETTh1's protocol rows, standardised with train statistics, as a long data frame."""
    import pandas as pd

    from aaren_ts.datasets import load_forecasting

    frame = load_forecasting("ETTh1").iloc[: TRAIN + VAL + TEST]
    train = frame.iloc[:TRAIN]
    frame = (frame - train.mean()) / train.std(ddof=0)
    if n_rows is not None:  # --quick: a short slice, scaled the same way
        frame = frame.iloc[:n_rows]
    long = frame.reset_index(names="ds").melt(id_vars="ds", var_name="unique_id", value_name="y")
    long["ds"] = pd.to_datetime(long["ds"])
    return long[["unique_id", "ds", "y"]].sort_values(["unique_id", "ds"], ignore_index=True)


def build_model(name: str, horizon: int, config: dict, callbacks: list):
    """The model ``name`` with the shared budget ``config`` and default architecture."""
    from neuralforecast.models import NHITS, PatchTST, VanillaTransformer

    from aaren_ts.integrations.neuralforecast import Aaren

    classes = {
        "Aaren": Aaren,
        "VanillaTransformer": VanillaTransformer,
        "PatchTST": PatchTST,
        "NHITS": NHITS,
    }
    shared = dict(
        h=horizon,
        input_size=config["input_size"],
        max_steps=config["max_steps"],
        # trained on the train months only, with no validation pass (no early stopping):
        # scoring the 4 validation months would cost as much as the test forecasts
        val_check_steps=config["max_steps"],
        limit_val_batches=0,
        batch_size=config["batch_size"],
        windows_batch_size=config["windows_batch_size"],
        inference_windows_batch_size=config["inference_windows_batch_size"],
        learning_rate=config["learning_rate"],
        scaler_type=config["scaler_type"],
        random_seed=config["random_seed"],
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        callbacks=callbacks,
    )
    return classes[name](**shared)


def run_cell(name: str, horizon: int, config: dict) -> dict:
    """Fit and cross-validate one model at one horizon in this process; return its row."""
    import logging

    import numpy as np
    import torch
    from neuralforecast import NeuralForecast
    from pytorch_lightning.callbacks import Timer

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning_fabric").setLevel(logging.ERROR)
    torch.set_num_threads(config["threads"])
    df = etth1_long(config.get("n_rows"))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    timer = Timer()
    model = build_model(name, horizon, config, [timer])
    nf = NeuralForecast(models=[model], freq="h")
    start = time.perf_counter()
    # neuralforecast needs (test_size - h) divisible by step_size: the test part keeps its end
    # and drops at most step_size - 1 of its first cutoffs (none with step_size=1)
    step = config["step_size"]
    test_size = horizon + step * ((config["test_size"] - horizon) // step)
    cv = nf.cross_validation(
        df=df,
        val_size=config["val_size"] + config["test_size"] - test_size,
        test_size=test_size,
        n_windows=None,
        step_size=config["step_size"],
    )
    total = time.perf_counter() - start
    # NeuralForecast.fit trains a deep copy of the model, callbacks included: read that timer
    timer = next(c for c in nf.models[0].trainer_kwargs["callbacks"] if isinstance(c, Timer))
    error = (cv[name] - cv["y"]).to_numpy()
    return {
        "model": name,
        "horizon": horizon,
        "mse": float(np.mean(error**2)),
        "mae": float(np.mean(np.abs(error))),
        "n_windows": int(cv["cutoff"].nunique()),
        "n_series": int(cv["unique_id"].nunique()),
        "test_size": int(test_size),
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "fit_s": float(timer.time_elapsed("train")),
        "cv_s": float(total),
        "rss_before_mb": float(rss_before),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_in_subprocess(name: str, horizon: int, config: dict) -> dict:
    """``run_cell`` in a fresh interpreter, so ``ru_maxrss`` is this cell's alone."""
    command = [sys.executable, os.path.abspath(__file__), "--cell", name, str(horizon)]
    command += ["--config", json.dumps(config)]
    env = {**os.environ, "OMP_NUM_THREADS": str(config["threads"])}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode:
        raise RuntimeError(f"{name} h={horizon} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| model | h | MSE | MAE | windows | params | fit s | cv s | RSS before MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['horizon']} | {r['mse']:.3f} | {r['mae']:.3f} | "
            f"{r['n_windows']} | {r['n_params']:,} | {r['fit_s']:.0f} | {r['cv_s']:.0f} | "
            f"{r['rss_before_mb']:.0f} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--horizons", type=int, nargs="+", default=[96, 192])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=7)
    parser.add_argument("--windows-batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--scaler-type", default="standard")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--step-size", type=int, default=1, help="hours between test cutoffs (1: every window)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per cell")
    parser.add_argument("--quick", action="store_true", help="tiny: a few steps, short slice")
    parser.add_argument(
        "--out",
        type=json_option(kind=str),
        help="write the rows and the settings to this JSON file",
    )
    parser.add_argument("--cell", nargs=2, metavar=("MODEL", "H"), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.cell:  # a child: one cell, its row as the last line of stdout
        row = run_cell(args.cell[0], int(args.cell[1]), json.loads(args.config))
        print(json.dumps(row))
        return
    config = {
        "input_size": args.input_size,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "windows_batch_size": args.windows_batch_size,
        "inference_windows_batch_size": 1024,
        "learning_rate": args.learning_rate,
        "scaler_type": args.scaler_type,
        "random_seed": args.seed,
        "val_size": VAL,
        "test_size": TEST,
        "step_size": args.step_size,
        "threads": args.threads,
    }
    horizons = args.horizons
    if args.quick:  # every code path, in about a minute: 3 steps on 1,000 rows
        horizons = [24]
        config.update(
            input_size=48, max_steps=3, windows_batch_size=32, val_size=200, test_size=200,
            step_size=24, n_rows=1000,
        )  # fmt: skip
    command = "python benchmarks/neuralforecast_peers.py " + " ".join(sys.argv[1:])
    rows = []
    for horizon in horizons:
        for name in args.models:
            row = run_in_subprocess(name, horizon, config)
            rows.append(row)
            print(f"done {name} h={horizon}: mse {row['mse']:.4f}", file=sys.stderr, flush=True)
            if args.out:  # after every cell, so a long run that is stopped keeps what it did
                write_record(args.out, command, config, rows)
    print(f"command: {command}")
    print(markdown_table(rows))


def write_record(path: str, command: str, config: dict, rows: list[dict]) -> None:
    from importlib.metadata import version

    import torch

    record = {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        # (from the package metadata: importing neuralforecast here would cost seconds)
        "neuralforecast": version("neuralforecast"),
        "config": config,
        "rows": rows,
    }
    with open(path, "w") as f:
        json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
