"""Interval calibration on synthetic data with a known distribution (no data files): an
AR(1) series with skewed innovations (so that a mirrored quantile is a different one), a
barely trained network (its raw quantiles are far from their levels), the last part of
the fit's history as the calibration tail, and fresh rows of the same process as the test.
After calibration each quantile's level must be what it covers of the fresh rows, and
closer to it than before calibration: a shift applied with the wrong sign, or to the wrong
level or step, moves the coverage away from nominal instead."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from aaren_ts.estimators import AarenForecaster

HORIZON = 6
LEVELS = [0.1, 0.9]


def _ar1(n: int, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    values = np.zeros(n)
    for t in range(1, n):
        values[t] = 0.5 * values[t - 1] + rng.exponential() - 1.0  # mean 0, skewed
    return pd.Series(values)


def _frequencies(calibrate: bool, params: dict) -> np.ndarray:
    """How often the fresh rows fall at or below each level's quantile, per step:
    ``(HORIZON, len(LEVELS))``."""
    y = _ar1(3000)
    fit_rows = 2000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = AarenForecaster(
            max_horizon=HORIZON,
            validation_size=0.4,
            calibrate=calibrate,
            d_model=8,
            n_layers=1,
            n_heads=2,
            random_state=0,
            **params,
        ).fit(y.iloc[:fit_rows])
        below = []
        steps = list(range(1, HORIZON + 1))
        for cutoff in range(fit_rows, len(y) - HORIZON, 5):
            f.update(y.iloc[:cutoff], update_params=False)
            quantiles = f.predict_quantiles(fh=steps, alpha=LEVELS).to_numpy()  # (H, levels)
            truth = y.iloc[cutoff : cutoff + HORIZON].to_numpy()
            below.append(truth[:, None] <= quantiles)
    return np.mean(below, axis=0)


@pytest.mark.parametrize(
    "params",
    [
        {"context_length": 24, "max_epochs": 1, "max_steps": 3},
        # the fit-time shifts alone: online tracking off
        {"context_length": None, "max_epochs": 1, "max_steps": 3, "calibration_rate": 0.0},
    ],
    ids=["windowed", "full-history"],
)
def test_calibrated_quantiles_cover_their_levels_on_fresh_data(params):
    raw = _frequencies(False, params)
    calibrated = _frequencies(True, params)
    error = np.abs(calibrated - np.array(LEVELS))
    # measured: max 0.05, mean 0.023 in both modes; with the shifts' sign flipped (one line
    # of _quantile_frame, shared by both modes) the windowed case gives max 0.14, mean 0.07
    assert error.max() <= 0.1 and error.mean() <= 0.04, calibrated
    assert error.mean() < np.abs(raw - np.array(LEVELS)).mean(), (raw, calibrated)
