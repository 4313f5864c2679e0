"""The full-history network: causal local units against a float64 loop, one pass equals
blocks and single steps, level invariance, the naive start and constant-size state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aaren_ts.estimators._forecast_training import in_row_units
from aaren_ts.estimators._stream_net import LOCAL_VARIANCE_FLOOR, StreamNet


def local_reference(x: np.ndarray, window: int, n_lags: int):
    """Tokens, linear-path window, centre and scale of every row of ``x`` ``(T, C)``, by
    explicit float64 loops over each row's trailing observations."""
    length, channels = x.shape

    def moments(t):
        part = x[max(0, t - window + 1) : t + 1]
        mean = part.mean(0)
        return mean, np.sqrt(((part - mean) ** 2).mean(0) + LOCAL_VARIANCE_FLOOR)

    span = max(n_lags, window)
    tokens, windows, centres, scales = [], [], [], []
    for t in range(length):
        mean, sd = moments(t)
        local = np.zeros((span, channels))
        for j in range(span):
            if t - j >= 0:
                local[j] = (x[t - j] - mean) / sd
        moved = (mean - moments(t - n_lags)[0]) / sd if t - n_lags >= 0 else np.zeros(channels)
        lag_major = local[:n_lags].reshape(-1)  # lag 0 of every channel, then lag 1, ...
        tokens.append(np.concatenate([lag_major, np.log(sd), moved]))
        windows.append(local[:window].T)  # (C, L)
        centres.append(x[t])
        scales.append(sd)
    return tuple(map(np.array, (tokens, windows, centres, scales)))


def test_local_units_equal_a_float64_loop():
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(70, 2)), 0) * np.array([1.0, 30.0]) + np.array([0.0, 500.0])
    net = StreamNet(2, 3, [0.5], n_lags=4, local_window=9, d_model=8, n_heads=2)
    values = torch.tensor(x, dtype=torch.float32).unsqueeze(0)
    frame = net.frame(values, net.init_state(1).recent)
    tokens, windows, centres, scales = local_reference(
        values[0].double().numpy(), window=9, n_lags=4
    )
    np.testing.assert_allclose(frame.tokens[0].numpy(), tokens, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(frame.window[0].numpy(), windows, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(frame.centre[0].numpy(), centres, rtol=1e-6)
    np.testing.assert_allclose(frame.scale[0].numpy(), scales, rtol=1e-5)


def test_fixed_scaling_tokens_are_the_raw_lags():
    x = torch.arange(1.0, 7.0).view(1, 6, 1)
    net = StreamNet(1, 2, [0.5], n_lags=3, local_window=None, d_model=8, n_heads=2)
    frame = net.frame(x, net.init_state(1).recent)
    assert frame.tokens[0].tolist()[:3] == [[1, 0, 0], [2, 1, 0], [3, 2, 1]]
    assert frame.window is None and (frame.scale == 1).all() and (frame.centre == 0).all()
    assert net.memory == 2


@pytest.mark.parametrize("backbone", ["aaren", "transformer", "gru"])
@pytest.mark.parametrize("local_window", [12, None], ids=["local", "fixed"])
def test_one_pass_equals_blocks_and_single_steps(backbone, local_window):
    torch.manual_seed(0)
    net = StreamNet(
        2,
        4,
        [0.1, 0.5, 0.9],
        n_lags=5,
        local_window=local_window,
        n_exog=1,
        n_future=1,
        backbone=backbone,
        d_model=8,
        n_heads=2,
    ).eval()
    # trained-looking weights: the local head starts at zero, which would hide errors
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(3, 60, 2).cumsum(1) * 5 + 100
    exog, future = torch.randn(3, 60, 1), torch.randn(3, 60, 4, 1)

    def read(parts):
        state, out = None, []
        for a, b in parts:
            forecast, centre, scale, state = net(x[:, a:b], state, exog[:, a:b], future[:, a:b])
            out.append(in_row_units(forecast, centre, scale))
        return torch.cat(out, 1), state

    with torch.no_grad():
        whole, state = read([(0, 60)])
        blocks, _ = read([(0, 7), (7, 8), (8, 41), (41, 60)])
        steps, _ = read([(t, t + 1) for t in range(60)])
    torch.testing.assert_close(blocks, whole, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(steps, whole, rtol=1e-5, atol=1e-4)
    assert state.recent.shape == (3, net.memory, 2)  # whatever the history's length


def test_rows_after_t_do_not_change_the_forecast_at_t():
    torch.manual_seed(1)
    net = StreamNet(1, 3, [0.5], n_lags=4, local_window=10, d_model=8, n_heads=2).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(1, 50, 1)
        changed = x.clone()
        changed[:, 30:] += 10.0
        a = in_row_units(*net(x)[:3])
        b = in_row_units(*net(changed)[:3])
    torch.testing.assert_close(a[:, :30], b[:, :30])
    assert not torch.allclose(a[:, 30:], b[:, 30:])


def test_a_level_shift_moves_the_forecast_by_the_same_amount():
    """Local units: the tokens and the linear path do not see the level, and the forecast is
    read from the last value, so a series moved by b is forecast moved by b."""
    torch.manual_seed(2)
    net = StreamNet(1, 3, [0.1, 0.5, 0.9], n_lags=4, local_window=10, d_model=8, n_heads=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(1, 40, 1, dtype=torch.float64)
        net = net.double().eval()
        a = in_row_units(*net(x)[:3])
        b = in_row_units(*net(x + 1000.0)[:3])
    torch.testing.assert_close(b, a + 1000.0)


def test_the_untrained_network_is_the_naive_forecast():
    net = StreamNet(2, 5, [0.1, 0.5, 0.9], n_lags=4, local_window=8, d_model=8, n_heads=2)
    x = torch.randn(2, 30, 2).cumsum(1)
    with torch.no_grad():
        forecast = in_row_units(*net(x)[:3])  # (B, T, H, C, Q)
    expected = x[:, :, None, :, None].expand_as(forecast)
    torch.testing.assert_close(forecast, expected)


def test_recency_starts_at_several_time_scales():
    net = StreamNet(1, 2, [0.5], d_model=8, n_heads=4)
    rates = net.core.backbone.layers[0].attn.recency_rate.detach()
    assert rates[0] == 0 and torch.allclose(rates[1:], torch.tensor([1e-3, 1e-2, 1e-1]))
    assert math.isclose(float(rates[1:].log10().diff().mean()), 1.0, rel_tol=1e-5)
    plain = StreamNet(1, 2, [0.5], d_model=8, n_heads=4, recency=False)
    assert plain.core.backbone.layers[0].attn.recency_rate is None


@pytest.mark.parametrize(
    ("n_lags", "window", "channels", "batch"), [(4, 48, 1, 1), (16, 9, 3, 2), (8, 3, 2, 3)]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_streamed_rows_numpy_frame_equals_the_torch_frame(n_lags, window, channels, batch, dtype):
    """A single row read without gradients takes the NumPy frame; with gradients enabled
    the torch one runs. Both agree on every output, at the series start (NaN rows) too."""
    net = StreamNet(channels, 3, [0.1, 0.5, 0.9], n_lags=n_lags, local_window=window,
                    d_model=8, n_heads=2)  # fmt: skip
    g = torch.Generator().manual_seed(n_lags + window)
    length = net.memory + 1
    for absent in [length - 1, length - 2, window // 2, 1, 0]:
        scale = 10.0 ** float(torch.randint(-3, 4, (), generator=g))
        joined = (torch.randn(batch, length, channels, generator=g) * scale + 100).to(dtype)
        joined[:, :absent] = float("nan")  # rows before the series start
        values = joined[:, -1:]
        with torch.no_grad():
            streamed = net._frame(values, joined, None)
        with torch.enable_grad():
            reference = net._frame(values, joined, None)
        for a, b in zip(streamed, reference, strict=True):
            assert a.dtype == b.dtype == dtype and a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
