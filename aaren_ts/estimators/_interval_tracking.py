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

import functools
from typing import NamedTuple

import numpy as np
import torch

MOST_TRACKED_STEPS = 16


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


def all_shifts(tracker: IntervalTracker, horizon: int) -> np.ndarray:
    """The shifts ``(H, Q)`` of every step, interpolated linearly between tracked steps."""
    steps = tracked_steps(horizon).numpy()
    tracked = tracker.shifts.double().cpu().numpy()
    every = np.arange(1, horizon + 1)
    return np.stack([np.interp(every, steps, tracked[:, k]) for k in range(tracked.shape[1])], 1)


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
    steps = tracked_steps(forecast.shape[2]).to(forecast.device)
    ring = tracker.forecasts.shape[0]
    levels = quantiles.to(torch.float64)
    # the median is the network's point forecast: its shift stays as fitted
    moves = (levels != 0.5).to(torch.float64)
    at_steps = forecast[:, :, steps - 1]  # (B, T, S, C, Q)
    forecasts, centres, scales = tracker.forecasts, tracker.centre, tracker.scale
    count, shifts = int(tracker.count), tracker.shifts
    if not adapt and history is None and forecast.shape[1] >= ring:
        # nothing to settle: only the last K rows stay in the ring
        keep = slice(forecast.shape[1] - ring, None)
        order = (count + torch.arange(forecast.shape[1] - ring, forecast.shape[1])) % ring
        forecasts, centres, scales = forecasts.clone(), centres.clone(), scales.clone()
        forecasts[order] = at_steps[:, keep].transpose(0, 1)
        centres[order] = centre[:, keep].transpose(0, 1)
        scales[order] = scale[:, keep].transpose(0, 1)
        total = torch.tensor(count + forecast.shape[1])
        return IntervalTracker(forecasts, centres, scales, total, shifts)
    forecasts, centres, scales = forecasts.clone(), centres.clone(), scales.clone()
    for t in range(forecast.shape[1]):
        if adapt:
            # forecasts made s rows ago for step s: origins count - s, if recorded
            settled = steps <= min(count, ring)
            if settled.any():
                s = steps[settled]
                slots = (count - s) % ring
                made = forecasts[slots, :, settled.nonzero()[:, 0]]  # (S', B, C, Q)
                local = (values[:, t] - centres[slots]) / scales[slots]  # (S', B, C)
                bound = made.double() + shifts[settled][:, None, None, :]
                covered = (local.double().unsqueeze(-1) <= bound).double().mean((1, 2))
                # the step is a share of the shifted outer interval (the forecast's own units)
                outer = bound[..., -1] - bound[..., 0]
                width = outer.mean((1, 2)).clamp(min=1e-3)
                step = rate * width.unsqueeze(-1) * (levels - covered) * moves
                shifts = shifts.index_add(0, settled.nonzero()[:, 0], step)
        slot = count % ring
        forecasts[slot] = at_steps[:, t]
        centres[slot] = centre[:, t]
        scales[slot] = scale[:, t]
        count += 1
        if history is not None:
            history.append(shifts)
    return IntervalTracker(forecasts, centres, scales, torch.tensor(count), shifts)
