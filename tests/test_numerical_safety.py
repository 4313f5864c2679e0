"""Extreme but valid inputs give finite, sensible outputs: values up to 1e12 in magnitude,
constant series and channels (zero standard deviation), huge level shifts, and event times
1e9 seconds or 1e-6 seconds apart."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from aaren_ts.estimators import (
    AarenClassifier,
    AarenForecaster,
    AarenPointProcess,
    AarenRegressor,
)

TINY = {"d_model": 8, "n_layers": 1, "n_heads": 2, "random_state": 0}


def _wave(n: int = 60) -> np.ndarray:
    return np.sin(np.arange(n) / 4.0)


def _forecast(y: pd.Series, **params) -> AarenForecaster:
    forecaster = AarenForecaster(max_horizon=3, **{"max_epochs": 2, **TINY, **params})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # overflow / invalid in numpy
        return forecaster.fit(y)


SERIES = {
    "scale-1e12": 1e12 * _wave(),
    "level-1e12": 1e12 + _wave(),  # a tiny signal on a huge level
    "negative-1e12": -1e12 - 1e11 * _wave(),
    "level-shift-1e9": np.r_[_wave(30), 1e9 + _wave(30)],
    "spike-1e12": np.r_[_wave(30), 1e12, _wave(29)],
}


@pytest.mark.parametrize("name", list(SERIES))
def test_forecaster_is_finite_and_in_range_on_extreme_values(name):
    values = SERIES[name]
    y = pd.Series(values, index=pd.RangeIndex(len(values)))
    forecaster = _forecast(y)
    for out in (forecaster.predict(fh=[1, 2, 3]), forecaster.predict_interval(coverage=0.9)):
        assert np.isfinite(out.to_numpy()).all(), name
    # forecasts stay on the data's scale: inside the range widened by its width
    low, high = values.min(), values.max()
    width = max(high - low, abs(high) * 1e-6)
    pred = forecaster.predict(fh=[1, 2, 3]).to_numpy()
    assert (pred > low - width).all() and (pred < high + width).all(), (name, pred)
    # streaming more extreme rows keeps it finite
    nxt = pd.Series(values[-3:][::-1].copy(), index=pd.RangeIndex(len(values), len(values) + 3))
    forecaster.update(nxt, update_params=True)
    assert np.isfinite(forecaster.predict(fh=[1, 2, 3]).to_numpy()).all()


@pytest.mark.parametrize("level", [0.0, 7.5, -3e11, 1e12])
def test_forecaster_on_a_constant_series_forecasts_the_constant(level):
    y = pd.Series(np.full(80, level), index=pd.RangeIndex(80))
    forecaster = _forecast(y)
    pred = forecaster.predict(fh=[1, 2, 3]).to_numpy()
    np.testing.assert_allclose(pred, level, rtol=1e-12, atol=1e-9)
    lower_upper = forecaster.predict_interval(coverage=0.9).to_numpy()
    np.testing.assert_allclose(lower_upper, level, rtol=1e-12, atol=1e-9)


def test_forecaster_constant_channel_next_to_a_moving_one():
    y = pd.DataFrame({"flat": np.full(60, 3.0), "wave": 1e12 * _wave()})
    pred = _forecast(y).predict(fh=[1, 2])
    assert np.isfinite(pred.to_numpy()).all()
    np.testing.assert_allclose(pred["flat"], 3.0, atol=1e-9)


def _panel(scale: float, constant_channel: bool) -> np.ndarray:
    X = np.random.default_rng(0).standard_normal((12, 2, 16)) * scale
    if constant_channel:
        X[:, 1] = 5.0
    return X


@pytest.mark.parametrize(
    ("scale", "constant"), [(1e12, False), (1e-12, False), (1.0, True), (1e12, True)]
)
def test_panel_estimators_are_finite_on_extreme_and_constant_channels(scale, constant):
    X = _panel(scale, constant)
    labels = np.array(["a", "b", "c"] * 4)
    targets = np.linspace(-1e12, 1e12, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        proba = AarenClassifier(max_epochs=2, **TINY).fit(X, labels).predict_proba(X)
        reg = AarenRegressor(max_epochs=2, **TINY).fit(X, targets)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    pred = reg.predict(X)
    assert np.isfinite(pred).all()
    assert (np.abs(pred) < 1e13).all()  # on the targets' scale


@pytest.mark.parametrize("level", [4e11, 1.0])
def test_regressor_on_a_constant_target_predicts_it(level):
    """Exactly, on every path: the untrained output (about +-1 after two epochs) was read in
    units of a stand-in deviation of 1, so a target of 1 came back as 1.6, 2.2, 1.1."""
    X = _panel(1.0, False)
    with pytest.warns(UserWarning, match="only single label"):  # sktime notes the constant
        reg = AarenRegressor(max_epochs=2, **TINY).fit(X, np.full(12, level))
    np.testing.assert_array_equal(reg.predict(X), level)
    np.testing.assert_array_equal(reg.predict_prefix(X), level)
    assert reg.start_stream(1).update(X[0, :, 0]).predict()[0] == level


def test_data_near_1e_300_is_standardised_like_data_near_1():
    """Values of about 1e-300 have a variance of 1e-600, which float64 rounds to 0: they
    read as constants, were scaled by 1 and became 0 in float32 (a regressor answered 0.6
    for targets near 1e-300). Measured on their own spread, the same data at 1e-300 gives
    the same model: every output is the unscaled one times 1e-300."""
    y = pd.Series(np.sin(np.arange(40) / 3.0) + 2.0, name="y")
    near_one = _forecast(y).predict(fh=[1, 2, 3]).to_numpy()
    tiny = _forecast(y * 1e-300).predict(fh=[1, 2, 3]).to_numpy()
    np.testing.assert_allclose(tiny / 1e-300, near_one, rtol=1e-9)
    X, targets = _panel(1.0, False), np.linspace(0.0, 1.0, 12)
    labels = np.array(["a", "b", "c"] * 4)
    for scale in (1.0, 1e-300):
        reg = AarenRegressor(max_epochs=2, **TINY).fit(X * scale, targets * scale)
        clf = AarenClassifier(max_epochs=2, **TINY).fit(X * scale, labels)
        if scale == 1.0:
            ref_reg, ref_proba = reg.predict(X), clf.predict_proba(X)
    np.testing.assert_allclose(reg.predict(X * 1e-300) / 1e-300, ref_reg, rtol=1e-9)
    np.testing.assert_allclose(clf.predict_proba(X * 1e-300), ref_proba, rtol=1e-9)


def _events(gap: float, n: int = 30, n_seq: int = 4):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n_seq):
        times = np.cumsum(gap * rng.exponential(1.0, n))
        out.append((times, rng.integers(0, 2, n), 0.0, float(times[-1] + gap)))
    return out


@pytest.mark.parametrize("gap", [1e9, 1e-6, 1.0])
def test_point_process_is_finite_for_huge_and_tiny_gaps(gap):
    events = _events(gap)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        tpp = AarenPointProcess(max_epochs=2, **TINY).fit(events)
    times, marks = tpp.predict(events)
    assert np.isfinite(times).all()
    last = np.array([e[0][-1] for e in events])
    assert (times >= last).all()  # the next event comes after the last one
    assert ((times - last) < 1e3 * gap).all()  # ... on the data's time scale
    assert set(marks.tolist()) <= {0, 1}
    assert np.isfinite(tpp.score_samples(events)).all()
    assert np.isfinite(tpp.score(events))
    stream = tpp.start_stream().update(events[0][0], events[0][1])
    assert np.isfinite(stream.log_likelihood(events[0][3]))
    assert np.isfinite(stream.predict()[0])
