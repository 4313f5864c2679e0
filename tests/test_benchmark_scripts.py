"""The GPU benchmark scripts run end to end (on CPU: tiny shapes, the Triton interpreter), so
the table a GPU session runs is known to work; their numbers are not checked here."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import needs_dataset

from aaren_ts._checks import json_option

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> list[str]:
    """``benchmarks/<script> args`` in a fresh interpreter: for the scripts that time thread
    settings or run Triton's interpreter, which must not touch this worker."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True, text=True, timeout=600, check=True, env=env,
    )  # fmt: skip
    return result.stdout.splitlines()


def _script(script: str):
    """A benchmark script as a module (its imports only: its work is in ``main``)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{Path(script).stem}", BENCH / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_here(script: str, *args: str) -> list[str]:
    """``benchmarks/<script> args`` through the script's own ``main`` in this worker, its
    stdout returned: the same code path as the command line without a fresh interpreter
    spending seconds on importing the stack. The worker's torch threads and warning filters
    are restored after (the scripts set both)."""
    threads = torch.get_num_threads()
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            _script(script).main(list(args))
    finally:
        torch.set_num_threads(threads)
    return out.getvalue().splitlines()


@pytest.mark.slow
def test_scan_gpu_table_quick(tmp_path):
    out = tmp_path / "scan.json"
    lines = _run("scan_gpu.py", "--quick", "--json", str(out))
    header = next(line for line in lines if line.startswith("| family"))
    for column in ("triton fwd ms", "copy GB/s", "SDPA bf16 ms", "aaren step us"):
        assert column in header
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 4
    fields = {"gpu", "bh", "n", "fwd_ms", "fwdbwd_ms", "gbps", "copy_gbps", "sdpa_ms", "step_us"}
    assert all(fields <= set(r) for r in rows)
    assert all(isinstance(r["fwd_ms"], float) and r["fwd_ms"] > 0 for r in rows)
    assert any(line.startswith(("PASS:", "FAIL:")) for line in lines)


def test_throughput_quick(tmp_path):
    out = tmp_path / "tp.json"
    lines = _run_here("throughput.py", "--quick", "--json", str(out))
    assert any(line.startswith("| 64 |") for line in lines)
    rows = json.loads(out.read_text())["rows"]
    assert {r["backbone"] for r in rows} == {"aaren", "transformer"}
    assert all(r["tok_s"] > 0 for r in rows)


def test_scan_gpu_lookback_timer_checks_against_the_default_split():
    pytest.importorskip("triton")
    spec = importlib.util.spec_from_file_location("scan_gpu", BENCH / "scan_gpu.py")
    scan_gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scan_gpu)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    s = torch.randn(2, 600, device=device)
    v = torch.randn(2, 600, 16, device=device)
    assert scan_gpu.lookback_ms(s, v, device, quick=True) > 0


@pytest.mark.slow
@needs_dataset("forecasting", "national_illness")
def test_forecasting_quick_scores_both_modes_beside_the_baselines(tmp_path):
    """``benchmarks/forecasting.py --quick`` end to end on ILI (both modes, one seed): every
    cell's JSON fields, the estimator's own update + predict equal to the batched scoring,
    the baselines, the full-history-vs-window table and its verdicts. Accuracy belongs to
    the full run (``benchmarks/RESULTS.md``)."""
    out = tmp_path / "forecasting.json"
    lines = _run_here(
        "forecasting.py", "--quick", "--datasets", "national_illness", "--horizons", "24",
        "--backbones", "aaren", "--seeds", "0", "--threads", "1", "--json", str(out),
    )  # fmt: skip
    results = json.loads(out.read_text())["results"]
    cells = {r["mode"]: r for r in results if r["mode"] != "baseline"}
    assert set(cells) == {"window", "stream"}
    for cell in cells.values():
        for key in ("mse", "mae", "coverage80", "coverage95", "check", "update_ms", "val_mse"):
            assert np.isfinite(cell[key]), (key, cell)
        assert cell["check"] < 1e-4  # update + predict equals the one-pass scoring
    baselines = {r["backbone"]: r["mse"] for r in results if r["mode"] == "baseline"}
    assert set(baselines) == {"naive", "seasonal naive", "mean"}
    assert any(line.startswith("| national_illness | 24 | ") and "±" not in line for line in lines)
    assert any(line.startswith(("PASS full history", "FAIL full history")) for line in lines)


@pytest.mark.parametrize(
    ("script", "option"),
    [
        ("forecasting.py", "--json"),
        ("classification.py", "--json"),
        ("tpp.py", "--json"),
        ("long_stream.py", "--json"),
        ("throughput.py", "--json"),
        ("scan.py", "--json"),
        ("neuralforecast_peers.py", "--out"),
        ("streaming.py", "--json"),
        ("short_sequences.py", "--json"),
        ("streaming_peers.py", "--json"),
        ("first_hour.py", "--json"),
        ("threads.py", "--json"),
    ],
)
def test_output_paths_are_checked_before_any_work(tmp_path, script, option, monkeypatch):
    """A run of hours must not end by failing to write its result: a JSON path in a
    missing folder is refused at once (exit 2, named) by the script's own ``main``, run
    in this process (a fresh interpreter per script would spend seconds importing the stack
    for an argument check); the option's other refusals are checked below."""
    module = _script(script)
    bad = tmp_path / "missing" / "out.json"
    monkeypatch.setattr(sys, "argv", [script, option, str(bad)])
    with pytest.raises(SystemExit) as stop, contextlib.redirect_stderr(io.StringIO()) as err:
        module.main()
    assert stop.value.code == 2, err.getvalue()[-2000:]
    assert "does not exist" in err.getvalue() and f"argument {option}" in err.getvalue()


@pytest.mark.parametrize(
    ("name", "message"), [("missing/out.json", "does not exist"), ("out.csv", "must end in .json")]
)
def test_json_option_refuses_a_missing_folder_and_another_extension(tmp_path, name, message):
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=json_option("--json"))
    assert parser.parse_args(["--json", str(tmp_path / "out.json")]).json == tmp_path / "out.json"
    with pytest.raises(SystemExit) as stop, contextlib.redirect_stderr(io.StringIO()) as err:
        parser.parse_args(["--json", str(tmp_path / name)])
    assert stop.value.code == 2
    assert message in err.getvalue() and "argument --json" in err.getvalue()


def test_streaming_quick(tmp_path):
    """``benchmarks/streaming.py`` end to end on small panels (its timings are not checked
    here: speed belongs to the benchmark, run on a quiet machine)."""
    out = tmp_path / "streaming.json"
    stdout = "\n".join(_run_here("streaming.py", "--quick", "--json", str(out)))
    saved = json.loads(out.read_text())
    assert [row["series"] for row in saved["panel"]] == [10, 50]
    assert all(np.isfinite(row["tick_ms"]) and row["tick_ms"] > 0 for row in saved["panel"])
    assert saved["single"]["update_ms"] > 0 and "| series |" in stdout


def test_short_sequences_quick(tmp_path):
    """``benchmarks/short_sequences.py`` end to end on a tiny grid: both scan forms and both
    blocks are timed, and the table names the form "auto" picks."""
    out = tmp_path / "short.json"
    stdout = "\n".join(_run_here("short_sequences.py", "--quick", "--json", str(out)))
    saved = json.loads(out.read_text())
    grid = [(r["rows"], r["n"], r["auto"]) for r in saved["scan"]]
    assert grid == [(8, 4, "short"), (8, 12, "short")]  # training: the hand-written backward
    for form in ("dense", "short", "chunked"):
        assert all(r[f"{form}_fwdbwd_ms"] > 0 for r in saved["scan"])
    assert [b["n"] for b in saved["blocks"]] == [12] and saved["blocks"][0]["ratio"] > 0
    assert "| rows | N | auto (training) |" in stdout and "Aaren / Transformer" in stdout
    share = saved["share"]
    assert (share["rows"], share["n"], share["d_model"], share["heads"]) == (8, 12, 16, 4)
    for name in ("aaren", "transformer"):  # timings: measured (positive), never ordered here
        assert share[f"{name}_attention_ms"] > 0 and share[f"{name}_block_ms"] > 0
    # a timed order (the sublayer under its block) fails on a busy machine: the tiny quick
    # shape's two timings are within noise of each other; the ratios are checked as computed
    assert share["transformer_share"] == pytest.approx(
        share["transformer_attention_ms"] / share["transformer_block_ms"]
    )
    assert share["block_ratio_at_half"] == pytest.approx(1 - share["transformer_share"] / 2)
    assert "| block | whole block ms | attention sublayer ms | attention share |" in stdout
    step = saved["window_step"]
    assert (step["d_model"], step["heads"]) == (16, 4)
    assert all(step[f"{name}_ms"] > 0 for name in ("aaren", "transformer", "shared"))
    assert step["step_ratio"] == pytest.approx(step["aaren_ms"] / step["transformer_ms"])
    assert step["backbone_ratio"] == pytest.approx(
        (step["aaren_ms"] - step["shared_ms"]) / (step["transformer_ms"] - step["shared_ms"])
    )
    assert "| none (the shared part) |" in stdout


@pytest.mark.slow
@needs_dataset("forecasting", "ETTh1")
def test_streaming_peers_quick(tmp_path):
    """``benchmarks/streaming_peers.py`` on a short ETTh1 stream: Aaren and the baselines
    scored on the same forecasts, and the saved files merge into one table."""
    out = tmp_path / "peers.json"
    models = ["aaren", "seasonal_naive", "naive", "mean"]
    _run_here("streaming_peers.py", "--quick", "--models", *models, "--json", str(out))
    saved = json.loads(out.read_text())
    rows = {row["model"]: row for row in saved["rows"]}
    assert set(rows) == {"aaren", "seasonal_naive", "naive", "mean"}
    assert all(row["n"] == 60 - 24 and np.isfinite(row["mse"]) for row in rows.values())
    assert rows["aaren"]["tick_ms_median"] > 0 and rows["aaren"]["fit_s"] > 0
    assert rows["naive"]["mse"] != rows["seasonal_naive"]["mse"]
    assert "| aaren | 1 |" in "\n".join(_run_here("streaming_peers.py", "--report", str(out)))


def _refuse_test_splits(monkeypatch) -> None:
    """Make ``load_uea`` fail on any split but the training one."""
    from aaren_ts import datasets

    real = datasets.load_uea

    def train_only(name, split="train", **kwargs):
        assert split == "train", "the test split was read"
        return real(name, split, **kwargs)

    monkeypatch.setattr(datasets, "load_uea", train_only)


@needs_dataset("uea", "BasicMotions", "train")
def test_classification_defaults_quick_reads_only_the_train_split(tmp_path, monkeypatch):
    out = tmp_path / "cv.json"
    args = ["--quick", "--datasets", "BasicMotions", "--candidates", "defaults", "recency"]
    lines = _run_here("classification_defaults.py", *args, "--folds", "2", "--json", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [(r["candidate"], r["fold"]) for r in rows] == [
        ("defaults", 0), ("defaults", 1), ("recency", 0), ("recency", 1),
    ]  # fmt: skip
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    assert lines[-4].startswith("| candidate | BasicMotions | mean |")
    # the folds cover the train split only: a loader that refuses the test split still runs
    classification_defaults = _script("classification_defaults.py")
    _refuse_test_splits(monkeypatch)
    classification_defaults.main(["--quick", "--datasets", "BasicMotions", "--folds", "2",
                                  "--candidates", "defaults"])  # fmt: skip


@needs_dataset("uea", "BasicMotions", "train")
def test_classification_seed_average_is_the_ensemble_option_on_the_same_folds(monkeypatch):
    """The script's average of seeds 0 and 1 is, fold by fold, what ``n_networks=2`` with
    ``random_state=0`` predicts; only the train split is read."""
    from sklearn.model_selection import StratifiedKFold

    from aaren_ts.estimators import AarenClassifier

    script = _script("classification_seed_average.py")
    _refuse_test_splits(monkeypatch)
    X, y = script.load_split("BasicMotions", "train")
    rows = [
        {"dataset": "BasicMotions", "backbone": "aaren", "seed": seed, **row}
        for seed in (0, 1)
        for row in script.held_out_probabilities(X, y, "aaren", seed, 2, 0, quick=True)
    ]
    summary = script.summarise(rows)
    assert set(summary["per_seed"]) == {0, 1} and len(summary["averaged"]) == 2
    folds = StratifiedKFold(n_splits=2, shuffle=True, random_state=0).split(np.zeros(len(y)), y)
    for fold, (fit_rows, held_rows) in enumerate(folds):
        clf = AarenClassifier(n_networks=2, random_state=0, device="cpu", max_epochs=2, d_model=8)
        clf.fit(script.series_rows(X, fit_rows), y[fit_rows])
        proba = clf.predict_proba(script.series_rows(X, held_rows))
        averaged = np.mean([r["proba"] for r in rows if r["fold"] == fold], axis=0)
        np.testing.assert_allclose(proba, averaged, atol=1e-6)
        accuracy = (clf.classes_[proba.argmax(1)] == y[held_rows]).mean()
        assert summary["averaged"][fold] == pytest.approx(accuracy)
    assert "| BasicMotions | aaren |" in script.report(rows)


def test_classification_defaults_baseline_alone_is_written(tmp_path):
    """``--candidates`` with no names and ``--baseline``: the constant baseline's folds, and
    nothing fitted, still reach the JSON file."""
    out = tmp_path / "baseline.json"
    args = ["--datasets", "BasicMotions", "--folds", "2", "--candidates", "--baseline"]
    _run_here("classification_defaults.py", *args, "--json", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [(r["candidate"], r["fold"]) for r in rows] == [
        ("majority (baseline)", 0), ("majority (baseline)", 1),
    ]  # fmt: skip
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)


def test_classification_reads_the_sets_sktime_ships_offline(tmp_path, monkeypatch):
    """``--sktime-shipped`` finds sktime's classification sets (not its regression ones) and
    reads them from sktime's package folder: no download, equal to sktime's own loader;
    ragged sets stay ragged."""
    from sktime.datasets import load_unit_test

    from aaren_ts.datasets import uea

    classification = _script("classification.py")
    names = classification.sktime_shipped_datasets()
    assert {"ArrowHead", "GunPoint", "ItalyPowerDemand", "UnitTest", "PLAID"} <= set(names)
    assert not {"Tecator", "Covid3Month"} & set(names)  # regression sets: @targetLabel

    def refuse(*args, **kwargs):
        raise AssertionError("a shipped set was downloaded")

    monkeypatch.setattr(uea, "fetch", refuse)
    monkeypatch.setenv("AAREN_TS_DATA", str(tmp_path))  # nothing local
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))
    X, y = classification.load_split("UnitTest", "test")
    X_ref, y_ref = load_unit_test(split="test", return_type="numpy3D")
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)
    plaid, _ = classification.load_split("PLAID", "train")
    assert plaid.index.nlevels == 2 and plaid.groupby(level=0).size().nunique() > 1
    out = tmp_path / "shipped.json"
    args = ["--quick", "--datasets", "UnitTest", "--backbones", "aaren", "--no-minirocket"]
    _run_here("classification.py", *args, "--readout", "mean", "--positional", "--json", str(out))
    record = json.loads(out.read_text())
    assert record["params"]["readout"] == "mean"
    assert [(c["dataset"], c["model"]) for c in record["cells"]] == [
        ("UnitTest", "majority"), ("UnitTest", "aaren+positional"),
    ]  # fmt: skip


def run_quick(script: str, tmp_path) -> tuple[subprocess.CompletedProcess, dict]:
    """``benchmarks/<script> --quick --json``: the finished process and its JSON record."""
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done, json.loads(out.read_text())


def test_first_hour_quick_times_idle_and_loaded_runs(tmp_path):
    done, record = run_quick("first_hour.py", tmp_path)
    runs = record["results"]["quick"]["runs"]
    assert [len(runs["idle"]), len(runs["loaded"])] == [1, 1]
    assert all(r["exit"] == 0 and r["seconds"] > 0 for c in runs.values() for r in c)
    # the CPU seconds the run's processes used
    assert all(r["cpu_s"] > 0 for c in runs.values() for r in c)
    assert ", CPU " in done.stdout
    assert "loaded/idle" in done.stdout and record["command"].startswith("python benchmarks/")


def test_first_hour_measures_only_the_conditions_asked_for(tmp_path):
    # idle only, in this worker: a rerun of one condition where the host's speed moved
    out = tmp_path / "idle.json"
    lines = _run_here("first_hour.py", "--quick", "--conditions", "idle", "--json", str(out))
    result = json.loads(out.read_text())["results"]["quick"]
    assert list(result["runs"]) == ["idle"] and len(result["runs"]["idle"]) == 1
    assert result["median_idle"] > 0 and "median_loaded" not in result
    assert result["ratio"] is None
    assert not any("loaded  run" in line for line in lines)
    assert lines[-2].split()[-2:] == ["-", "-"]  # no loaded runs, no ratio


def test_the_loaded_condition_spins_a_bare_interpreter_until_stopped():
    pytest.importorskip("resource", reason="CPU seconds need Unix's getrusage")
    first_hour = _script("first_hour.py")
    before = first_hour._children_cpu()  # the script's own count of reaped children's CPU
    busy = first_hour.start_busy()
    try:
        time.sleep(0.5)
        assert busy.poll() is None  # still spinning
        assert busy.args[1:3] == ["-S", "-c"]  # no script, no site: no imports before the loop
    finally:
        first_hour.stop_busy(busy)
    assert busy.returncode is not None  # stopped and reaped
    assert first_hour._children_cpu() - before > 0.05


def test_threads_quick_times_one_thread_and_torchs_setting(tmp_path):
    _, record = run_quick("threads.py", tmp_path)
    rows = record["results"]
    assert [r["condition"] for r in rows] == ["idle", "loaded"]
    for r in rows:
        assert r["one_thread_s"] > 0 and r["torch_default_s"] > 0
        assert r["ratio"] == pytest.approx(r["torch_default_s"] / r["one_thread_s"], abs=0.01)


def test_airline_defaults_quick_prints_both_targets_beside_the_baselines():
    rows = [line for line in _run_here("airline_defaults.py", "--quick") if line.startswith("| 19")]
    assert len(rows) == 2 and all(row.count(" +- ") == 2 for row in rows)


def test_rl_act_compare_quick_times_two_versions_in_one_process(tmp_path):
    """This checkout against itself: two packages in one process (the copy imported under
    its own name, then dropped), every model timed in both, and the same actions from the
    same fitted weights."""
    out = tmp_path / "compare.json"
    stdout = _run_here(
        "rl_act_compare.py", "--before", str(BENCH.parent), "--quick", "--json", str(out)
    )
    record = json.loads(out.read_text())
    assert record["spans"] == [[1, 10]]
    assert set(record["models"]) == {
        "Aaren",
        "Transformer (K=20)",
        "GRU",
        "Transformer (full cache)",
    }
    for row in record["models"].values():
        assert (
            len(row["before"]) == len(row["after"]) == 1 and min(row["before"] + row["after"]) > 0
        )
        assert row["max_action_difference"] == 0.0
    assert not any(name.startswith("aaren_ts_before") for name in sys.modules)
    assert any(line.startswith("| Aaren | ") for line in stdout)


def test_rl_quick_reports_returns_beside_the_baselines_and_cost_per_step(tmp_path):
    pytest.importorskip("gymnasium", reason="the 'rl' extra (gymnasium[mujoco]) is not installed")
    pytest.importorskip("stable_baselines3", reason="the 'rl' extra is not installed")
    out = tmp_path / "rl.json"
    stdout = "\n".join(_run_here("rl.py", "--quick", "--json", str(out)))
    record = json.loads(out.read_text())
    row = record["returns"]["hopper-medium"]
    assert set(row["models"]) == {"Aaren", "Transformer (K=20)", "GRU"}
    assert all(len(m["per_seed"]) == 1 for m in row["models"].values())
    assert {"behaviour", "random", "target_return"} <= set(row)
    latency = record["latency"]
    # the bytes a stream holds: constant for Aaren and the GRU, growing for a full KV cache
    assert latency["Aaren"]["1"]["bytes"] == latency["Aaren"]["10"]["bytes"]
    grows = latency["Transformer (full cache)"]
    assert grows["10"]["bytes"] > grows["1"]["bytes"]
    assert "| hopper-medium |" in stdout
