"""Checks on the time index of the series a forecaster reads.

The recurrence reads one observation per step, and the forecast of step ``k`` is labelled
``k`` periods after the last observation, so the index must be a regular grid: consecutive
integers, consecutive periods, or timestamps one frequency apart. ``grid`` finds that grid
at fit (naming the series and the first place it breaks: a gap, uneven spacing, a
DatetimeIndex pandas cannot infer a frequency for); ``check_continues`` checks that the rows
``update`` adds continue it (same index type and time zone, no gap, on the grid) before any
state changes; ``check_overlap`` that rows it re-sends match what was absorbed.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Grid:
    """The time grid of a forecaster's series: the index type, its frequency (None for
    integers) and time zone."""

    kind: type
    freq: Any = None
    tz: Any = None

    def describe(self) -> str:
        freq = "unknown" if self.freq is None else self.freq.freqstr
        if self.kind is pd.DatetimeIndex:
            zone = f", tz={self.tz}" if self.tz is not None else ", no time zone"
            return f"a DatetimeIndex (freq={freq}{zone})"
        if self.kind is pd.PeriodIndex:
            return f"a PeriodIndex (freq={freq})"
        return "an integer index (step 1)"

    def with_freq(self, index: pd.Index) -> pd.Index:
        """``index`` (a cutoff) carrying the grid's frequency."""
        if self.kind is pd.DatetimeIndex and getattr(index, "freq", None) is None:
            return pd.DatetimeIndex(index, freq=self.freq)
        return index


@dataclass(frozen=True)
class GridClock:
    """Times on a grid as int64 numbers, for array work on many series at once: integers
    as they are, periods as their ordinals, timestamps as counts of the grid's ``unit``
    since the epoch (UTC instants). ``times`` maps numbers back to an index of the grid's
    type (and time zone)."""

    grid: Grid
    unit: str | None = None  # a DatetimeIndex's resolution ("ns", "us", ...)

    @classmethod
    def of(cls, grid: Grid, index: pd.Index) -> GridClock:
        """The clock of ``grid``, in the resolution of ``index`` (a fitted series' times)."""
        return cls(grid, index.unit if isinstance(index, pd.DatetimeIndex) else None)

    def values(self, times) -> np.ndarray:
        """``times`` (an index, or a list of scalars of the grid's type) -> int64 numbers."""
        kind = self.grid.kind
        if kind is pd.DatetimeIndex:
            return pd.DatetimeIndex(times).as_unit(self.unit).asi8.copy()
        if kind is pd.PeriodIndex:
            return pd.PeriodIndex(times, freq=self.grid.freq).asi8.copy()
        return np.asarray(times, dtype=np.int64).copy()

    def index_values(self, index: pd.Index) -> np.ndarray | None:
        """``index``'s numbers when it is exactly of this clock (the grid's type, and for
        timestamps its resolution and time zone); None otherwise, for the caller's general
        path to check and convert."""
        kind = self.grid.kind
        if kind is pd.DatetimeIndex:
            same = (
                isinstance(index, pd.DatetimeIndex)
                and index.unit == self.unit
                and str(index.tz) == str(self.grid.tz)
            )
            return index.asi8 if same else None
        if kind is pd.PeriodIndex:
            same = isinstance(index, pd.PeriodIndex) and index.freq == self.grid.freq
            return index.asi8 if same else None
        if isinstance(index, (pd.DatetimeIndex, pd.PeriodIndex)):
            return None
        if not pd.api.types.is_integer_dtype(index.dtype):
            return None
        return np.asarray(index, dtype=np.int64)

    def times(self, values: np.ndarray) -> pd.Index:
        """Numbers -> an index of the grid's type."""
        kind = self.grid.kind
        values = np.asarray(values, dtype=np.int64)
        if kind is pd.DatetimeIndex:
            index = pd.DatetimeIndex(values.view(f"M8[{self.unit}]"))
            return (
                index if self.grid.tz is None else index.tz_localize("UTC").tz_convert(self.grid.tz)
            )
        if kind is pd.PeriodIndex:
            return pd.PeriodIndex.from_ordinals(values, freq=self.grid.freq)
        return pd.Index(values)

    def after(self, values: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """The numbers of the times ``steps`` grid steps after ``values`` (elementwise)."""
        steps = np.asarray(steps, dtype=np.int64)
        freq = self.grid.freq
        if self.grid.kind is not pd.DatetimeIndex:
            return values + steps
        if isinstance(freq, pd.offsets.Tick):  # a fixed length: plain arithmetic
            return values + steps * (pd.Timedelta(freq) // pd.Timedelta(1, unit=self.unit))
        # calendar offsets (days across a DST change, months, business days): pandas
        if len(values) and type(freq) is not pd.DateOffset:
            on_grid = self._after_on_grid(values, steps)
            if on_grid is not None:
                return on_grid
        out = np.empty_like(values)
        start = self.times(values)
        for k in np.unique(steps):
            at = steps == k
            out[at] = (start[at] + int(k) * freq).as_unit(self.unit).asi8
        return out

    def _after_on_grid(self, values: np.ndarray, steps: np.ndarray) -> np.ndarray | None:
        """``after`` read off one calendar through every value, built by pandas once: the
        arithmetic per distinct step above costs about 0.1 ms each, and reading a stream's
        tail asks for dozens (4 of the 9 s of sktime's update_predict test on monthly data).
        Anchored offsets step the same way k times at once or one at a time, so the two
        agree where every value lies on the calendar; None where one does not (the caller
        then does the arithmetic). Not for the generic ``pd.DateOffset`` (months=1 from
        31 January: twice one month is 28 March, two months 31 March)."""
        freq = self.grid.freq
        ends = self.times([values.min(), values.max()])
        numbers = pd.date_range(ends[0], ends[-1], freq=freq).as_unit(self.unit).asi8
        if len(numbers) == 0:  # the first value is off the calendar and the last before it
            return None
        at = np.searchsorted(numbers, values)
        if not np.array_equal(numbers[np.minimum(at, len(numbers) - 1)], values):
            return None
        target = at + steps
        before = max(0, -int(target.min()))
        after = max(0, int(target.max()) - (len(numbers) - 1))
        parts = [numbers]
        if before:
            head = pd.date_range(end=ends[0], periods=before + 1, freq=freq)
            parts.insert(0, head.as_unit(self.unit).asi8[:-1])
        if after:
            tail = pd.date_range(start=ends[-1], periods=after + 1, freq=freq)
            parts.append(tail.as_unit(self.unit).asi8[1:])
        return np.concatenate(parts)[target + before]


def _kind(index: pd.Index) -> type:
    if isinstance(index, pd.DatetimeIndex):
        return pd.DatetimeIndex
    if isinstance(index, pd.PeriodIndex):
        return pd.PeriodIndex
    if pd.api.types.is_integer_dtype(index.dtype):
        return pd.Index
    raise TypeError(
        f"the time index must be integers, a DatetimeIndex or a PeriodIndex, got a "
        f"{type(index).__name__} of dtype {index.dtype}"
    )


def _first_break(steps: np.ndarray, index: pd.Index, expected) -> str:
    """Where consecutive entries of ``index`` are not ``expected`` apart."""
    at = int(np.flatnonzero(steps != expected)[0])
    return f"{index[at]} is followed by {index[at + 1]}"


def _datetime_freq(index: pd.DatetimeIndex, where: str):
    if index.freq is not None:
        return index.freq
    if len(index) >= 3:
        inferred = pd.infer_freq(index)
        if inferred is not None:
            return pd.tseries.frequencies.to_offset(inferred)
        steps = np.diff(index.asi8)
        values, counts = np.unique(steps, return_counts=True)
        common = values[counts.argmax()]
        raise ValueError(
            f"y's DatetimeIndex{where} has no regular frequency (pandas cannot infer one): "
            f"{_first_break(steps, index, common)}. The recurrence reads one observation "
            "per step: put the series on a regular grid first (y.asfreq(freq) and fill the "
            "gaps) or give the index a freq"
        )
    if len(index) == 2:  # two timestamps: their distance is the step
        return pd.tseries.frequencies.to_offset(index[1] - index[0])
    return None  # one timestamp: another series (or the caller) must tell


def series_grid(index: pd.Index, where: str = "") -> Grid:
    """The grid of one series' index, checked: consecutive integers or periods, or
    timestamps with a frequency (given or inferred). ``where`` names the series."""
    kind = _kind(index)
    if kind is pd.DatetimeIndex:
        freq = _datetime_freq(index, where)
        if freq is not None and len(index) > 1 and index.freq is None:
            on_grid = pd.date_range(index[0], periods=len(index), freq=freq)
            if not on_grid.equals(index):  # e.g. "2D" inferred on uneven business days
                raise ValueError(
                    f"y's DatetimeIndex{where} is not on a regular {freq.freqstr} grid"
                )
        return Grid(kind, freq, index.tz)
    if kind is pd.PeriodIndex:
        steps = np.diff(index.asi8)
        if (steps != 1).any():
            raise ValueError(
                f"y's PeriodIndex{where} has missing periods: {_first_break(steps, index, 1)}. "
                "The recurrence reads one observation per period: fill the gaps first"
            )
        return Grid(kind, index.freq)
    steps = np.diff(index.to_numpy())
    if (steps != 1).any():
        raise ValueError(
            f"y's integer time index{where} must count up in steps of 1 (one observation "
            f"per step): {_first_break(steps, index, 1)}"
        )
    return Grid(kind)


def panel_grid(frames, fallback_freq=None) -> Grid:
    """The one grid all series share (``frames``: ``[(key, frame)]``), checked."""
    grids = {}
    for key, frame in frames:
        where = "" if key is None else f" of series {_name(key)!r}"
        grids[key] = series_grid(frame.index, where)
    first_key, first = next(iter(grids.items()))
    freq = next((g.freq for g in grids.values() if g.freq is not None), None)
    for key, grid in grids.items():
        same_freq = grid.freq is None or freq is None or grid.freq == freq
        if grid.kind is not first.kind or str(grid.tz) != str(first.tz) or not same_freq:
            raise ValueError(
                f"series {_name(key)!r} and {_name(first_key)!r} are on different time grids "
                f"({grid.describe()} vs {first.describe()}): a panel needs one index type, "
                "frequency and time zone"
            )
    freq = freq or fallback_freq
    if first.kind is not pd.Index and freq is None:
        raise ValueError(
            "y's time index has one timestamp per series and no freq: the step between "
            "observations is unknown; give the index a freq"
        )
    return Grid(first.kind, freq, first.tz)


def _name(key):
    return key[0] if isinstance(key, tuple) and len(key) == 1 else key


def check_kind(grid: Grid, index: pd.Index, where: str = "") -> None:
    """An update's index must be of the fit's type and time zone (and period frequency)."""
    if _kind(index) is not grid.kind:
        raise TypeError(
            f"update's time index{where} is a {type(index).__name__}, but the forecaster was "
            f"fitted on {grid.describe()}: pass the same index type"
        )
    if grid.kind is pd.DatetimeIndex and (index.tz is None) != (grid.tz is None):
        raise TypeError(
            f"update's time index{where} is tz-{'naive' if index.tz is None else 'aware'}, "
            f"but the forecaster was fitted on {grid.describe()}"
        )
    if grid.kind is pd.PeriodIndex and index.freq != grid.freq:
        raise ValueError(
            f"update's PeriodIndex{where} has freq {index.freqstr}, the fit's is "
            f"{grid.freq.freqstr}"
        )


def check_continues(grid: Grid, index: pd.Index, last, where: str = "") -> None:
    """Rows of an update (``index``: those after the last absorbed time ``last``) must be
    on the fit's grid and start one step after ``last``: a named error otherwise, raised
    before any state changes (``check_kind`` first)."""
    if len(index) == 0:
        return
    if grid.kind is pd.DatetimeIndex:
        expected = pd.date_range(last, periods=len(index) + 1, freq=grid.freq)[1:]
        expected = expected.tz_convert(index.tz) if index.tz is not None else expected
    elif grid.kind is pd.PeriodIndex:
        expected = pd.period_range(last + 1, periods=len(index), freq=grid.freq)
    else:
        expected = pd.Index(np.arange(last + 1, last + 1 + len(index)))
    if not np.array_equal(np.asarray(index), np.asarray(expected)):
        at = int(np.flatnonzero(np.asarray(index) != np.asarray(expected))[0])
        what = "a gap" if index[at] > expected[at] else "a time off the grid"
        raise ValueError(
            f"update's rows{where} must continue the series one step at a time on "
            f"{grid.describe()}: after {last if at == 0 else index[at - 1]} comes "
            f"{expected[at]}, but the data has {index[at]} ({what}). Fill missing steps "
            "before updating"
        )


def check_horizon_on_grid(grid: Grid, cutoff: pd.Index, times: pd.Index, horizon: int) -> None:
    """Absolute forecast times must lie on the fit's grid: a named error otherwise.

    sktime converts them to steps after the cutoff and truncates: 36 hours after a daily
    series' end became step 1, its forecast labelled with the off-grid time, two such
    times "duplicates", an hour after the end "in-sample", and a PeriodIndex of another
    frequency an ``AssertionError``. Times before step ``horizon + 1`` after the cutoff are
    checked; earlier and later ones are left to the in-sample and horizon checks.
    """
    if grid.kind is pd.DatetimeIndex:
        if not isinstance(times, pd.DatetimeIndex):
            raise TypeError(
                f"fh is a {type(times).__name__} of times, but the forecaster was fitted on "
                f"{grid.describe()}: pass a DatetimeIndex, or steps ahead (1, 2, ...)"
            )
        if (times.tz is None) != (grid.tz is None):
            raise TypeError(
                f"fh's times are tz-{'naive' if times.tz is None else 'aware'}, but the "
                f"forecaster was fitted on {grid.describe()}"
            )
        if grid.freq is None:
            return
        # the cutoff, its horizon's steps, and the step after: anything strictly between
        # the cutoff and that step must be one of them (later times are the horizon check's)
        on_grid = pd.date_range(cutoff[0], periods=horizon + 2, freq=grid.freq)
        if times.tz is not None:
            times = times.tz_convert(on_grid.tz)
        within = (times > on_grid[0]) & (times < on_grid[-1])
        off = within & ~times.isin(on_grid)
        if off.any():
            raise ValueError(
                f"fh asks for {times[off][0]}, which is not on the series' grid "
                f"({grid.describe()}): forecasts are made for whole steps after the last "
                f"observation {cutoff[0]} ({on_grid[1]}, then every {grid.freq.freqstr})"
            )
    elif grid.kind is pd.PeriodIndex:
        if not isinstance(times, pd.PeriodIndex):
            raise TypeError(
                f"fh is a {type(times).__name__} of times, but the forecaster was fitted on "
                f"{grid.describe()}: pass a PeriodIndex, or steps ahead (1, 2, ...)"
            )
        if times.freq != grid.freq:
            raise ValueError(
                f"fh's PeriodIndex has freq {times.freqstr}, the series' is {grid.freq.freqstr}"
            )


# raw rows kept per series to compare re-sent rows with (constant memory)
TAIL = 64


def tail(previous: tuple | None, index: pd.Index, values: np.ndarray) -> tuple:
    """The last ``TAIL`` absorbed times and raw rows, after absorbing ``index``/``values``."""
    if previous is not None:
        index = previous[0].append(index)
        values = np.concatenate([previous[1], values])
    return index[-TAIL:], values[-TAIL:]


def check_overlap(kept: tuple | None, frame: pd.DataFrame, last, where: str = "") -> None:
    """Rows of an update at or before the last absorbed time ``last`` (sktime passes the
    whole series again) must equal what was absorbed, for the last ``TAIL`` absorbed rows;
    older rows are not compared (they cannot be read again: the recurrence has moved on)."""
    if kept is None:
        return
    # a deep copy: reading the stored index fills pandas' caches, which would change the
    # pickled bytes of a forecaster whose update then fails
    index, values = kept[0].copy(deep=True), kept[1]
    again = frame.loc[(frame.index <= last) & (frame.index >= index[0])]
    if len(again) == 0:
        return
    position = index.get_indexer(again.index)
    if (position < 0).any():
        time = again.index[int(np.flatnonzero(position < 0)[0])]
        raise ValueError(
            f"update's row at {time}{where} is not a time the series had: rows up to the last "
            f"absorbed time ({last}) must repeat the absorbed ones"
        )
    new = again.to_numpy(dtype=np.float64)
    differ = ~np.isclose(new, values[position], rtol=1e-9, atol=0.0).all(axis=1)
    if differ.any():
        at = int(np.flatnonzero(differ)[0])
        raise ValueError(
            f"update's row at {again.index[at]}{where} differs from the one already absorbed "
            f"({new[at].tolist()} vs {values[position[at]].tolist()}): absorbed rows cannot "
            "be changed (refit to correct history)"
        )


# the last horizon asked about and its steps: a stream asks about the same one every tick
_LAST_STEPS: tuple = (lambda: None, None)


def relative_steps(fh) -> np.ndarray | None:
    """The integer steps of a relative ``ForecastingHorizon`` (None for absolute or timedelta
    ones): what ``fh.to_relative(cutoff)`` returns for it, without its conversions. Read-only
    (the last horizon's are kept for the next call)."""
    global _LAST_STEPS
    last, steps = _LAST_STEPS
    if last() is fh:
        return steps
    values = fh.to_pandas()
    if not fh.is_relative or not pd.api.types.is_integer_dtype(values.dtype):
        steps = None
    else:
        steps = values.to_numpy().astype(int)
        steps.setflags(write=False)
    _LAST_STEPS = (weakref.ref(fh), steps)
    return steps


def horizon_labels(cutoff: pd.Index, steps: np.ndarray) -> pd.Index | None:
    """The times ``steps`` (1, 2, ... periods) after ``cutoff``, as sktime's
    ``ForecastingHorizon.to_absolute_index`` labels them, built directly; None where that is
    not one of the cases below (the caller then asks sktime).

    sktime's conversion checks and coerces its inputs on every call: about 0.15 ms for
    integers and 1.2 ms for a DatetimeIndex, against a few microseconds here. Equality with
    sktime's labels, frequency included, is tested for each case.
    """
    if len(cutoff) != 1 or len(steps) == 0:
        return None
    if type(cutoff) in (pd.Index, pd.RangeIndex) and cutoff.dtype == np.int64:
        return pd.Index(cutoff[0] + steps.astype(np.int64))
    contiguous = bool((np.diff(steps) == 1).all())
    freq = getattr(cutoff, "freq", None)
    if not contiguous or freq is None:
        return None
    start = cutoff[0] + int(steps[0]) * freq
    if isinstance(cutoff, pd.PeriodIndex):
        return pd.period_range(start, periods=len(steps), freq=freq)
    if isinstance(cutoff, pd.DatetimeIndex):
        # sktime's labels keep the cutoff's unit; with a time zone they lose a calendar
        # frequency (days, months, business days), a case left to sktime
        if cutoff.tz is not None and not isinstance(freq, pd.offsets.Tick):
            return None
        return pd.date_range(start, periods=len(steps), freq=freq, unit=cutoff.unit)
    return None
