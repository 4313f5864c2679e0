"""``AarenForecaster.update`` skips sktime's input checks for a plain single series or a
plain panel of the fitted kind, and ``predict`` skips them when asked for the stored horizon
again: the result must be exactly what sktime's own ``BaseForecaster.update`` and
``BaseForecaster.predict`` paths give (cutoff, its type and frequency, forecasts, their
type, index, frequency and name, and the stored horizon)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sktime.datasets import load_airline
from sktime.forecasting.base import BaseForecaster, ForecastingHorizon

from aaren_ts.estimators import AarenForecaster

N = 120
WAVE = np.sin(np.arange(N) / 4.0)
CASES = {
    "range-unnamed": pd.Series(WAVE),
    "range-frame": pd.DataFrame({"a": WAVE, "b": np.cos(np.arange(N) / 5.0)}),
    "period-named": load_airline(),
    "datetime-freq": pd.Series(WAVE, index=pd.date_range("2020", periods=N, freq="h"), name="v"),
    "int-index": pd.Series(WAVE, index=pd.Index(np.arange(N) + 1000)),
    "range-named": pd.Series(WAVE, name="y"),
    "datetime-tz": pd.Series(
        WAVE, index=pd.date_range("2021-03-20", periods=N, freq="h", tz="Europe/Berlin")
    ),
    "month-end": pd.Series(WAVE, index=pd.date_range("2000-01-31", periods=N, freq="ME")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_plain_update_equals_sktimes_checked_path(name):
    y = CASES[name]
    start = len(y) - 12
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = AarenForecaster(max_horizon=3, max_epochs=1, d_model=8, random_state=0)
        fast.fit(y.iloc[:start])
        checked = fast.clone().fit(y.iloc[:start])
        used = 0
        for i in range(start, len(y)):
            rows = y.iloc[i : i + 1] if i % 3 else y.iloc[: i + 1]  # new row, or all so far
            used += fast._plain_rows(rows, None) is not None
            fast.update(rows, update_params=i % 4 == 0)
            BaseForecaster.update(checked, rows, update_params=i % 4 == 0)
    assert used == 12  # every call took the plain path
    assert type(fast.cutoff) is type(checked.cutoff) and fast.cutoff.equals(checked.cutoff)
    assert getattr(fast.cutoff, "freq", None) == getattr(checked.cutoff, "freq", None)
    a, b = fast.predict(fh=[1, 2, 3]), checked.predict(fh=[1, 2, 3])
    assert type(a) is type(b)
    pd.testing.assert_index_equal(a.index, b.index)
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


def test_anything_else_goes_through_sktimes_checks():
    y = CASES["period-named"]
    f = AarenForecaster(max_horizon=3, max_epochs=1, d_model=8, random_state=0)
    f.fit(y.iloc[:-12])
    renamed = y.iloc[-12:].rename("other")
    assert f._plain_rows(renamed, None) is None
    assert f._plain_rows(y.iloc[-12:].astype(object), None) is None
    assert f._plain_rows(y.iloc[-12:].to_timestamp(), None) is None  # other index type
    assert f._plain_rows(y.iloc[-12:], y.iloc[-12:].to_frame()) is None  # X given
    with pytest.raises(ValueError, match="columns"):
        f.update(renamed)


def _panel(index: pd.Index, keys=("a", "b", "c"), levels: int = 2) -> pd.DataFrame:
    parts = {}
    for i, key in enumerate(keys):
        values = np.sin(np.arange(len(index)) / (3.0 + i)) + i
        parts[key if levels == 2 else ("top", key)] = pd.DataFrame({"y": values}, index=index)
    return pd.concat(parts)


PANELS = {
    "range": _panel(pd.RangeIndex(60)),
    "daily": _panel(pd.date_range("2021", periods=60, freq="D")),
    "monthly-period": _panel(pd.period_range("2001-01", periods=60, freq="M")),
    "three-levels": _panel(pd.RangeIndex(60), levels=3),
}


def _rows(y: pd.DataFrame, start: int, stop: int, keys=None) -> pd.DataFrame:
    time = y.index.get_level_values(-1)
    grid = time.unique()
    keep = time.isin(grid[start:stop])
    if keys is not None:
        keep &= y.index.get_level_values(-2).isin(keys)
    return y[keep]


@pytest.mark.parametrize("name", list(PANELS))
def test_plain_panel_update_equals_sktimes_checked_path(name):
    y = PANELS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = AarenForecaster(max_horizon=3, max_epochs=1, d_model=8, random_state=0)
        fast.fit(_rows(y, 0, 48))
        checked = fast.clone().fit(_rows(y, 0, 48))
        ticks = [
            _rows(y, 48, 49),  # one row per series
            _rows(y, 49, 52),  # three
            _rows(y, 0, 53),  # everything so far (sktime's habit)
            _rows(y, 53, 55, keys=["a"]),  # only one series: the panel becomes ragged
            _rows(y, 53, 54, keys=["b", "c"]),  # the others, not yet up to "a"
        ]
        used = 0
        for i, rows in enumerate(ticks):
            used += fast._plain_rows(rows, None) is not None
            fast.update(rows, update_params=i == 1)
            BaseForecaster.update(checked, rows, update_params=i == 1)
            assert type(fast.cutoff) is type(checked.cutoff), i
            assert fast.cutoff.equals(checked.cutoff), (i, fast.cutoff, checked.cutoff)
            assert getattr(fast.cutoff, "freq", None) == getattr(checked.cutoff, "freq", None)
            a, b = fast.predict(fh=[1, 2, 3]), checked.predict(fh=[1, 2, 3])
            pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert used == len(ticks)  # every call took the plain path


def _assert_same_forecast(a, b, where):
    assert type(a) is type(b), where
    if isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=True, check_freq=True, obj=str(where))
        assert a.name == b.name, where
    else:
        pd.testing.assert_frame_equal(a, b, check_exact=True, check_freq=True, obj=str(where))
    assert getattr(a.index, "freq", None) == getattr(b.index, "freq", None), where


def _horizons() -> list:
    """predict's fh through a stream of ticks: new horizons go through sktime once (and are
    stored), then the same steps in any spelling take the plain path. (Built per test:
    sktime stores a frequency on a ForecastingHorizon it reads.)"""
    return [
        [1, 2, 3],
        None,
        np.arange(1, 4),
        range(1, 4),
        [2, 3],
        ForecastingHorizon([2, 3], is_relative=True),
        [2, 3],
        None,
    ]


HORIZONS = _horizons()


def _predict_ticks(fast, checked, y_ticks):
    used = 0
    for i, (rows, fh) in enumerate(zip(y_ticks, _horizons(), strict=True)):
        fast.update(rows, update_params=False)
        BaseForecaster.update(checked, rows, update_params=False)
        used += fast._plain_horizon(fh, None) is not None
        a = fast.predict(fh=fh)
        b = BaseForecaster.predict(checked, fh=fh)
        _assert_same_forecast(a, b, i)
        assert fast._fh.is_relative and np.array_equal(fast._fh, checked._fh), i
    return used


@pytest.mark.parametrize("name", list(CASES))
def test_plain_predict_equals_sktimes_checked_path(name):
    y = CASES[name]
    start = len(y) - len(HORIZONS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = AarenForecaster(max_horizon=3, max_epochs=1, d_model=8, random_state=0)
        fast.fit(y.iloc[:start], fh=[1, 2, 3])
        checked = fast.clone().fit(y.iloc[:start], fh=[1, 2, 3])
        ticks = [y.iloc[i : i + 1] for i in range(start, len(y))]
        used = _predict_ticks(fast, checked, ticks)
        # quantiles and intervals read the same stored forecasts through sktime's path
        _assert_same_forecast(
            fast.predict_interval(coverage=0.8), checked.predict_interval(coverage=0.8), "pi"
        )
    # all but the new horizon [2, 3] (its first spelling, and the ForecastingHorizon that
    # is not the stored object)
    assert used == len(HORIZONS) - 2


@pytest.mark.parametrize("name", list(PANELS))
def test_plain_panel_predict_equals_sktimes_checked_path(name):
    y = PANELS[name]
    start = 60 - len(HORIZONS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = AarenForecaster(max_horizon=3, max_epochs=1, d_model=8, random_state=0)
        fast.fit(_rows(y, 0, start), fh=[1, 2, 3])
        checked = fast.clone().fit(_rows(y, 0, start), fh=[1, 2, 3])
        ticks = [_rows(y, i, i + 1) for i in range(start, 60)]
        used = _predict_ticks(fast, checked, ticks)
    assert used == len(HORIZONS) - 2


def test_predict_outside_the_plain_case_keeps_sktimes_errors():
    y = CASES["period-named"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = AarenForecaster(max_horizon=3, max_epochs=1, d_model=8, random_state=0)
        f.fit(y.iloc[:-12], fh=[1, 2])
        assert f._plain_horizon([0, 1], None) is None  # another horizon: sktime checks it
        with pytest.raises(NotImplementedError, match="in-sample"):
            f.predict(fh=[0, 1])
        # the failed call stored nothing (atomic): the fitted horizon is still the plain one
        assert list(f._plain_horizon(None, None)) == [1, 2]
        with pytest.raises(ValueError, match=r"must lie in 1\.\.3"):
            f.predict(fh=[1, 2, 5])
        assert f._plain_horizon([1.0, 2.0], None) is None  # floats: sktime's coercion
        assert f._plain_horizon(None, y.iloc[:3].to_frame()) is None  # X given
