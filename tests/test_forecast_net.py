"""The forecasting network: it learns known-truth series, and streaming equals one pass."""

from __future__ import annotations

import math

import pytest
import torch

from aaren_ts.estimators._forecast_net import (
    ForecastNet,
    future_targets,
    lagged_inputs,
    pinball_loss,
    strided_lagged_inputs,
    window_forecast,
)
from aaren_ts.estimators._forecast_training import (
    SeriesData,
    WindowData,
    fit_network,
    in_row_units,
    quantile_shifts,
)
from aaren_ts.estimators._stream_net import StreamNet


def train_stream_net(net, series, *, chunk_length, validation_size=0.0, **kw):
    data = SeriesData(
        series, net.horizon, chunk_length=chunk_length, validation_size=validation_size
    )
    return fit_network(net, data, **kw)


def sine_series(n: int, period: float, phase: float, noise: float, g: torch.Generator):
    t = torch.arange(n, dtype=torch.float32)
    clean = torch.sin(2 * math.pi * t / period + phase)
    return (clean + noise * torch.randn(n, generator=g)).unsqueeze(-1)


def test_lagged_inputs_newest_first_zero_padded():
    y = torch.arange(1.0, 5.0).view(4, 1)
    assert lagged_inputs(y, 3).tolist() == [[1, 0, 0], [2, 1, 0], [3, 2, 1], [4, 3, 2]]


def test_future_targets_layout():
    y = torch.arange(5.0).view(1, 5, 1)
    f = future_targets(y, 2)
    assert f.shape == (1, 5, 2, 1)
    assert f[0, 0, :, 0].tolist() == [1.0, 2.0]
    assert f[0, 3, 0, 0] == 4.0 and torch.isnan(f[0, 3, 1, 0]) and torch.isnan(f[0, 4]).all()


def test_pinball_is_minimised_by_the_quantile():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(20000, generator=g)
    q = torch.tensor([0.1, 0.5, 0.9])
    best = torch.quantile(target, q)
    loss_best = pinball_loss(best.expand(20000, 3), target, q)
    loss_off = pinball_loss((best + 0.3).expand(20000, 3), target, q)
    assert loss_best < loss_off


@pytest.mark.parametrize("backbone", ["aaren", "transformer", "gru"])
def test_learns_a_noisy_sine_panel(backbone):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    series = [sine_series(200, 16, p, 0.05, g) for p in (0.0, 1.0, 2.0)]
    net = StreamNet(1, 4, [0.1, 0.5, 0.9], n_lags=4, local_window=16, backbone=backbone, d_model=16)
    history = train_stream_net(net, series, max_epochs=40, chunk_length=64, lr=1e-2, generator=g)
    # the untrained network is the naive forecast (pinball about 0.22 on this sine)
    assert history[-1] < 0.2 * history[0]
    # the median forecast of the next steps tracks the clean sine
    test = sine_series(232, 16, 0.5, 0.0, g)
    with torch.no_grad():
        forecast, centre, scale, _ = net(test[:200].unsqueeze(0))
    median = in_row_units(forecast, centre, scale)[0, -1, :, 0, 1]
    assert (median - test[200:204, 0]).abs().max() < 0.1  # the naive forecast is 1.4 off


@pytest.mark.parametrize("backbone", ["aaren", "transformer", "gru"])
def test_streaming_forecast_equals_one_pass(backbone):
    torch.manual_seed(0)
    net = ForecastNet(2, 1, horizon=3, quantiles=[0.5], backbone=backbone, d_model=16).eval()
    x = torch.randn(2, 90, 2)
    with torch.no_grad():
        full, _ = net(x)
        _, state = net(x[:, :50])
        for t in range(50, 90):
            last, state = net.step(x[:, t], state)
    assert torch.allclose(last, full[:, -1], rtol=1e-5, atol=1e-5)


def test_early_stopping_keeps_the_best_validation_epoch():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    series = [sine_series(120, 16, p, 0.3, g) for p in (0.0, 1.0)]
    net = StreamNet(1, 2, [0.5], n_lags=4, local_window=16, d_model=16)
    scores: list[float] = []
    history = train_stream_net(
        net,
        series,
        max_epochs=400,
        chunk_length=64,
        lr=3e-2,
        generator=g,
        validation_size=0.25,
        patience=3,
        validation_history=scores,
    )
    assert len(history) < 400 and len(scores) == len(history)  # stopped early
    best_epoch = scores.index(min(scores))
    assert best_epoch == len(scores) - 4  # then 3 epochs without improvement
    # the restored weights are the best validation epoch's, not the last epoch's: scored
    # independently, one pass over each whole series, targets in the last 30 rows only
    with torch.no_grad():
        forecast, centre, scale, _ = net(torch.stack(series))
    future = future_targets(torch.stack(series), 2)
    rows = torch.arange(120).view(-1, 1) + torch.arange(1, 3)
    tail = (rows >= 90).view(1, 120, 2, 1)
    valid = torch.where(tail, future, torch.full_like(future, float("nan")))
    # scored in the local units of each forecast's origin, as the tail is
    local = (valid - centre.unsqueeze(2)) / scale.unsqueeze(2)
    restored = float(pinball_loss(forecast, local, net.quantiles))
    assert restored == pytest.approx(min(scores), rel=1e-5)


def test_window_forecast_is_invariant_to_each_windows_level_and_scale():
    """Per-window normalisation: a window moved and stretched gives the same forecast moved
    and stretched (in the window's units), whatever the backbone has learned."""
    torch.manual_seed(0)
    net = ForecastNet(6, 2, horizon=4, quantiles=[0.1, 0.5, 0.9], d_model=8, context_length=24)
    window = torch.randn(5, 24, 2, dtype=torch.float32)
    with torch.no_grad():
        f, centre, scale = window_forecast(net, window, 3, independent=False)
        g, centre2, scale2 = window_forecast(net, 4.0 * window + 7.0, 3, independent=False)
    a = f * scale.unsqueeze(-1) + centre.unsqueeze(-1)
    b = g * scale2.unsqueeze(-1) + centre2.unsqueeze(-1)
    assert torch.allclose(b, 4.0 * a + 7.0, atol=1e-3)


def test_channel_independent_window_is_each_channel_on_its_own():
    torch.manual_seed(0)
    net = ForecastNet(2, 1, horizon=3, quantiles=[0.5], d_model=8, context_length=16)
    window = torch.randn(4, 16, 3)
    with torch.no_grad():
        joint, _, _ = window_forecast(net, window, 2, independent=True)
        for c in range(3):
            alone, _, _ = window_forecast(net, window[..., c : c + 1], 2, independent=True)
            assert torch.allclose(joint[:, :, c : c + 1], alone, atol=1e-6)


def test_future_term_reads_the_covariates_of_each_step():
    torch.manual_seed(0)
    net = ForecastNet(1, 2, horizon=3, quantiles=[0.2, 0.8], d_model=8, n_future=2)
    with torch.no_grad():
        net.future_weight.normal_()
    future = torch.randn(3, 2)
    term = net.future_term(future)  # (H, C, Q)
    for h in range(3):
        expected = (future[h] @ net.future_weight[h]).view(2, 2)
        assert torch.allclose(term[h], expected, atol=1e-6)
    unknown = future.clone()
    unknown[1] = float("nan")
    assert torch.equal(net.future_term(unknown)[1], torch.zeros(2, 2))


def test_quantile_shifts_restore_nominal_coverage():
    """Forecasts biased and too narrow for N(0, 1) targets: after the shifts, each level's
    coverage on fresh draws of the same distribution is its nominal level."""
    g = torch.Generator().manual_seed(0)
    q = torch.tensor([0.1, 0.5, 0.9])
    forecast = torch.tensor([-0.2, 0.3, 0.8]).expand(4000, 2, 1, 3)  # (N, H, C, Q)
    target = torch.randn(4000, 2, 1, generator=g)
    target[:100, 1] = float("nan")  # unobserved entries are ignored
    shifts = quantile_shifts(forecast, target, q)
    assert shifts.shape == (2, 3)
    fresh = torch.randn(20000, generator=g).double()
    for h in range(2):
        for k in range(3):
            coverage = (fresh <= forecast[0, h, 0, k] + shifts[h, k]).double().mean()
            assert abs(float(coverage) - float(q[k])) < 0.02
    few = quantile_shifts(forecast[:10], target[:10], q)
    assert torch.equal(few, torch.zeros(2, 3, dtype=torch.float64))  # too few to calibrate


def test_window_data_never_trains_on_the_tail():
    values = torch.arange(40, dtype=torch.float32).view(-1, 1)
    data = WindowData(
        [values], horizon=3, context_length=5, n_lags=2, independent=False, validation_size=0.25
    )
    ahead = data.train_ends.view(-1, 1) + torch.arange(1, 4)
    targets = data.train_targets[ahead]
    observed = targets[~torch.isnan(targets)]
    assert observed.max() == 29  # rows 30..39 (the last quarter) are never a training target
    assert data.train_ends.min() == 4 and data.tail_ends.max() == 38
    tail_targets = data.tail_targets[data.tail_ends.view(-1, 1) + torch.arange(1, 4)]
    assert tail_targets[~torch.isnan(tail_targets)].min() == 30


def test_strided_tokens_are_every_strideth_step_counted_back_from_the_last():
    torch.manual_seed(0)
    net = ForecastNet(4, 1, horizon=2, quantiles=[0.5], d_model=8, context_length=12).eval()
    window = torch.randn(3, 12, 1)
    with torch.no_grad():
        strided, centre, scale = window_forecast(net, window, 4, independent=True, stride=4)
        normal = (window - centre) / scale
        tokens = lagged_inputs(normal, 4)[:, [3, 7, 11]]  # patches ending at steps 3, 7, 11
        out, _ = net(tokens)
        expected = out[:, -1] + net.window_term(normal)
    assert torch.allclose(strided, expected, atol=1e-6)


@pytest.mark.parametrize("backbone", ["aaren", "transformer", "gru"])
@pytest.mark.parametrize("stride", [1, 4])
def test_window_forecast_trains_like_the_forecast_at_every_position(backbone, stride):
    """``window_forecast`` reads the last token through the backbone's last-step route
    (``last_only``) and gathers only the strided tokens: the same forecast and the same
    gradients for every parameter as the full forward's last position (float64)."""
    torch.manual_seed(0)
    net = ForecastNet(4, 1, horizon=3, quantiles=[0.1, 0.5, 0.9], d_model=8, backbone=backbone,
                      context_length=12).double()  # fmt: skip
    window = torch.randn(5, 12, 2, dtype=torch.float64)
    forecast, centre, scale = window_forecast(net, window, 4, independent=True, stride=stride)
    got = torch.autograd.grad(forecast.square().sum(), list(net.parameters()))

    normal = ((window - centre) / scale).transpose(1, 2).reshape(10, 12, 1)
    tokens = lagged_inputs(normal, 4)[:, torch.arange(11, -1, -stride).flip(0)]
    out, _ = net(tokens)
    expected = out[:, -1] + net.window_term(normal)
    expected = expected.reshape(5, 2, 3, -1).transpose(1, 2)
    want = torch.autograd.grad(expected.square().sum(), list(net.parameters()))
    assert torch.allclose(forecast, expected, atol=1e-12)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-10)


@pytest.mark.parametrize(("length", "n_lags", "stride", "channels"), [
    (96, 16, 8, 1), (12, 4, 4, 3), (13, 3, 5, 2), (7, 1, 3, 1), (5, 8, 2, 2), (4, 2, 9, 1),
])  # fmt: skip
def test_strided_lagged_inputs_gather_exactly_the_strided_tokens(length, n_lags, stride, channels):
    series = torch.randn(2, 3, length, channels)
    keep = torch.arange(length - 1, -1, -stride).flip(0)
    want = lagged_inputs(series, n_lags)[..., keep, :]
    assert torch.equal(strided_lagged_inputs(series, n_lags, stride), want)
