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
    train_forecast_net,
)


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
    inputs = [lagged_inputs(s, 4) for s in series]
    net = ForecastNet(4, 1, horizon=4, quantiles=[0.1, 0.5, 0.9], backbone=backbone, d_model=16)
    history = train_forecast_net(
        net, inputs, series, max_epochs=40, chunk_length=64, lr=1e-2, generator=g
    )
    assert history[-1] < 0.15 * history[0]
    # the median forecast of the next steps tracks the clean sine
    test = sine_series(232, 16, 0.5, 0.0, g)
    with torch.no_grad():
        forecast, _ = net(lagged_inputs(test[:200], 4).unsqueeze(0))
    median = forecast[0, -1, :, 0, 1]
    assert (median - test[200:204, 0]).abs().max() < 0.3


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
    inputs = [lagged_inputs(s, 4) for s in series]
    net = ForecastNet(4, 1, horizon=2, quantiles=[0.5], d_model=16)
    scores: list[float] = []
    history = train_forecast_net(
        net,
        inputs,
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
    # the restored weights are the best validation epoch's, not the last epoch's
    from aaren_ts.estimators._forecast_net import _validation_loss, future_targets

    batch = torch.stack(inputs)
    future = future_targets(torch.stack(series), 2)
    rows = torch.arange(120).view(-1, 1) + torch.arange(1, 3)
    tail = (rows >= 90).view(1, 120, 2, 1)
    valid = torch.where(tail, future, torch.full_like(future, float("nan")))
    restored = _validation_loss(net, [(batch, None, valid)])
    assert restored == pytest.approx(min(scores), rel=1e-5)
