"""Online interval tracking: known-truth coverage, the median left alone, order-only
dependence (rows one at a time or together), a constant-size record; and the forecaster's
streams use it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from aaren_ts.estimators import AarenForecaster
from aaren_ts.estimators._interval_tracking import (
    _record,
    _record_numpy,
    _record_torch,
    _stacked,
    all_shifts,
    record,
    record_many,
    stacked_shifts,
    start_tracking,
    tracked_steps,
)

LEVELS = torch.tensor([0.1, 0.5, 0.9])


def standard_normal_forecasts(rows: int, horizon: int = 3):
    """Forecasts that believe in N(0, 1) at every step: quantiles -1.28, 0, 1.28."""
    quantiles = torch.tensor([-1.2816, 0.0, 1.2816])
    forecast = quantiles.expand(1, rows, horizon, 1, 3).clone()
    return forecast, torch.zeros(1, rows, 1), torch.ones(1, rows, 1)


def test_shifts_bring_coverage_to_nominal_when_the_truth_is_wider():
    g = torch.Generator().manual_seed(0)
    rows = 6000
    values = 2.0 * torch.randn(1, rows, 1, generator=g)  # the truth is N(0, 4)
    forecast, centre, scale = standard_normal_forecasts(rows)
    tracker = start_tracking(np.zeros((3, 3)), batch=1, channels=1)
    history = []
    record(tracker, forecast, centre, scale, values, LEVELS, rate=0.05, history=history)
    shifts = torch.stack(history)  # (rows, S, Q): in force after each row
    # each forecast is read with the shifts in force at its origin; its step-1 target is the
    # next row's value
    low = forecast[0, :-1, 0, 0, 0] + shifts[:-1, 0, 0].float()
    high = forecast[0, :-1, 0, 0, 2] + shifts[:-1, 0, 2].float()
    target = values[0, 1:, 0]
    inside = ((low <= target) & (target <= high)).float()
    assert abs(float(inside[-3000:].mean()) - 0.8) < 0.03  # untracked: P(|N(0,4)| < 1.28) = 0.52
    # the 0.9 quantile of N(0, 4) is 2.56: the shift found the missing 1.28
    assert abs(float(shifts[-3000:, :, 2].mean()) - 1.28) < 0.15
    assert (shifts[:, :, 1] == 0).all()  # the median is the network's point forecast


def test_rows_one_at_a_time_equal_rows_together():
    g = torch.Generator().manual_seed(1)
    forecast = torch.randn(2, 40, 20, 3, 3, generator=g).sort(-1).values
    centre, scale = torch.randn(2, 40, 3, generator=g), torch.rand(2, 40, 3, generator=g) + 0.5
    values = torch.randn(2, 40, 3, generator=g)
    start = start_tracking(np.full((20, 3), 0.1), batch=2, channels=3)
    together = record(start, forecast, centre, scale, values, LEVELS, rate=0.1)
    one = start
    for t in range(40):
        part = slice(t, t + 1)
        one = record(one, forecast[:, part], centre[:, part], scale[:, part], values[:, part],
                     LEVELS, rate=0.1)  # fmt: skip
    for a, b in zip(together, one, strict=True):
        torch.testing.assert_close(a, b)
    # the record is the last K forecasts at the tracked steps, whatever the stream's length
    steps = tracked_steps(20)
    assert together.forecasts.shape == (int(steps[-1]), 2, len(steps), 3, 3)
    assert not torch.equal(together.shifts, start.shifts)


def test_without_adapting_the_shifts_stay_and_only_the_last_rows_are_kept():
    forecast, centre, scale = standard_normal_forecasts(50, horizon=4)
    forecast = forecast + torch.arange(50.0).view(1, 50, 1, 1, 1)  # each row recognisable
    start = start_tracking(np.full((4, 3), 0.5), batch=1, channels=1)
    tracker = record(start, forecast, centre, scale, torch.zeros(1, 50, 1), LEVELS, 0.1, False)
    torch.testing.assert_close(tracker.shifts, start.shifts)
    assert int(tracker.count) == 50
    kept = sorted({round(float(v)) for v in tracker.forecasts[..., 1].flatten()})
    assert kept == [46, 47, 48, 49]  # medians of the last 4 origins (K = 4)


def test_all_shifts_interpolate_between_tracked_steps():
    shifts = np.linspace(0, 1, 96)[:, None] * np.array([[-1.0, 0.0, 1.0]])
    tracker = start_tracking(shifts, batch=1, channels=1)
    np.testing.assert_allclose(all_shifts(tracker, 96), shifts, atol=1e-12)


def test_forecaster_intervals_follow_the_stream_and_equal_updates_in_one_call():
    """A series whose noise triples after fit: the fitted intervals under-cover; the tracked
    ones widen. Updating row by row or in one call gives the same intervals."""
    rng = np.random.default_rng(0)
    n = 700
    noise = np.where(np.arange(n) < 300, 1.0, 3.0) * rng.normal(size=n)
    index = pd.period_range("2000-01-01", periods=n, freq="D")
    y = pd.Series(10 * np.sin(np.arange(n) / 5) + noise, index=index, name="y")
    params = {
        "max_horizon": 2,
        "d_model": 8,
        "n_layers": 1,
        "n_heads": 2,
        "max_epochs": 2,
        "local_window": 24,
        "validation_size": 0.2,
        "random_state": 0,
    }
    tracked = AarenForecaster(calibration_rate=0.05, **params).fit(y.iloc[:300])
    fixed = AarenForecaster(calibration_rate=0.0, **params).fit(y.iloc[:300])
    together = AarenForecaster(calibration_rate=0.05, **params).fit(y.iloc[:300])
    hits = {"tracked": [], "fixed": []}
    for t in range(300, n - 1):
        for name, f in (("tracked", tracked), ("fixed", fixed)):
            f.update(y.iloc[: t + 1], update_params=False)
            interval = f.predict_interval(fh=[1], coverage=0.8).to_numpy()[0]
            hits[name].append(interval[0] <= y.iloc[t + 1] <= interval[1])
    late = slice(200, None)  # after the tracking has had time to move
    assert np.mean(hits["fixed"][late]) < 0.6
    assert abs(np.mean(hits["tracked"][late]) - 0.8) < 0.1
    together.update(y.iloc[: n - 1], update_params=False)
    pd.testing.assert_frame_equal(
        together.predict_interval(fh=[1, 2], coverage=0.8),
        tracked.predict_interval(fh=[1, 2], coverage=0.8),
    )


def _streams(g, n: int, rows: int, batch: int = 2, horizon: int = 20):
    forecast = torch.randn(n * batch, rows, horizon, 3, 3, generator=g).sort(-1).values
    centre = torch.randn(n * batch, rows, 3, generator=g)
    scale = torch.rand(n * batch, rows, 3, generator=g) + 0.5
    values = torch.randn(n * batch, rows, 3, generator=g)
    return forecast, centre, scale, values


def test_many_streams_at_once_equal_one_record_each():
    """A panel's records advance together (one set of tensor operations) and each still
    pools over its own stream: equal to one record per stream, adapting or only filling,
    whether the streams have recorded the same number of rows (batched) or not (a loop)."""
    g = torch.Generator().manual_seed(3)
    n, batch = 4, 2
    trackers = [start_tracking(np.full((20, 3), 0.1 * i), batch, 3) for i in range(n)]
    # fill: 30 rows through every stream (30 >= the ring of 20: the shortcut path)
    fill = _streams(g, n, 30)
    together = record_many(trackers, *fill, LEVELS, 0.1, adapt=False)
    one_by_one = [
        record(t, *(x[i * batch : (i + 1) * batch] for x in fill), LEVELS, 0.1, adapt=False)
        for i, t in enumerate(trackers)
    ]
    # then adapt with 5 rows, twice
    for _ in range(2):
        rows = _streams(g, n, 5)
        together = record_many(together, *rows, LEVELS, 0.1, adapt=True)
        one_by_one = [
            record(t, *(x[i * batch : (i + 1) * batch] for x in rows), LEVELS, 0.1)
            for i, t in enumerate(one_by_one)
        ]
    for a, b in zip(together, one_by_one, strict=True):
        torch.testing.assert_close(a.shifts, b.shifts, rtol=0, atol=1e-12)
        assert torch.equal(a.forecasts, b.forecasts) and int(a.count) == int(b.count) == 40
    assert len({float(t.shifts.abs().sum()) for t in together}) == n  # each its own shifts
    np.testing.assert_allclose(
        stacked_shifts(torch.stack([t.shifts for t in together]), 20),
        np.stack([all_shifts(t, 20) for t in together]),
        rtol=0, atol=1e-12,
    )  # fmt: skip
    # streams that recorded different numbers of rows go one at a time, with the same result
    ragged = [together[0], record(together[1], *(x[:batch] for x in _streams(g, 1, 3)),
                                  LEVELS, 0.1)]  # fmt: skip
    rows = _streams(g, 2, 4)
    mixed = record_many(ragged, *rows, LEVELS, 0.1)
    for i, t in enumerate(ragged):
        single = record(t, *(x[i * batch : (i + 1) * batch] for x in rows), LEVELS, 0.1)
        assert torch.equal(mixed[i].shifts, single.shifts)


def _random_record_inputs(g, series, batch, rows, horizon, channels, n_q=3):
    forecast = torch.randn(series, batch, rows, horizon, channels, n_q, generator=g)
    centre = torch.randn(series, batch, rows, channels, generator=g)
    scale = torch.rand(series, batch, rows, channels, generator=g) + 0.5
    values = torch.randn(series, batch, rows, channels, generator=g)
    return forecast.sort(-1).values, centre, scale, values


@pytest.mark.parametrize(
    ("series", "batch", "channels", "horizon"), [(1, 1, 1, 24), (3, 2, 2, 5), (2, 1, 3, 40)]
)
@pytest.mark.parametrize("adapt", [True, False])
def test_the_numpy_record_equals_the_torch_record(series, batch, channels, horizon, adapt):
    """CPU records run in NumPy; the torch record (any device) is the reference: the same
    ring, units, count and shifts after rows one at a time, in blocks and past the ring's
    length, with and without the shifts history."""
    g = torch.Generator().manual_seed(series * 100 + horizon)
    start = [start_tracking(np.full((horizon, 3), 0.1), batch, channels) for _ in range(series)]
    ours = ref = _stacked(start)
    for rows in [1, 1, 3, 1, 2 * horizon, 1, 7]:
        inputs = _random_record_inputs(g, series, batch, rows, horizon, channels)
        seen_ours, seen_ref = [], []
        ours = _record_numpy(ours, *inputs, LEVELS, 0.05, adapt, seen_ours)
        ref = _record_torch(ref, *inputs, LEVELS, 0.05, adapt, seen_ref)
        for a, b in zip(ours, ref, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        assert len(seen_ours) == len(seen_ref) == rows
        for a, b in zip(seen_ours, seen_ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        # the long block without a history takes the keep-the-last-rows shortcut
        quick = _record_numpy(ours, *inputs, LEVELS, 0.05, adapt)
        slow = _record_torch(ref, *inputs, LEVELS, 0.05, adapt)
        for a, b in zip(quick, slow, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert not torch.equal(ours.shifts, _stacked(start).shifts) or not adapt


def test_a_cpu_record_never_writes_into_the_record_it_reads():
    g = torch.Generator().manual_seed(5)
    before = _stacked([start_tracking(np.full((6, 3), 0.1), 1, 1)])
    copies = [t.clone() for t in before]
    inputs = _random_record_inputs(g, 1, 1, 9, 6, 1)
    after = _record(before, *inputs, LEVELS, 0.1, True)
    for a, b in zip(before, copies, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(after.shifts, before.shifts)
