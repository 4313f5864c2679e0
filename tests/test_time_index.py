"""Time indexes: the forecaster reads one observation per step, so a series must sit on a
regular grid, and ``update`` must continue it. Each way of breaking that is a named error
raised before any state changes (the pickled bytes are compared), never a raw ``TypeError``
at a later ``predict``: gaps and uneven spacing at fit, a DatetimeIndex without a frequency
pandas can infer, panels on different grids, and at update a PeriodIndex after a
DatetimeIndex (or the reverse), tz-aware after naive, a skipped step, a time off the grid,
and re-sent rows that differ from what was absorbed. What does work: a regular
DatetimeIndex without ``freq`` (inferred), and re-sending the absorbed rows with new ones
(sktime's habit), which equals passing only the new rows and one pass over the history."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest
from estimator_inputs import TINY
from sktime.forecasting.base import ForecastingHorizon

from aaren_ts.estimators import AarenForecaster
from aaren_ts.estimators._time_index import (
    GridClock,
    horizon_labels,
    relative_steps,
    series_grid,
)

N = 40


def _values(n: int = N, start: int = 0) -> np.ndarray:
    t = np.arange(start, start + n, dtype=np.float64)
    return np.sin(t / 3) + 0.1 * np.cos(t / 7)


def _daily(n=N, start=0, tz=None) -> pd.Series:
    index = pd.date_range("2021-01-01", periods=N + 20, freq="D", tz=tz)[start : start + n]
    return pd.Series(_values(n, start), index=index, name="y")


def _monthly(n=N, start=0) -> pd.Series:
    index = pd.period_range("2000-01", periods=N + 20, freq="M")[start : start + n]
    return pd.Series(_values(n, start), index=index, name="y")


def _fit(y) -> AarenForecaster:
    return AarenForecaster(max_horizon=3, **TINY).fit(y)


def _unchanged(model, call, error, pattern) -> None:
    before = pickle.dumps(model)
    with pytest.raises(error, match=pattern):
        call()
    assert pickle.dumps(model) == before


# ---------------------------------------------------------------------------- fit
def _drop(y: pd.Series, position: int) -> pd.Series:
    return y.drop(y.index[position])


UNEVEN = ["2021-01-01", "2021-01-02", "2021-01-04", "2021-01-05", "2021-01-09"]
FIT_CASES = {
    "daily_with_a_missing_day": (
        lambda: _drop(_daily(), 10),
        r"DatetimeIndex has no regular frequency.*2021-01-10 00:00:00 is followed by "
        r"2021-01-12",
    ),
    "timestamps_at_uneven_times": (
        lambda: pd.Series(_values(5), index=pd.to_datetime(UNEVEN), name="y"),
        r"no regular frequency",
    ),
    "monthly_periods_with_a_gap": (
        lambda: _drop(_monthly(), 20),
        r"PeriodIndex has missing periods: 2001-08 is followed by 2001-10",
    ),
    "integers_with_a_gap": (
        lambda: pd.Series(_values(), index=pd.Index(np.r_[0:20, 21:41]), name="y"),
        r"integer time index must count up in steps of 1.*19 is followed by 21",
    ),
    "integers_counting_in_threes": (
        lambda: pd.Series(_values(), index=pd.Index(np.arange(N) * 3), name="y"),
        r"steps of 1.*0 is followed by 3",
    ),
    "panel_on_two_frequencies": (
        lambda: pd.concat(
            {
                "a": _daily().to_frame(),
                "b": pd.Series(
                    _values(), index=pd.date_range("2021", periods=N, freq="h"), name="y"
                ).to_frame(),
            }
        ),
        r"series 'b' and 'a' are on different time grids",
    ),
    "panel_with_one_gapped_series": (
        lambda: pd.concat({"a": _daily().to_frame(), "b": _drop(_daily(), 5).to_frame()}),
        r"DatetimeIndex of series 'b' has no regular frequency",
    ),
}


@pytest.mark.parametrize("case", list(FIT_CASES))
def test_an_irregular_index_at_fit_is_a_named_error(case):
    make, pattern = FIT_CASES[case]
    model = AarenForecaster(max_horizon=3, **TINY)
    _unchanged(model, lambda: model.fit(make()), ValueError, pattern)


def test_a_regular_datetime_index_without_freq_gets_one_inferred():
    y = _daily()
    bare = pd.Series(y.to_numpy(), index=pd.DatetimeIndex(list(y.index)), name="y")
    assert bare.index.freq is None
    model = _fit(bare)
    forecast = model.predict(fh=[1, 2, 3])
    assert list(forecast.index) == list(pd.date_range("2021-02-10", periods=3, freq="D"))
    pd.testing.assert_series_equal(forecast, _fit(y).predict(fh=[1, 2, 3]))


# ---------------------------------------------------------------------------- update
# fitted afresh for each case (a deep copy would also work, but drops pandas' lazily filled
# caches, which the first failed call then fills: a change of pickled bytes, not of state)
@pytest.fixture
def daily():
    return _fit(_daily())


@pytest.fixture
def monthly():
    return _fit(_monthly())


def _next_days(n: int, start: int = N, tz=None, hour: int = 0) -> pd.Series:
    y = _daily(n, start, tz)
    return y.set_axis(y.index + pd.Timedelta(hours=hour))


UPDATE_CASES = {
    "period_after_datetime": (
        "daily", lambda: _monthly(2, N), TypeError,
        r"update's time index is a PeriodIndex, but the forecaster was fitted on a "
        r"DatetimeIndex \(freq=D, no time zone\)",
    ),
    "datetime_after_period": (
        "monthly", lambda: _daily(2, N), TypeError,
        r"is a DatetimeIndex, but the forecaster was fitted on a PeriodIndex \(freq=M",
    ),
    "tz_aware_after_naive": (
        "daily", lambda: _next_days(2, tz="UTC"), TypeError,
        r"update's time index is tz-aware, but the forecaster was fitted on a DatetimeIndex",
    ),
    "a_skipped_day": (
        "daily", lambda: _next_days(2, start=N + 1), ValueError,
        r"after 2021-02-09 00:00:00 comes 2021-02-10 00:00:00, but the data has 2021-02-11 "
        r"00:00:00 \(a gap\)",
    ),
    "a_time_off_the_grid": (
        "daily", lambda: _next_days(1, hour=12), ValueError, r"2021-02-10 12:00:00 \(a gap\)",
    ),
    "a_gap_inside_the_new_rows": (
        "daily", lambda: _drop(_next_days(4), 2), ValueError, r"a gap",
    ),
    "a_skipped_month": (
        "monthly", lambda: _monthly(1, N + 2), ValueError,
        r"comes 2003-05, but the data has 2003-07",
    ),
    "periods_of_another_freq": (
        "monthly", lambda: pd.Series([0.0], index=pd.period_range("2003-05", periods=1, freq="D"),
                                     name="y"), ValueError, r"has freq D, the fit's is M",
    ),
    "resent_rows_that_differ": (
        "daily", lambda: pd.concat([_daily(5, N - 5) + 1.0, _next_days(2)]), ValueError,
        r"row at 2021-02-05 00:00:00 differs from the one already absorbed",
    ),
    "a_resent_time_the_series_never_had": (
        "daily", lambda: pd.concat([_next_days(1, start=N - 3, hour=6), _next_days(2)]),
        ValueError, r"row at 2021-02-07 06:00:00 is not a time the series had",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(UPDATE_CASES))
def test_an_update_off_the_fitted_grid_is_a_named_error(case, daily, monthly):
    which, make, error, pattern = UPDATE_CASES[case]
    model = daily if which == "daily" else monthly
    _unchanged(model, lambda: model.update(make(), update_params=False), error, pattern)
    _unchanged(model, lambda: model.update(make(), update_params=True), error, pattern)


def test_resending_absorbed_rows_equals_passing_only_new_rows_and_one_pass(daily):
    """sktime's habit (the whole series so far), only the new rows, and single rows one at a
    time give bit-identical states, and the same forecast as one pass over the history."""
    whole, new_only, one_by_one = (copy.deepcopy(daily) for _ in range(3))
    whole.update(_daily(N + 12), update_params=False)
    new_only.update(_next_days(12), update_params=False)
    for i in range(12):
        one_by_one.update(_next_days(1, start=N + i), update_params=False)
    for other in (new_only, one_by_one):
        pd.testing.assert_series_equal(other.predict(fh=[1, 2, 3]), whole.predict(fh=[1, 2, 3]))
        assert other.cutoff.equals(whole.cutoff)
    # one pass over all 52 rows from an empty state, with the same network
    history = _daily(N + 12).to_frame()
    scaled = whole._scaled(history, whole.scaling_[None])
    one_pass = whole._encode(scaled, None, None, history.index[-1])
    np.testing.assert_allclose(
        whole.streams_[None]["forecast"], one_pass["forecast"], atol=1e-5, rtol=0
    )


def test_a_tz_aware_series_updates_across_a_daylight_saving_change():
    index = pd.date_range("2021-03-27", periods=N + 2, freq="h", tz="Europe/Berlin")
    y = pd.Series(_values(N + 2), index=index, name="y")
    model = _fit(y[:N])
    model.update(y[N:], update_params=False)
    assert model.cutoff[0] == index[-1]
    assert list(model.predict(fh=[1]).index) == [index[-1] + pd.Timedelta(hours=1)]
    naive = y[N:].tz_localize(None).set_axis(y.index[N:].tz_localize(None) + pd.Timedelta("2h"))
    _unchanged(model, lambda: model.update(naive), TypeError, r"tz-naive")


def _datetime_cutoffs() -> list[pd.DatetimeIndex]:
    cutoffs = []
    for unit in ("s", "ms", "us", "ns"):
        for tz in (None, "UTC", "Europe/Berlin"):
            for start, freq in [
                ("2020-03-29 00:00", "h"),  # across Berlin's DST change
                ("2020-01-31", "D"),
                ("2020-01-31", "ME"),
                ("2020-01-03", "B"),
                ("2020-01-06", "W-MON"),
                ("2020-01-01 00:15", "15min"),
            ]:
                stamp = pd.DatetimeIndex([start], tz=tz).as_unit(unit)
                cutoffs.append(pd.DatetimeIndex(stamp, freq=freq))
    return cutoffs


CUTOFFS = [
    pd.Index([399]),
    pd.Index([-5]),
    pd.RangeIndex(63, 64),  # the cutoff of a series with a RangeIndex
    *_datetime_cutoffs(),
    pd.PeriodIndex(["2020-01"], freq="M"),
    pd.PeriodIndex(["2020Q1"], freq="Q"),
    pd.PeriodIndex(["2020-01-01 10:00"], freq="h"),
]


def _label(c: pd.Index) -> str:
    return f"{type(c).__name__}-{c.dtype}-{getattr(c, 'freqstr', None)}"


@pytest.mark.parametrize("cutoff", CUTOFFS, ids=_label)
@pytest.mark.parametrize("steps", [np.arange(1, 25), np.array([3, 4, 5]), np.array([1, 3])])
def test_horizon_labels_are_sktimes_or_none(cutoff, steps):
    """The labels built directly equal sktime's ``to_absolute_index`` (values, dtype and
    unit, frequency); where they might not (gaps in the steps, a time zone with a calendar
    frequency) None hands the case back to sktime."""
    fh = ForecastingHorizon(steps, is_relative=True)
    np.testing.assert_array_equal(relative_steps(fh), steps)
    got = horizon_labels(cutoff, steps)
    expected = fh.to_absolute_index(cutoff)
    contiguous = bool((np.diff(steps) == 1).all())
    calendar_with_zone = getattr(cutoff, "tz", None) is not None and not isinstance(
        cutoff.freq, pd.offsets.Tick
    )
    if got is None:
        assert type(cutoff) not in (pd.Index, pd.RangeIndex)  # integers: always built here
        assert not contiguous or calendar_with_zone
        return
    pd.testing.assert_index_equal(got, expected, exact=True)
    assert getattr(got, "freq", None) == getattr(expected, "freq", None)


def test_relative_steps_only_for_integer_relative_horizons():
    assert relative_steps(ForecastingHorizon([1, 2], is_relative=True)).tolist() == [1, 2]
    absolute = ForecastingHorizon(pd.Index([5, 6]), is_relative=False)
    assert relative_steps(absolute) is None
    assert relative_steps(ForecastingHorizon(pd.to_timedelta([1, 2], unit="D"))) is None


def test_relative_steps_of_the_last_horizon_are_kept_read_only():
    """A stream asks about one horizon every tick: its steps are kept, read-only, and another
    horizon (or another object with other steps) is never given them."""
    first = ForecastingHorizon([1, 2, 3], is_relative=True)
    steps = relative_steps(first)
    assert relative_steps(first) is steps
    with pytest.raises(ValueError, match="read-only"):
        steps[0] = 5
    other = ForecastingHorizon([2, 4], is_relative=True)
    assert relative_steps(other).tolist() == [2, 4]
    assert relative_steps(first).tolist() == [1, 2, 3]
    del first, steps, other
    assert relative_steps(ForecastingHorizon([7], is_relative=True)).tolist() == [7]


# ---------------------------------------------------------------------- stepping on a calendar
@pytest.mark.parametrize(
    "freq, tz, unit",
    [
        ("MS", None, "ns"),
        ("ME", "Europe/Berlin", "ns"),
        ("W-SUN", None, "s"),
        ("B", None, "us"),
        ("QE-NOV", None, "ns"),
        ("D", "Europe/Berlin", "ns"),  # calendar days across the DST changes
        ("h", "America/New_York", "ns"),  # a fixed step: the plain arithmetic
        (pd.DateOffset(months=1), None, "ns"),  # not k-fold repetition: pandas per step
    ],
    ids=str,
)
def test_steps_after_times_equal_pandas_arithmetic_per_step(freq, tz, unit):
    """``GridClock.after`` (one calendar built for all values where they lie on it) against
    pandas' ``time + k * freq`` for each value and step, on and off the calendar."""
    index = pd.date_range("2020-01-31", periods=40, freq=freq, tz=tz).as_unit(unit)
    clock = GridClock.of(series_grid(index), index)
    rng = np.random.default_rng(0)
    on = clock.values(index[rng.integers(0, 40, 30)])
    off = on + np.where(rng.random(30) < 0.3, 3_600 * 10 ** {"s": 0, "us": 6, "ns": 9}[unit], 0)
    for values in (on, off, on[:1].repeat(12)):
        steps = rng.integers(-25, 25, len(values))
        expected = pd.DatetimeIndex(
            [
                clock.times([v])[0] + int(k) * clock.grid.freq
                for v, k in zip(values, steps, strict=True)
            ]
        )
        np.testing.assert_array_equal(clock.after(values, steps), expected.as_unit(unit).asi8)
