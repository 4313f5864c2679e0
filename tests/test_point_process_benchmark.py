"""benchmarks/tpp.py runs end to end on tiny data (its numbers are not checked here) and its
report reads what it wrote."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import needs_dataset
from warm_interpreter import run_python

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "tpp.py"


@pytest.mark.slow
@needs_dataset("events", "taxi")
def test_tpp_benchmark_quick(tmp_path):
    out = tmp_path / "tpp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(SCRIPT), "--quick", "--datasets", "taxi", "make_hawkes"]
    result = run_python([*cmd, "--backbones", "aaren", "gru", "--json", str(out)], env=env,
                        timeout=600, check=True)  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    models = {(r["dataset"], r["model"]) for r in rows}
    baselines = {"previous-mark", "constant-gap"}  # on every data set
    assert models == {
        ("taxi", "hawkes"), ("taxi", "aaren"), ("taxi", "gru"),
        ("make_hawkes", "hawkes"), ("make_hawkes", "true"), ("make_hawkes", "aaren"),
        ("make_hawkes", "gru"),
        *((name, b) for name in ("taxi", "make_hawkes") for b in baselines),
    }  # fmt: skip
    for r in rows:
        if r["model"] not in baselines:
            assert {"ll_window", "ll_easytpp", "rmse", "accuracy"} <= set(r)
        if r["model"] in ("aaren", "gru", "constant-gap"):  # the median's MAE
            assert r["mae_median"] > 0
        if r["model"] == "constant-gap":
            assert r["rmse"] > 0 and "accuracy" not in r
    assert "| taxi | aaren | 1 |" in result.stdout
    report = run_python([str(SCRIPT), "--report", str(out)], env=env, timeout=60, check=True)
    assert report.stdout.splitlines()[0].startswith("| data set | model |")
