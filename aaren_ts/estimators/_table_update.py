"""A plain ``update`` through the stream table: new rows of a frame mapped to table rows,
checked and read in array operations, whatever the number of series.

``plain_table_update`` handles the common tick of a live stream: every row is new (after its
series' last absorbed time) and continues its series on the grid, with no exogenous data and
no fine-tuning. It maps the frame's series and times to table rows and grid numbers,
checks them as arrays, reads the series that received the same number of rows (and have
recorded as many) in one batched network call each, and returns the advanced table. For
anything else (an unknown series, rows sktime sends again, a gap, another index type or
resolution, non-finite values) it returns None and the forecaster's general path, which
names the problem or handles the case, runs instead: both give the same streams.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from ._stream_table import StreamTable
from ._values import check_float32


def _frame_rows(table: StreamTable, index: pd.Index) -> tuple[np.ndarray, pd.Index] | None:
    """``(table row of each frame row, the time of each)``, or None when the frame's series
    are not the table's."""
    if isinstance(index, pd.MultiIndex):
        if table.keys_ == [None]:
            return None
        series = table.series_of(index)
        return None if series is None else (series, index.get_level_values(-1))
    if table.keys_ != [None]:
        return None
    return np.zeros(len(index), dtype=np.int64), index


def _float64(values: torch.Tensor) -> np.ndarray:
    """A tensor's values as a float64 NumPy array (on the CPU)."""
    return values.cpu().numpy().astype(np.float64)


# a single row's read plan (members, rows each, positions) and row count, read-only
_SINGLE_ROW = (np.zeros(1, dtype=np.int64), 1, np.zeros((1, 1), dtype=np.int64))
_ONE = np.ones(1, dtype=np.int64)
for _array in (_SINGLE_ROW[0], _SINGLE_ROW[2], _ONE):
    _array.setflags(write=False)


def _read_groups(
    n_rows: np.ndarray, starts: np.ndarray, recorded: np.ndarray
) -> list[tuple[np.ndarray, int, np.ndarray]]:
    """The moved series (positions in ``starts``) grouped by (rows read, rows recorded), so
    that each group is one batched read: ``[(members, rows each, frame positions (P, n))]``.
    A panel's tick is usually one group; a single row always is."""
    if len(n_rows) == 1 and n_rows[0] == 1:
        return [_SINGLE_ROW]
    if (n_rows == n_rows[0]).all() and (recorded == recorded[0]).all():
        which = np.zeros(len(n_rows), dtype=np.int64)
    else:
        _, which = np.unique(np.stack([n_rows, recorded], 1), axis=0, return_inverse=True)
        which = which.ravel()
    groups = []
    for g in range(int(which.max()) + 1):
        members = np.flatnonzero(which == g)
        count = int(n_rows[members[0]])
        positions = starts[members][:, None] + np.arange(count)[None, :]  # (P, n)
        groups.append((members, count, positions))
    return groups


def plain_table_update(
    table: StreamTable,
    index: pd.Index,
    raw: np.ndarray,
    net: Any,
    *,
    channel_independent: bool,
    rate: float,
    chunk: int,
) -> StreamTable | None:
    """``table`` advanced by the rows ``raw`` ``(T, C)`` at ``index`` (checked plain by the
    caller: the fitted columns, numeric, the fitted index kind), or None for the general
    path (see above)."""
    found = _frame_rows(table, index)
    if found is None:
        return None
    series, times = found
    numbers = table.clock.index_values(times)
    if numbers is None or len(series) == 0:
        return None
    if len(series) == 1:  # a single row (a live series' usual tick): nothing to sort out
        starts, n_rows = _SINGLE_ROW[0], _ONE
        within = starts
    else:
        # each series' rows together and in order; sktime's layouts sort by series, then time
        if (np.diff(series) < 0).any():
            return None
        starts = np.flatnonzero(np.concatenate([[True], series[1:] != series[:-1]]))
        n_rows = np.diff(np.append(starts, len(series)))
        within = np.arange(len(series)) - np.repeat(starts, n_rows)
    # every row new and one grid step after the previous one (no gap, no repeat)
    if not np.array_equal(table.clock.after(table.last[series], within + 1), numbers):
        return None
    if not np.isfinite(raw).all():
        return None
    scaled = (raw - table.mean[series]) / table.std[series]
    check_float32(scaled, "y")  # the general path's error for values float32 cannot hold
    device = table.device
    values = torch.from_numpy(scaled.astype(np.float32)).to(device)  # rounded as torch.tensor
    moved = series[starts]
    n_channels = raw.shape[1]
    groups, raw_rows = [], []
    for members, count, positions in _read_groups(n_rows, starts, table.counts[moved]):
        if len(members) == len(moved):  # one group: the rows are the block as they lie
            block = values
        else:
            block = values[torch.as_tensor(positions.ravel(), device=device)]
        block = block.view(len(members), count, n_channels)  # (P, n, C)
        if channel_independent:  # one sequence per channel: (P * C, n, 1)
            sequences = block.transpose(1, 2).reshape(-1, count, 1)
        else:
            sequences = block
        owners = moved[members]
        with torch.no_grad():
            state, tracker, out, centre, scale = table.read(net, owners, sequences, rate, chunk)
        if channel_independent:  # (P * C, H, 1, Q) -> (P, H, C, Q); units (P * C, 1) -> (P, C)
            forecast = out[:, :, 0].unflatten(0, (len(members), n_channels)).transpose(1, 2)
        else:
            forecast = out
        centre = _float64(centre.reshape(len(members), n_channels))
        scale = _float64(scale.reshape(len(members), n_channels))
        groups.append((owners, state, tracker, forecast.cpu(), centre, scale))
        raw_rows.append((owners, raw[positions]))
    last = numbers[starts + n_rows - 1]
    return table.advanced(groups, moved, n_rows, last, raw_rows)
