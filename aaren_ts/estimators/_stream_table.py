"""The streaming state of every series of a full-history forecaster, stacked: one engine.

A full-history ``AarenForecaster`` keeps, per series, the recurrent state (``StreamState``),
the interval record (``IntervalTracker``), the last forecast and its local units, the last
absorbed time and the last raw rows (to compare rows sktime sends again). Kept as one dict
per series, a tick of a 10,000-series panel builds and splits 10,000 states, records and
frames: a Python loop whatever the network costs. ``StreamTable`` keeps each of them as one
array with the series along its first (batch) axis, so a tick gathers the rows of the series
that moved (none when all did), reads them in one batched call and scatters the results back.

The table knows tensors and arrays, not pandas: times are stored as integers on the fit's
grid (``_time_index.GridClock``: integers, period ordinals, or timestamps in the grid's
unit), and the forecaster maps indexes and horizons onto it. It is also a read-only mapping
``key -> stream dict`` with the per-series layout the rest of the forecaster reads (the
general update path, fine-tuning, plots, tests), built on demand from the stacked arrays.

Tables are never changed in place: ``advanced`` returns a new one (sharing what did not
change), so a failed call that put the old table back finds it as it was.

Torch and numpy; pandas only for the cached index that maps a panel's series keys to rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ._interval_tracking import IntervalTracker, _record, _stacked, series_record
from ._stream_net import batched_state
from ._time_index import TAIL


def _put_rows(state: Any, rows: torch.Tensor, new: Any) -> Any:
    """A copy of ``state`` whose batch rows ``rows`` are ``new``'s (same nesting)."""
    if isinstance(state, torch.Tensor):
        return state.index_copy(0, rows, new)
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(_put_rows(s, rows, n) for s, n in zip(state, new, strict=True)))
    if isinstance(state, (tuple, list)):
        return type(state)(_put_rows(s, rows, n) for s, n in zip(state, new, strict=True))
    if isinstance(state, dict):
        return {key: _put_rows(state[key], rows, new[key]) for key in state}
    return state


class StreamTable(Mapping):
    """Every series' stream, stacked along the first axis (``S`` series).

    Parameters
    ----------
    keys : list
        The series keys, in table order (``[None]`` for a plain series).
    state : StreamState
        Batched state: series ``i`` owns batch rows ``i * B .. (i + 1) * B - 1`` (``B`` = 1,
        or the number of channels with ``channel_independent``).
    tracker : IntervalTracker
        Stacked records: ``forecasts`` ``(K, S, B, steps, C', Q)``, ``centre``, ``scale``
        ``(K, S, B, C')``, ``shifts`` ``(S, steps, Q)``; ``count`` is unused (see ``counts``).
    counts : ndarray of int64, shape (S,)
        Rows each record has recorded.
    forecast : Tensor, shape (S, H, C, Q)
        The last forecast of each series, in local units.
    centre, scale : ndarray of float64, shape (S, C)
        Its local units (``forecast * scale + centre`` is in the scaled rows' units).
    last : ndarray of int64, shape (S,)
        Each series' last absorbed time, on the grid's integer clock.
    tail : ndarray of float64, shape (S, TAIL, C)
        The last raw rows of each series, right-aligned (the last row at ``TAIL - 1``);
        ``tail_length`` ``(S,)`` says how many are real.
    clock : GridClock
        Maps the integer times to the grid's index type.
    mean, std : ndarray of float64, shape (S, C)
        Each series' fitted scaling (rows are read as ``(y - mean) / std``).
    constant : ndarray of bool, shape (S, C)
        Columns constant in fit (forecast as that constant).
    """

    def __init__(
        self,
        keys: list,
        state: Any,
        tracker: IntervalTracker,
        counts: np.ndarray,
        forecast: torch.Tensor,
        centre: np.ndarray,
        scale: np.ndarray,
        last: np.ndarray,
        tail: np.ndarray,
        tail_length: np.ndarray,
        clock: Any,
        mean: np.ndarray,
        std: np.ndarray,
        constant: np.ndarray,
        position: dict | None = None,
    ) -> None:
        self.keys_ = keys
        self.state = state
        self.tracker = tracker
        self.counts = counts
        self.forecast = forecast
        self.centre = centre
        self.scale = scale
        self.last = last
        self.tail = tail
        self.tail_length = tail_length
        self.clock = clock
        self.mean, self.std, self.constant = mean, std, constant
        # key -> row; shared by the tables a stream advances through
        self.position = position if position is not None else {k: i for i, k in enumerate(keys)}

    # ------------------------------------------------------------------ mapping
    def __len__(self) -> int:
        return len(self.keys_)

    def __iter__(self) -> Iterator:
        return iter(self.keys_)

    def __contains__(self, key: object) -> bool:
        try:
            return key in self.position
        except TypeError:  # an unhashable key is no series of the table
            return False

    def __getitem__(self, key: Any) -> dict:
        """Series ``key``'s stream in the per-series layout (views of the stacked arrays)."""
        i = self.position[key]
        batch = self.rows_per_series
        rows = slice(i * batch, (i + 1) * batch)
        tracker = series_record(self.tracker, i, torch.tensor(int(self.counts[i])))
        n_tail = int(self.tail_length[i])
        back = -np.arange(n_tail - 1, -1, -1, dtype=np.int64)  # steps before the last row
        times = self.clock.times(self.clock.after(np.full(n_tail, self.last[i]), back))
        return {
            "state": map_leaves(lambda t: t[rows], self.state),
            "tracker": tracker,
            "forecast": self.forecast[i],
            "centre": self.centre[i],
            "scale": self.scale[i],
            "last": times[-1],
            "tail": (times, self.tail[i, TAIL - n_tail :]),
        }

    @property
    def rows_per_series(self) -> int:
        return int(self.state.recent.shape[0]) // len(self.keys_)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_streams(
        cls, streams: Mapping, clock: Any, scaling: Mapping, constant: Mapping
    ) -> StreamTable:
        """The table of per-series stream dicts (``{key: stream}``, each with ``state``,
        ``tracker``, ``forecast``, ``centre``, ``scale``, ``last`` and ``tail``), with each
        series' ``scaling`` ``(mean, std)`` and ``constant`` columns."""
        keys = list(streams)
        parts = [streams[key] for key in keys]
        trackers = [p["tracker"] for p in parts]
        # the stacked count is unused: each series' own is in ``counts``
        tracker = _stacked(trackers)
        n_channels = np.asarray(parts[0]["centre"]).shape[-1]
        tail = np.full((len(keys), TAIL, n_channels), np.nan)
        tail_length = np.zeros(len(keys), dtype=np.int64)
        for i, part in enumerate(parts):
            values = part["tail"][1][-TAIL:]
            tail[i, TAIL - len(values) :] = values
            tail_length[i] = len(values)
        return cls(
            keys,
            batched_state([p["state"] for p in parts]),
            tracker,
            np.array([int(t.count) for t in trackers], dtype=np.int64),
            torch.stack([p["forecast"] for p in parts]),
            np.stack([np.asarray(p["centre"], dtype=np.float64) for p in parts]),
            np.stack([np.asarray(p["scale"], dtype=np.float64) for p in parts]),
            clock.values([p["last"] for p in parts]),
            tail,
            tail_length,
            clock,
            np.stack([np.asarray(scaling[k][0], dtype=np.float64) for k in keys]),
            np.stack([np.asarray(scaling[k][1], dtype=np.float64) for k in keys]),
            np.stack([np.asarray(constant[k], dtype=bool) for k in keys]),
        )

    # ------------------------------------------------------------------ advancing
    def batch_rows(self, series: np.ndarray) -> torch.Tensor:
        """The state's batch rows of the series ``series`` (table rows), series after series."""
        batch = self.rows_per_series
        rows = (series[:, None] * batch + np.arange(batch)[None, :]).ravel()
        return torch.as_tensor(rows, device=self.device)

    @property
    def device(self) -> torch.device:
        """Where the states and records live (the network's device; forecasts are kept on
        the CPU)."""
        return self.state.recent.device

    def read(
        self,
        net: Any,
        series: np.ndarray,
        sequences: torch.Tensor,
        rate: float,
        chunk: int,
    ) -> tuple:
        """Series ``series`` (table rows, all with the same count recorded) read their new
        rows ``sequences`` ``(P * B, T, n_targets)`` from their stored state: returns the
        state after them, the advanced records, and the last row's forecasts
        ``(P * B, H, n_targets, Q)``, centres and scales ``(P * B, n_targets)``."""
        f, c, sc, _, shifts = self.tracker
        count = torch.tensor(int(self.counts[series[0]]))
        if self._all(series):  # every series, in order (a panel's usual tick): no gather
            state, tracker = self.state, IntervalTracker(f, c, sc, count, shifts)
        else:
            rows = self.batch_rows(series)
            index = torch.as_tensor(series, device=sequences.device)
            state = map_leaves(lambda t: t.index_select(0, rows), self.state)
            tracker = IntervalTracker(
                f.index_select(1, index), c.index_select(1, index), sc.index_select(1, index),
                count, shifts.index_select(0, index),
            )  # fmt: skip
        n, batch = len(series), self.rows_per_series
        for start in range(0, sequences.shape[1], chunk):
            part = sequences[:, start : start + chunk]
            out, centre, scale, state = net(part, state, None)
            unflat = (t.unflatten(0, (n, batch)) for t in (out, centre, scale, part))
            tracker = _record(tracker, *unflat, net.quantiles, rate, rate > 0)
        return state, tracker, out[:, -1], centre[:, -1], scale[:, -1]

    def advanced(
        self,
        groups: Sequence[
            tuple[np.ndarray, Any, IntervalTracker, torch.Tensor, np.ndarray, np.ndarray]
        ],
        moved: np.ndarray,
        rows_read: np.ndarray,
        last: np.ndarray,
        raw: list[tuple[np.ndarray, np.ndarray]],
    ) -> StreamTable:
        """A new table in which series moved on: ``groups`` = ``[(series, state, tracker,
        forecast (P, H, C, Q), centre (P, C), scale (P, C))]`` as ``read`` left them;
        ``moved`` the series that read rows, ``rows_read`` how many each, ``last`` their new
        last times; ``raw`` ``[(series, rows (P, n, C))]`` their raw new rows."""
        state, (f, c, sc, zero, shifts) = self.state, self.tracker
        forecast, centre, scale = self.forecast, self.centre.copy(), self.scale.copy()
        for series, new_state, new_tracker, new_forecast, new_centre, new_scale in groups:
            if self._all(series):  # every series, in order: the new arrays as they are
                state, (f, c, sc, _, shifts) = new_state, new_tracker
                forecast, centre[:], scale[:] = new_forecast, new_centre, new_scale
                continue
            index = torch.as_tensor(series, device=self.device)
            state = _put_rows(state, self.batch_rows(series), new_state)
            f = f.index_copy(1, index, new_tracker.forecasts)
            c = c.index_copy(1, index, new_tracker.centre)
            sc = sc.index_copy(1, index, new_tracker.scale)
            shifts = shifts.index_copy(0, index, new_tracker.shifts)
            forecast = forecast.index_copy(0, index.to(forecast.device), new_forecast)
            centre[series], scale[series] = new_centre, new_scale
        counts, last_times = self.counts.copy(), self.last.copy()
        counts[moved] += rows_read
        last_times[moved] = last
        tail, tail_length = self.tail.copy(), self.tail_length.copy()
        for series, values in raw:
            n = values.shape[1]
            if n >= TAIL:
                tail[series] = values[:, -TAIL:]
            else:
                tail[series] = np.concatenate([tail[series, n:], values], 1)
            tail_length[series] = np.minimum(tail_length[series] + n, TAIL)
        new = StreamTable(
            self.keys_,
            state,
            IntervalTracker(f, c, sc, zero, shifts),
            counts,
            forecast,
            centre,
            scale,
            last_times,
            tail,
            tail_length,
            self.clock,
            self.mean,
            self.std,
            self.constant,
            self.position,
        )
        new.__dict__.update(self._caches())  # same keys: same lookups
        return new

    def _caches(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k in ("_lookup", "_levels")}

    def _all(self, series: np.ndarray) -> bool:
        """Whether ``series`` is every row of the table, in order."""
        return len(series) == len(self.keys_) and bool((series == np.arange(len(series))).all())

    def with_tensors(self, fn: Callable[[Any], Any]) -> StreamTable:
        """The table with ``fn`` applied to each of its tensors (pickling moves them to and
        from the CPU, ``_portable``)."""
        new = object.__new__(StreamTable)
        new.__dict__.update(self.__dict__)
        new.state = map_leaves(fn, self.state)
        new.tracker = map_leaves(fn, self.tracker)
        new.forecast = fn(self.forecast)
        return new

    # ------------------------------------------------------------------ lookup
    def series_of(self, index: pd.MultiIndex) -> np.ndarray | None:
        """The table row of each entry of a panel index's series levels (all but the last);
        None when a series is not in the table."""
        n_levels = index.nlevels - 1
        if n_levels != len(self.keys_[0] if isinstance(self.keys_[0], tuple) else ()):
            return None
        lookup = self._key_index()
        if n_levels == 1:  # map the level's values once, then its codes
            at_level = lookup.get_indexer(index.levels[0])
            rows = at_level[index.codes[0]]
        else:
            rows = lookup.get_indexer(index.droplevel(-1))
        return None if (rows < 0).any() else rows.astype(np.int64)

    def _key_index(self) -> pd.Index:
        # built on first use and not pickled (see __getstate__)
        found = self.__dict__.get("_lookup")
        if found is None:
            keys = self.keys_
            if len(keys[0]) == 1:
                found = pd.Index([k[0] for k in keys], dtype=object)
            else:
                found = pd.MultiIndex.from_tuples(keys)
            self.__dict__["_lookup"] = found
        return found

    def key_levels(self) -> pd.MultiIndex:
        """The series keys as the levels of a panel's index (``from_arrays`` of the keys,
        one entry per series), built on first use and not pickled."""
        found = self.__dict__.get("_levels")
        if found is None:
            arrays = [np.array(level, dtype=object) for level in zip(*self.keys_, strict=True)]
            found = self.__dict__["_levels"] = pd.MultiIndex.from_arrays(arrays)
        return found

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in self._caches()}
        state.pop("position", None)  # rebuilt from the keys
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.position = {k: i for i, k in enumerate(self.keys_)}


def map_leaves(fn: Callable[[Any], Any], value: Any) -> Any:
    """``value`` with ``fn`` applied to every leaf (tuples, NamedTuples, lists and dicts
    followed): the tensors of a state or record, or what pickling made of them."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(map_leaves(fn, part) for part in value))
    if isinstance(value, (tuple, list)):
        return type(value)(map_leaves(fn, part) for part in value)
    if isinstance(value, dict):
        return {key: map_leaves(fn, part) for key, part in value.items()}
    return fn(value)
