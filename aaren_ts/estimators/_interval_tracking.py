"""Intervals that stay calibrated on a stream: online tracking of each quantile's shift.

Split-conformal shifts fitted on a validation tail (``quantile_shifts``) hold on data like the
tail; when the series moves on (a calmer or a wilder period), the intervals over- or
under-cover. A stream sees every outcome, so it can keep correcting: when a row arrives, it
settles the forecasts made ``s`` rows earlier for step ``s``, and each quantile's shift moves
by ``rate * width * (level - covered)`` (online quantile tracking; Gibbs and Candès, "Adaptive
Conformal Inference Under Distribution Shift", NeurIPS 2021; Angelopoulos, Candès and
Tibshirani, "Conformal PID Control for Time Series Prediction", NeurIPS 2023). ``width`` is the
forecast's own outer interval, so the step is in the forecast's units. Over a long stream each
quantile then covers its level whatever the drift; the median is left as the network made it.

Only a fixed set of horizon steps is tracked (all of them up to 16, else 16 spread
geometrically from 1 to H), and the shifts of the others are interpolated: the state is the
last ``H`` forecasts at those steps, constant in the stream's length.

Pure torch: no sktime here.
"""

from __future__ import annotations

import bisect
import functools
from typing import NamedTuple

import numpy as np
import torch

MOST_TRACKED_STEPS = 16


@functools.lru_cache(maxsize=64)
def _steps_on(horizon: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``tracked_steps`` and their positions ``0 .. S-1`` on ``device``, made once (a stream
    reads them at every row; callers must not change them)."""
    steps, _, positions = _numpy_steps(horizon)
    return torch.tensor(steps, device=device), torch.tensor(positions, device=device)


@functools.lru_cache(maxsize=64)
def _levels_on(levels: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """``_numpy_levels`` on ``device``, made once."""
    return tuple(torch.tensor(array, device=device) for array in _numpy_levels(levels))


def tracked_steps(horizon: int) -> torch.Tensor:
    """Horizon steps (1-based) whose coverage is tracked: every step up to
    ``MOST_TRACKED_STEPS``, else that many spread geometrically from 1 to ``horizon``.
    A new tensor each call (callers may move or change it); the steps are computed once
    per horizon.

    >>> tracked_steps(4).tolist()
    [1, 2, 3, 4]
    >>> tracked_steps(96).tolist()
    [1, 2, 3, 5, 6, 8, 11, 15, 21, 28, 39, 52, 71, 96]
    """
    return torch.tensor(_tracked_steps(int(horizon)))


@functools.lru_cache(maxsize=64)
def _tracked_steps(horizon: int) -> tuple[int, ...]:
    # every streamed row asks for them: geomspace and unique cost more than the rest of
    # a 1-row record
    if horizon <= MOST_TRACKED_STEPS:
        return tuple(range(1, horizon + 1))
    spread = np.unique(np.round(np.geomspace(1, horizon, MOST_TRACKED_STEPS)).astype(int))
    return tuple(int(s) for s in spread)


class IntervalTracker(NamedTuple):
    """A stream's record of its recent forecasts and its current quantile shifts.

    ``forecasts`` ``(K, B, S, C, Q)``: local-unit quantile forecasts (before any shift) of the
    last ``K`` origins (``K`` = the largest tracked step) at the ``S`` tracked steps, in a
    ring; ``centre``, ``scale`` ``(K, B, C)``: their local units; ``count``: rows recorded
    so far (a 0-d int64 tensor); ``shifts`` ``(S, Q)``: the current shifts.
    """

    forecasts: torch.Tensor
    centre: torch.Tensor
    scale: torch.Tensor
    count: torch.Tensor
    shifts: torch.Tensor


def start_tracking(
    shifts: np.ndarray, batch: int, channels: int, device: torch.device | str = "cpu"
) -> IntervalTracker:
    """An empty record whose shifts start at the fitted ``shifts`` ``(H, Q)``."""
    horizon, n_q = shifts.shape
    steps = tracked_steps(horizon)
    ring = int(steps[-1])
    start = torch.as_tensor(shifts, dtype=torch.float64)[steps - 1]
    return IntervalTracker(
        forecasts=torch.zeros(ring, batch, len(steps), channels, n_q, device=device),
        centre=torch.zeros(ring, batch, channels, device=device),
        scale=torch.ones(ring, batch, channels, device=device),
        count=torch.zeros((), dtype=torch.long),
        shifts=start.to(device),
    )


@functools.lru_cache(maxsize=64)
def _interpolation(horizon: int) -> np.ndarray:
    """``(H, S)``: the weights that interpolate every step's shift linearly between the
    tracked steps (``np.interp`` is linear in the values it interpolates)."""
    steps = np.asarray(_tracked_steps(horizon), dtype=np.float64)
    every = np.arange(1, horizon + 1, dtype=np.float64)
    unit = np.eye(len(steps))
    weights = np.stack([np.interp(every, steps, unit[k]) for k in range(len(steps))], 1)
    weights.setflags(write=False)
    return weights


def all_shifts(tracker: IntervalTracker, horizon: int) -> np.ndarray:
    """The shifts ``(H, Q)`` of every step, interpolated linearly between tracked steps."""
    return _interpolation(int(horizon)) @ tracker.shifts.double().cpu().numpy()


def stacked_shifts(shifts: torch.Tensor, horizon: int) -> np.ndarray:
    """``all_shifts`` of several streams at once, from their tracked shifts stacked
    ``(P, S, Q)``: ``(P, H, Q)``."""
    tracked = shifts.double().cpu().numpy()
    return np.matmul(_interpolation(int(horizon)), tracked)  # (H, S) @ (P, S, Q)


def record(
    tracker: IntervalTracker,
    forecast: torch.Tensor,
    centre: torch.Tensor,
    scale: torch.Tensor,
    values: torch.Tensor,
    quantiles: torch.Tensor,
    rate: float,
    adapt: bool = True,
    history: list[torch.Tensor] | None = None,
) -> IntervalTracker:
    """Read new rows in order: each row's value settles the recorded forecasts that target
    it (with ``adapt``: the shifts move), then its own forecast is recorded.

    ``forecast`` ``(B, T, H, C, Q)`` local units, ``centre``, ``scale``, ``values``
    ``(B, T, C)`` (values in the rows' units). ``history``: when given, the shifts in force
    after each row (those its forecast is read with) are appended to it.
    """
    seen = None if history is None else []
    rows = (t.unsqueeze(0) for t in (forecast, centre, scale, values))
    out = _record(_stacked([tracker]), *rows, quantiles, rate, adapt, seen)
    if history is not None:
        history.extend(shifts[0] for shifts in seen)
    return _unstacked(out, 1)[0]


def record_many(
    trackers: list[IntervalTracker],
    forecast: torch.Tensor,
    centre: torch.Tensor,
    scale: torch.Tensor,
    values: torch.Tensor,
    quantiles: torch.Tensor,
    rate: float,
    adapt: bool = True,
) -> list[IntervalTracker]:
    """``record`` for several streams at once: ``forecast``, ``centre``, ``scale`` and
    ``values`` hold the streams one after another along the batch (each tracker's own batch
    size). Each record still pools over its own stream only. Streams with the same batch
    size and the same number of rows recorded (a panel's usual tick) are advanced in one
    set of tensor operations; otherwise one ``record`` each. Equal to one ``record`` per
    stream (to float rounding of the pooled means)."""
    sizes = [t.forecasts.shape[1] for t in trackers]
    alike = len({(t.forecasts.shape, int(t.count)) for t in trackers}) == 1
    if len(trackers) == 1 or not alike:
        parts = zip(trackers, forecast.split(sizes), centre.split(sizes), scale.split(sizes),
                    values.split(sizes), strict=True)  # fmt: skip
        return [record(t, f, c, sc, v, quantiles, rate, adapt) for t, f, c, sc, v in parts]
    n, batch = len(trackers), sizes[0]
    rows = (t.unflatten(0, (n, batch)) for t in (forecast, centre, scale, values))
    return _unstacked(_record(_stacked(trackers), *rows, quantiles, rate, adapt), n)


def _stacked(trackers: list[IntervalTracker]) -> IntervalTracker:
    """Several streams' records as one with a series dimension (``_record``'s layout); all
    have recorded the same number of rows."""
    forecasts, centre, scale, _, shifts = zip(*trackers, strict=True)
    stack = torch.stack
    count = trackers[0].count
    return IntervalTracker(stack(forecasts, 1), stack(centre, 1), stack(scale, 1), count,
                           stack(shifts))  # fmt: skip


def _unstacked(tracker: IntervalTracker, n: int) -> list[IntervalTracker]:
    """Undo ``_stacked``: one record per stream."""
    return [series_record(tracker, i, tracker.count) for i in range(n)]


def series_record(tracker: IntervalTracker, i: int, count: torch.Tensor) -> IntervalTracker:
    """Stream ``i``'s record (views) out of stacked ones, having recorded ``count`` rows."""
    f, c, sc, _, shifts = tracker
    return IntervalTracker(f[:, i], c[:, i], sc[:, i], count, shifts[i])


def _record(
    tracker: IntervalTracker,
    forecast: torch.Tensor,
    centre: torch.Tensor,
    scale: torch.Tensor,
    values: torch.Tensor,
    quantiles: torch.Tensor,
    rate: float,
    adapt: bool,
    history: list[torch.Tensor] | None = None,
) -> IntervalTracker:
    """``record`` with a leading series dimension ``P``: ``forecast`` ``(P, B, T, H, C, Q)``,
    ``centre``, ``scale``, ``values`` ``(P, B, T, C)``; the tracker's ``forecasts``
    ``(K, P, B, S, C, Q)``, ``centre``, ``scale`` ``(K, P, B, C)``, ``shifts`` ``(P, S, Q)``
    and one ``count`` for all.

    On the CPU the arithmetic runs in NumPy on views of the same memory (``_record_numpy``):
    a live stream records one row per tick, a few dozen operations on arrays of a few
    hundred numbers, where each torch call costs several times a NumPy one. The two give
    the same record (tested)."""
    parts = (*tracker, forecast, centre, scale, values)
    if all(t.device.type == "cpu" and not t.requires_grad for t in parts):
        return _record_numpy(tracker, forecast, centre, scale, values, quantiles, rate, adapt,
                             history)  # fmt: skip
    return _record_torch(tracker, forecast, centre, scale, values, quantiles, rate, adapt,
                         history)  # fmt: skip


@functools.lru_cache(maxsize=64)
def _numpy_steps(horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``tracked_steps``, their 0-based horizon positions and ``0 .. S-1``, as read-only
    int64 arrays (``_record_numpy`` reads them at every row)."""
    steps = np.asarray(_tracked_steps(horizon), dtype=np.int64)
    made = (steps, steps - 1, np.arange(len(steps)))
    for array in made:
        array.setflags(write=False)
    return made


@functools.lru_cache(maxsize=64)
def _numpy_levels(levels: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The quantile levels and whether each one's shift moves (1.0) or stays (0.0: the
    median is the network's point forecast, its shift stays as fitted), as read-only
    float64 arrays (``_levels_on`` puts them on a device)."""
    values = np.asarray(levels, dtype=np.float64)
    moves = (values != 0.5).astype(np.float64)
    values.setflags(write=False)
    moves.setflags(write=False)
    return values, moves


def _record_numpy(
    tracker: IntervalTracker,
    forecast: torch.Tensor,
    centre: torch.Tensor,
    scale: torch.Tensor,
    values: torch.Tensor,
    quantiles: torch.Tensor,
    rate: float,
    adapt: bool,
    history: list[torch.Tensor] | None = None,
) -> IntervalTracker:
    """``_record_torch`` in NumPy, for CPU tensors: the same steps in the same dtypes
    (float32 local values, float64 bounds and shifts), on new arrays handed back as tensors
    (the tracker's own arrays are never written)."""
    horizon = forecast.shape[3]
    steps, columns, positions = _numpy_steps(horizon)
    ring = tracker.forecasts.shape[0]
    rows = forecast.shape[2]
    at_steps = np.take(forecast.numpy(), columns, axis=3)  # (P, B, T, S, C, Q), a copy
    centre, scale, values = centre.numpy(), scale.numpy(), values.numpy()
    forecasts = tracker.forecasts.numpy().copy()
    centres, scales = tracker.centre.numpy().copy(), tracker.scale.numpy().copy()
    count, shifts = int(tracker.count), tracker.shifts
    if not adapt and history is None and rows >= ring:
        # nothing to settle: only the last K rows stay in the ring
        keep = slice(rows - ring, None)
        order = (count + np.arange(rows - ring, rows)) % ring
        forecasts[order] = at_steps[:, :, keep].transpose(2, 0, 1, 3, 4, 5)
        centres[order] = centre[:, :, keep].transpose(2, 0, 1, 3)
        scales[order] = scale[:, :, keep].transpose(2, 0, 1, 3)
        return IntervalTracker(torch.from_numpy(forecasts), torch.from_numpy(centres),
                               torch.from_numpy(scales), torch.tensor(count + rows),
                               shifts)  # fmt: skip
    settled = _tracked_steps(horizon)
    levels, moves = _numpy_levels(tuple(quantiles.tolist())) if adapt else (None, None)
    pooled = centres.shape[2] * centres.shape[3]  # B * C: the entries each mean pools
    for t in range(rows):
        if adapt:
            # forecasts made s rows ago for step s (see _record_torch)
            n = bisect.bisect_right(settled, min(count, ring))
            if n:
                slots = (count - steps[:n]) % ring
                made = forecasts[slots, :, :, positions[:n]]  # (S', P, B, C, Q)
                local = (values[:, :, t] - centres[slots]) / scales[slots]  # (S', P, B, C)
                old = shifts.numpy()
                bound = made + old[:, :n].transpose(1, 0, 2)[:, :, None, None, :]
                # means over B and C: sums of the flattened entries, over their number
                below = (local[..., None] <= bound).reshape(n, -1, pooled, bound.shape[-1])
                covered = below.sum(2, dtype=np.float64) / pooled  # (S', P, Q)
                outer = (bound[..., -1] - bound[..., 0]).reshape(n, -1, pooled)
                width = np.maximum(outer.sum(2) / pooled, 1e-3)  # (S', P)
                step = rate * width[..., None] * (levels - covered) * moves  # (S', P, Q)
                new = old.copy()
                new[:, :n] += step.transpose(1, 0, 2)  # positions 0..n-1, each once
                shifts = torch.from_numpy(new)
        slot = count % ring
        forecasts[slot] = at_steps[:, :, t]
        centres[slot] = centre[:, :, t]
        scales[slot] = scale[:, :, t]
        count += 1
        if history is not None:
            history.append(shifts)
    return IntervalTracker(torch.from_numpy(forecasts), torch.from_numpy(centres),
                           torch.from_numpy(scales), torch.tensor(count), shifts)  # fmt: skip


def _record_torch(
    tracker: IntervalTracker,
    forecast: torch.Tensor,
    centre: torch.Tensor,
    scale: torch.Tensor,
    values: torch.Tensor,
    quantiles: torch.Tensor,
    rate: float,
    adapt: bool,
    history: list[torch.Tensor] | None = None,
) -> IntervalTracker:
    """``_record`` in torch, on any device (the reference ``_record_numpy`` is tested
    against)."""
    horizon = forecast.shape[3]
    steps, positions = _steps_on(horizon, forecast.device)
    ring = tracker.forecasts.shape[0]
    rows = forecast.shape[2]
    levels, moves = _levels_on(tuple(quantiles.tolist()), quantiles.device)
    at_steps = forecast.index_select(3, steps - 1)  # (P, B, T, S, C, Q)
    forecasts, centres, scales = tracker.forecasts, tracker.centre, tracker.scale
    count, shifts = int(tracker.count), tracker.shifts
    if not adapt and history is None and rows >= ring:
        # nothing to settle: only the last K rows stay in the ring
        keep = slice(rows - ring, None)
        order = (count + torch.arange(rows - ring, rows)) % ring
        forecasts, centres, scales = forecasts.clone(), centres.clone(), scales.clone()
        forecasts[order] = at_steps[:, :, keep].permute(2, 0, 1, 3, 4, 5)
        centres[order] = centre[:, :, keep].permute(2, 0, 1, 3)
        scales[order] = scale[:, :, keep].permute(2, 0, 1, 3)
        return IntervalTracker(forecasts, centres, scales, torch.tensor(count + rows), shifts)
    forecasts, centres, scales = forecasts.clone(), centres.clone(), scales.clone()
    for t in range(rows):
        if adapt:
            # forecasts made s rows ago for step s: origins count - s, if recorded; the
            # steps increase, so those settled are the first n (every one once count >= ring)
            n = bisect.bisect_right(_tracked_steps(horizon), min(count, ring))
            if n:
                tracked = positions[:n]
                slots = (count - steps[:n]) % ring
                made = forecasts[slots, :, :, tracked]  # (S', P, B, C, Q)
                local = (values[:, :, t] - centres[slots]) / scales[slots]  # (S', P, B, C)
                # float32 meets float64 in float64 (exactly): no separate casts
                bound = made + shifts[:, :n].transpose(0, 1)[:, :, None, None, :]
                covered = (local.unsqueeze(-1) <= bound).mean((2, 3), dtype=torch.float64)
                # the step is a share of the shifted outer interval (the forecast's own units)
                outer = bound[..., -1] - bound[..., 0]
                width = outer.mean((2, 3)).clamp(min=1e-3)  # (S', P)
                step = rate * width.unsqueeze(-1) * (levels - covered) * moves  # (S', P, Q)
                shifts = shifts.index_add(1, tracked, step.transpose(0, 1))
        slot = count % ring
        forecasts[slot] = at_steps[:, :, t]
        centres[slot] = centre[:, :, t]
        scales[slot] = scale[:, :, t]
        count += 1
        if history is not None:
            history.append(shifts)
    return IntervalTracker(forecasts, centres, scales, torch.tensor(count), shifts)
