"""Interval calibration on real held-out data (ETTh1's protocol test split).

The forecaster is fitted on the protocol's train + validation rows with the validation rows as
its calibration tail; the 80% and 95% intervals are then read through the public API
(``update`` one test block at a time, ``predict_interval``) and their empirical coverage of
the test split's observations must be within 5 points of nominal (issue 3).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import needs_dataset

from aaren_ts.datasets import load_forecasting, split_borders, standard_split
from aaren_ts.estimators import AarenForecaster


def coverage_on_test_split(calibrate: bool, **params) -> dict[float, float]:
    frame = load_forecasting("ETTh1")
    split = standard_split("ETTh1", frame, lookback=96)
    scaled = split.scale(frame).reset_index(drop=True)
    (_, train_end), (_, val_end), (_, test_end) = split_borders("ETTh1", len(frame), 96)
    horizon = 24
    f = AarenForecaster(
        max_horizon=horizon,
        validation_size=(val_end - train_end) / val_end,
        calibrate=calibrate,
        random_state=0,
        **params,
    ).fit(scaled.iloc[:val_end])
    inside = {0.8: [], 0.95: []}
    steps = list(range(1, horizon + 1))
    for cutoff in range(val_end, test_end - horizon, 60):  # 48 forecast origins, 2 months
        f.update(scaled.iloc[:cutoff], update_params=False)
        truth = scaled.iloc[cutoff : cutoff + horizon].to_numpy()
        intervals = f.predict_interval(fh=steps, coverage=list(inside))
        for c in inside:
            lower = intervals.xs((c, "lower"), axis=1, level=[1, 2]).to_numpy()
            upper = intervals.xs((c, "upper"), axis=1, level=[1, 2]).to_numpy()
            inside[c].append((lower <= truth) & (truth <= upper))
    return {c: float(np.mean(v)) for c, v in inside.items()}


@pytest.mark.slow
@needs_dataset("forecasting", "ETTh1")
@pytest.mark.parametrize(
    "params",
    [
        # 8 batches of windows in one epoch: each epoch ends by scoring all 20,160 validation
        # windows (2,880 origins x 7 channels), which costs more than the training itself
        {"context_length": 96, "windows_per_epoch": 2048, "max_steps": 8, "max_epochs": 1},
        {"context_length": None},
    ],
    ids=["windowed", "full-history"],
)
def test_intervals_hold_nominal_coverage_on_etth1_test_split(params):
    common = {"channel_independent": True, "d_model": 16, "max_epochs": 2, "batch_size": 256}
    coverage = coverage_on_test_split(calibrate=True, **{**common, **params})
    for nominal, empirical in coverage.items():
        assert abs(empirical - nominal) <= 0.05, coverage
