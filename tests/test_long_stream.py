"""A long stream of single-observation updates (10^4 here; ``benchmarks/long_stream.py`` runs
the long version and measures speed): the forecaster's state keeps its size, resident
memory does not grow with the number of updates, and the final forecast equals one pass
over the whole history with the same weights."""

from __future__ import annotations

import gc
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch

from aaren_ts.estimators import AarenForecaster

N_FIT, STEPS, HORIZON = 200, 10_000, 3
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _history(n: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    noise = np.random.default_rng(0).standard_normal(n)
    return np.sin(2 * np.pi * t / 24) + 0.5 * np.sin(2 * np.pi * t / 168) + 0.1 * noise


def _tensors(obj) -> list[torch.Tensor]:
    """Every tensor in a (nested) tuple / list / dict, e.g. the per-layer scan states."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _tensors(item)]
    return []


def _state_size(forecaster: AarenForecaster) -> int:
    """Elements in every tensor the forecaster keeps for its streams."""
    return sum(t.numel() for t in _tensors(forecaster.streams_))


@pytest.mark.slow
def test_ten_thousand_single_row_updates_keep_state_memory_and_exactness():
    history = _history(N_FIT + STEPS)
    forecaster = AarenForecaster(
        d_model=8, n_layers=2, n_heads=2, max_epochs=1, max_horizon=HORIZON, random_state=0,
        device="cpu",
    )  # fmt: skip
    forecaster.fit(pd.Series(history[:N_FIT], index=pd.RangeIndex(N_FIT), name="y"))
    process = psutil.Process(os.getpid())
    sizes, rss = {}, {}
    for i in range(STEPS):
        t = N_FIT + i
        row = pd.Series(history[t : t + 1], index=pd.RangeIndex(t, t + 1), name="y")
        forecaster.update(row, update_params=False)
        if (i + 1) in (1_000, 5_500, STEPS):
            gc.collect()
            sizes[i + 1], rss[i + 1] = _state_size(forecaster), process.memory_info().rss
    # the state is the same size after 10^3 and 10^4 updates: O(1) memory per series
    assert sizes[1_000] == sizes[5_500] == sizes[STEPS]
    # and the process does not grow with the step count (allocator noise aside)
    growth_mb = (rss[STEPS] - rss[1_000]) / 1e6
    assert growth_mb < 5, f"RSS grew {growth_mb:.1f} MB over 9000 updates"
    assert forecaster.cutoff[0] == N_FIT + STEPS - 1

    # one pass over the whole history from an empty state, with the same network
    whole = pd.DataFrame({"y": history}, index=pd.RangeIndex(len(history)))
    scaled = forecaster._scaled(whole, forecaster.scaling_[None])
    one_pass = forecaster._encode(scaled, None, None, whole.index[-1])
    streamed = forecaster.streams_[None]
    np.testing.assert_allclose(streamed["forecast"], one_pass["forecast"], atol=1e-4, rtol=0)
    fh = list(range(1, HORIZON + 1))
    y_streamed = forecaster.predict(fh=fh).to_numpy()
    forecaster.streams_ = {None: one_pass}
    y_one_pass = forecaster.predict(fh=fh).to_numpy()
    np.testing.assert_allclose(y_streamed, y_one_pass, atol=1e-4, rtol=0)
    assert np.isfinite(y_streamed).all()


def test_the_benchmark_script_runs_and_reports(tmp_path):
    """``benchmarks/long_stream.py`` end to end on a short stream (its figures are not
    checked here: speed belongs to the benchmark, run on a quiet machine)."""
    spec = importlib.util.spec_from_file_location("long_stream", BENCH / "long_stream.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "long_stream.json"
    row = module.main(["--steps", "300", "--d-model", "8", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["steps"] == 300 and saved["command"].startswith("python benchmarks/long_stream.py")
    for key in ("update_ms_mean", "time_ratio_last_first", "rss_growth_mb"):
        assert np.isfinite(saved[key])
    assert row["forecast_max_abs_diff"] <= 1e-4
    assert len(saved["forecast_streamed"]) == len(saved["forecast_one_pass"]) == 3
