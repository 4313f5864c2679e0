"""Panels whose series end at different times: each row holds the forecast for the time on
its label. sktime's convention (what its per-series broadcasting does): a relative fh counts
from each series' own last observation, so a series that stopped earlier is labelled at
earlier times; an absolute fh names times, and each series is read the number of steps that
time lies after its end. Steps outside the fitted horizon are a named error that leaves the
forecaster as it was.

The reference needs no model internals: a panel whose series end together is fitted once;
advancing one series with ``update(update_params=False)`` leaves the network and the other
series' state untouched, so the other series' forecast for a given time must not change."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest
from estimator_inputs import TINY
from sktime.forecasting.base import ForecastingHorizon

from aaren_ts.estimators import AarenForecaster

INDEXES = {
    "range": pd.RangeIndex(60),
    "daily": pd.date_range("2020", periods=60, freq="D"),
    "monthly_period": pd.period_range("2020", periods=60, freq="M"),
}


def _panel(kind: str, ends: dict[str, int], start: int = 0) -> pd.DataFrame:
    """Series "a" (a sine) and "b" (a cosine) on rows ``start .. end`` of one time grid."""
    grid = INDEXES[kind]
    parts = {}
    for name, end in ends.items():
        t = np.arange(start, end, dtype=np.float64)
        values = np.sin(t / 3) if name == "a" else np.cos(t / 4) + 2
        parts[name] = pd.DataFrame({"y": values}, index=grid[start:end])
    return pd.concat(parts)


@pytest.fixture(scope="module", params=list(INDEXES))
def aligned(request):
    """Fitted on a panel whose two series both end at row 28."""
    kind = request.param
    model = AarenForecaster(max_horizon=14, **TINY).fit(_panel(kind, {"a": 29, "b": 29}))
    return kind, model


def _ragged(kind, model):
    """``model`` with "a" advanced to row 39 ("b" still ends at row 28)."""
    return copy.deepcopy(model).update(_panel(kind, {"a": 40}, start=29), update_params=False)


def test_a_relative_horizon_counts_from_each_series_end(aligned):
    kind, model = aligned
    ragged = _ragged(kind, model)
    grid = INDEXES[kind]
    assert ragged.cutoff[0] == grid[39]  # the latest series sets the cutoff
    got = ragged.predict(fh=[1, 2])
    pd.testing.assert_frame_equal(got.loc["b"], model.predict(fh=[1, 2]).loc["b"])
    assert list(got.loc["b"].index) == list(grid[29:31])  # "b"'s own next two steps
    assert list(got.loc["a"].index) == list(grid[40:42])
    interval = ragged.predict_interval(fh=[1, 2], coverage=0.8)
    pd.testing.assert_frame_equal(
        interval.loc["b"], model.predict_interval(fh=[1, 2], coverage=0.8).loc["b"]
    )


def test_an_absolute_horizon_reads_each_series_at_the_named_times(aligned):
    kind, model = aligned
    ragged = _ragged(kind, model)
    grid = INDEXES[kind]
    times = ForecastingHorizon(grid[40:42], is_relative=False)
    got = ragged.predict(fh=times)
    # times 40, 41 are steps 12, 13 after "b"'s end and steps 1, 2 after "a"'s
    pd.testing.assert_frame_equal(got.loc["b"], model.predict(fh=[12, 13]).loc["b"])
    pd.testing.assert_frame_equal(got.loc["a"], ragged.predict(fh=[1, 2]).loc["a"])
    assert list(got.loc["b"].index) == list(grid[40:42])


def test_times_outside_a_series_horizon_are_a_named_error(aligned):
    kind, model = aligned
    ragged = _ragged(kind, model)
    grid = INDEXES[kind]
    before = pickle.dumps(ragged)
    beyond = ForecastingHorizon(grid[43:44], is_relative=False)  # 15 steps after "b"'s end
    with pytest.raises(ValueError, match=r"steps \[15\] of series 'b' .*must lie in 1\.\.14"):
        ragged.predict(fh=beyond)
    in_sample = ForecastingHorizon(grid[35:36], is_relative=False)  # before the cutoff
    with pytest.raises(NotImplementedError, match=r"in-sample"):  # sktime's own check
        ragged.predict(fh=in_sample)
    assert pickle.dumps(ragged) == before


def test_a_ragged_panel_at_fit_is_labelled_the_same_way():
    model = AarenForecaster(max_horizon=6, **TINY).fit(_panel("daily", {"a": 40, "b": 36}))
    grid = INDEXES["daily"]
    forecast = model.predict(fh=[1, 2])
    assert list(forecast.loc["a"].index) == list(grid[40:42])
    assert list(forecast.loc["b"].index) == list(grid[36:38])
    at_times = model.predict(fh=ForecastingHorizon(grid[40:42], is_relative=False))
    assert list(at_times.loc["b"].index) == list(grid[40:42])  # "b"'s steps 5 and 6
    with pytest.raises(ValueError, match=r"steps \[7\] of series 'b'"):
        model.predict(fh=ForecastingHorizon(grid[42:43], is_relative=False))
    # sktime's own broadcasting labels the same way
    from sktime.forecasting.naive import NaiveForecaster

    naive = NaiveForecaster().fit(_panel("daily", {"a": 40, "b": 36}), fh=[1, 2]).predict()
    assert naive.index.equals(forecast.index)
