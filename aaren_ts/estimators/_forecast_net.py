"""The network behind the forecasters: embedding, a causal backbone, a multi-horizon quantile head.

At every time step ``t`` the network reads the observation at ``t`` (scaled target channels,
then any exogenous channels) and emits quantile forecasts of the targets at ``t+1 .. t+H``
(a direct, many-to-many multi-horizon output). Because the backbone is causal and its state
explicit, the forecast after any stream of observations is the head applied to the last
step's output, whether the history was read in one parallel pass, in chunks, or one step at
a time (``aaren_ts.nn`` contracts).

Training lives in ``_forecast_training``.

Pure torch: no sktime here, so the same code serves every estimator front end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..nn import make_backbone


class ForecastNet(nn.Module):
    """Embedding -> backbone -> ``(horizon, n_targets, n_quantiles)`` head at every step.

    Two optional terms are added to the head's output, both linear and both outside the
    recurrence, so streaming stays exact:

    - ``n_future`` > 0: exogenous channels known over the horizon. Step ``h`` of the forecast
      gets ``future[..., h, :] @ W_h`` (one weight matrix per step), so the forecast of
      ``t + h`` reads the covariates at ``t + h``. NaN covariates (unknown) contribute 0.
    - ``context_length`` = L: a linear map from each target channel's last L (normalised)
      values to its forecasts, shared across channels (the RevIN + linear baseline that
      windowed forecasters are measured against). On ETTh1 (horizon 96, lookback 96,
      per-channel), adding it took the Aaren backbone's test MSE after one epoch from 0.457
      to 0.395 (``benchmarks/RESULTS.md``).

    Parameters
    ----------
    n_inputs : int
        Features per time step (lagged target channels plus exogenous channels).
    n_targets : int
        Target channels forecast by the head.
    horizon : int
        Largest forecast step.
    quantiles : sequence of float
        Quantile levels in (0, 1) the head predicts, in increasing order.
    backbone : {"aaren", "transformer", "gru"}
    d_model, n_layers, n_heads : int
    dropout : float
    n_future : int, default 0
        Exogenous channels known over the horizon.
    context_length : int, optional
        Window length of the windowed mode (adds the window's linear path).
    recency : bool, default False
        Aaren backbone only: a learnable recency rate per head (``AarenAttention``).
    """

    def __init__(
        self,
        n_inputs: int,
        n_targets: int,
        horizon: int,
        quantiles: Sequence[float],
        backbone: str = "aaren",
        d_model: int = 32,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
        n_future: int = 0,
        context_length: int | None = None,
        recency: bool = False,
    ) -> None:
        super().__init__()
        self.n_targets = n_targets
        self.horizon = horizon
        self.n_future = n_future
        self.context_length = context_length
        self.register_buffer("quantiles", torch.tensor(list(quantiles), dtype=torch.float32))
        n_q = len(quantiles)
        self.embed = nn.Linear(n_inputs, d_model)
        extra = {"recency": True} if recency else {}
        self.backbone = make_backbone(
            backbone, d_model, n_layers, n_heads, dropout=dropout, **extra
        )
        self.head = nn.Linear(d_model, horizon * n_targets * n_q)
        if n_future:
            # starts at zero: the known-future term is learned as a correction
            self.future_weight = nn.Parameter(torch.zeros(horizon, n_future, n_targets * n_q))
        if context_length is not None:
            self.window_linear = nn.Linear(context_length, horizon * n_q)

    def _read_out(self, hidden: torch.Tensor) -> torch.Tensor:
        out = self.head(hidden)
        return out.unflatten(-1, (self.horizon, self.n_targets, self.quantiles.numel()))

    def future_term(self, future: torch.Tensor) -> torch.Tensor:
        """``future`` ``(..., H, n_future)`` (NaN: unknown) -> ``(..., H, n_targets, Q)``."""
        term = torch.einsum("...hf,hfo->...ho", torch.nan_to_num(future), self.future_weight)
        return term.unflatten(-1, (self.n_targets, self.quantiles.numel()))

    def window_term(self, window: torch.Tensor) -> torch.Tensor:
        """``window`` ``(B, L, n_targets)`` -> ``(B, H, n_targets, Q)`` (the linear path)."""
        out = self.window_linear(window.transpose(1, 2))  # (B, n_targets, H * Q)
        return out.unflatten(-1, (self.horizon, self.quantiles.numel())).transpose(1, 2)

    def init_state(self, batch: int, device: torch.device | str | None = None) -> Any:
        return self.backbone.init_state(batch, device)

    def forward(
        self,
        inputs: torch.Tensor,
        state: Any = None,
        future: torch.Tensor | None = None,
        *,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, Any]:
        """``inputs`` ``(B, T, n_inputs)`` -> forecasts ``(B, T, H, n_targets, Q)``, state.

        ``future`` ``(B, T, H, n_future)``: covariates at ``t + h`` for every position.
        ``last_only``: the forecast from the last position only, ``(B, H, n_targets, Q)``
        (``future`` then ``(B, H, n_future)``), through the backbone's cheaper last-step
        route; the state is the same.
        """
        hidden, state = self.backbone(self.embed(inputs), state, last_only=last_only)
        out = self._read_out(hidden)
        if future is not None and self.n_future:
            out = out + self.future_term(future)
        return out, state

    def step(
        self, inputs_t: torch.Tensor, state: Any = None, future_t: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Any]:
        """One step ``(B, n_inputs)`` -> forecasts ``(B, H, n_targets, Q)``, state."""
        hidden, state = self.backbone.step(self.embed(inputs_t), state)
        out = self._read_out(hidden)
        if future_t is not None and self.n_future:
            out = out + self.future_term(future_t)
        return out, state


def pinball_loss(
    forecast: torch.Tensor, target: torch.Tensor, quantiles: torch.Tensor
) -> torch.Tensor:
    """Mean quantile (pinball) loss over the observed targets.

    ``forecast`` ``(..., Q)``, ``target`` ``(...)`` with NaN where unobserved.
    """
    observed = ~torch.isnan(target)
    if not observed.any():
        return forecast.sum() * 0.0  # keeps the graph; nothing to learn from
    error = torch.nan_to_num(target).unsqueeze(-1) - forecast
    loss = torch.maximum(quantiles * error, (quantiles - 1) * error)
    return (loss * observed.unsqueeze(-1)).sum() / (observed.sum() * quantiles.numel())


def future_targets(series: torch.Tensor, horizon: int) -> torch.Tensor:
    """``(B, T, C)`` -> ``(B, T, horizon, C)``: entry ``[b, t, h-1]`` is ``series[b, t+h]``,
    NaN past the end."""
    batch, length, channels = series.shape
    padded = torch.cat([series, series.new_full((batch, horizon, channels), float("nan"))], 1)
    return torch.stack([padded[:, h : h + length] for h in range(1, horizon + 1)], dim=2)


def lagged_inputs(series: torch.Tensor, n_lags: int) -> torch.Tensor:
    """``(..., T, C)`` -> ``(..., T, C * n_lags)``: each step sees its last ``n_lags`` values
    (newest first, zeros before the start).

    A token that carries a few recent values gives attention something order-aware to read:
    measured on a noisy sine (``tests/test_forecast_net.py``), the Aaren and Transformer
    backbones reached a pinball loss of about 0.12 from raw values and about 0.02 with four lags.
    Streaming needs only the last ``n_lags - 1`` observations, so the cost stays O(1) per step.
    """
    pad = series.new_zeros((*series.shape[:-2], n_lags - 1, series.shape[-1]))
    padded = torch.cat([pad, series], dim=-2)
    length = series.shape[-2]
    lags = [padded[..., n_lags - 1 - j : n_lags - 1 - j + length, :] for j in range(n_lags)]
    return torch.cat(lags, dim=-1)


def token_steps(length: int, stride: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The steps of a ``length``-step window that a windowed forecast reads as tokens: every
    ``stride``-th, counted back from the last, in time order ``(ceil(length / stride),)``."""
    return torch.arange(length - 1, -1, -stride, device=device).flip(0)


def strided_lagged_inputs(series: torch.Tensor, n_lags: int, stride: int) -> torch.Tensor:
    """``lagged_inputs(series, n_lags)`` at the ``token_steps`` ``(..., ceil(T / stride),
    C * n_lags)``, gathered directly: the skipped steps' tokens are never built (the same
    values)."""
    ends = token_steps(series.shape[-2], stride, series.device)  # (P,)
    pad = series.new_zeros((*series.shape[:-2], n_lags - 1, series.shape[-1]))
    padded = torch.cat([pad, series], dim=-2)
    # token at step e, lag j reads series[e - j] = padded[e + n_lags - 1 - j]
    rows = ends.unsqueeze(-1) + (n_lags - 1) - torch.arange(n_lags, device=series.device)
    return padded[..., rows, :].flatten(-2)  # (..., P, n_lags, C) -> (..., P, n_lags * C)


def window_forecast(
    net: ForecastNet,
    window: torch.Tensor,
    n_lags: int,
    independent: bool,
    x: torch.Tensor | None = None,
    future: torch.Tensor | None = None,
    stride: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The windowed mode's forecast from the last L observations only.

    ``window`` ``(B, L, C)`` (globally scaled targets) is normalised per window and channel
    (RevIN without affine weights): the backbone reads its lagged tokens (with ``x``
    ``(B, L, n_x)`` appended), the head reads the last step's output, the window's linear
    path and the known-future term (``future`` ``(B, H, n_future)``) are added. With
    ``independent`` each channel is its own sequence (channel-independent, shared weights).
    ``stride`` > 1 keeps every ``stride``-th token, counted back from the window's last step
    (with ``n_lags >= stride`` the tokens are overlapping patches, as in PatchTST): the
    backbone reads ``L / stride`` tokens instead of L.

    Returns the forecast ``(B, H, C, Q)`` in window-normalised units, and the window's
    centre and scale ``(B, 1, C)``: ``forecast * scale[..., None] + centre[..., None]`` is in
    the window's input units.
    """
    centre = window.mean(1, keepdim=True)
    scale = torch.sqrt(window.var(1, unbiased=False, keepdim=True) + 1e-5)
    normal = (window - centre) / scale
    batch, length, channels = normal.shape
    if independent:
        normal = normal.transpose(1, 2).reshape(batch * channels, length, 1)
        x = None if x is None else x.repeat_interleave(channels, 0)
        future = None if future is None else future.repeat_interleave(channels, 0)
    tokens = strided_lagged_inputs(normal, n_lags, stride)
    if x is not None:
        tokens = torch.cat([tokens, x[:, token_steps(length, stride, x.device)]], dim=-1)
    # the head reads the last token only: the backbone's last-step route gives just that
    out, _ = net(tokens, last_only=True)
    forecast = out + net.window_term(normal)
    if future is not None and net.n_future:
        forecast = forecast + net.future_term(future)
    if independent:  # (B * C, H, 1, Q) -> (B, H, C, Q)
        forecast = forecast.reshape(batch, channels, net.horizon, -1).transpose(1, 2)
    return forecast, centre, scale
