"""The full-history network: causal local scaling, the backbone over the whole history, a linear
path over the most recent values.

Per-window normalisation (RevIN) is what makes windowed forecasters accurate on drifting
series: every window is read in the units of its own mean and standard deviation, and its
forecast is mapped back with them. ``StreamNet`` does the same causally, so that it streams:

- at every step ``t`` the mean ``mu_t`` and standard deviation ``sd_t`` of the last
  ``local_window`` observations (fewer at the series start) are the local units;
- the token of step ``t`` carries its last ``n_lags`` values in those units, ``log sd_t`` and
  the mean's move over the token's span ``(mu_t - mu_{t - n_lags}) / sd_t``, then any
  exogenous channels; the backbone reads the tokens of the whole history;
- the forecast of ``t + h`` is ``x_t + sd_t * (head(backbone_t) + linear(last local_window
  values in local units)) + known-future term``, per channel with shared weights: read
  from the last value ``x_t`` (as NLinear does), with the head and the linear path starting
  at zero, so that an untrained network is the naive forecast and training learns what
  improves on it (on a random walk such as exchange rates, little does).

Everything a step needs lives in ``StreamState``: the last rows (a constant number, whatever
the history length) and the backbone's state. ``forward`` over a block of rows after a state
is the same function however the history is cut into blocks, so one pass, training chunks
and a live stream of single rows agree (the statistics are computed in float64 from the same
rows every time).

``local_window=None`` keeps the training statistics (no local scaling and no linear path):
each token is then the last ``n_lags`` values, the earlier full-history model.

Pure torch: no sktime here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ..nn._fast import call
from ._forecast_net import ForecastNet

# Floor of the local variance, in units of the training standard deviation (as RevIN's eps):
# a locally constant stretch gives a scale of about 0.003, not 0.
LOCAL_VARIANCE_FLOOR = 1e-5


class StreamState(NamedTuple):
    """What a stream carries between rows.

    ``recent``: ``(B, R, C)`` the last ``R`` rows read (globally scaled), NaN for rows before
    the series start; ``R = StreamNet.memory`` is fixed by the network, not by the history.
    ``backbone``: the backbone's state.
    """

    recent: torch.Tensor
    backbone: Any


class LocalFrame(NamedTuple):
    """The network's inputs for a block of rows, and the local units of its forecasts."""

    tokens: torch.Tensor  # (B, T, n_features)
    window: torch.Tensor | None  # (B, T, C, L): the last L values in local units
    centre: torch.Tensor  # (B, T, C): the last value x_t (0 without local scaling)
    scale: torch.Tensor  # (B, T, C): sd_t (1 without local scaling)


def recency_rates(n_heads: int) -> torch.Tensor:
    """Initial per-head recency rates at several time scales: 0 (the whole history, evenly)
    and geometric rates from 1e-3 to 1e-1 per step (memories of about 1000 down to 10 steps).
    """
    if n_heads == 1:
        return torch.zeros(1)
    return torch.cat([torch.zeros(1), torch.logspace(-3, -1, n_heads - 1)])


class StreamNet(nn.Module):
    """Causal local scaling + backbone + linear path (see the module docstring).

    Parameters
    ----------
    n_targets : int
        Channels of each sequence (1 when channels are read independently).
    horizon : int
    quantiles : sequence of float
    n_lags : int, default 16
        Values each token carries.
    local_window : int or None, default 96
        Observations behind the local statistics and the linear path; None: no local scaling.
    n_exog, n_future : int, default 0
        Exogenous channels in every token, and exogenous channels known over the horizon.
    backbone, d_model, n_layers, n_heads, dropout
        As ``ForecastNet``.
    recency : bool, default True
        Aaren only: a learnable recency rate per head, initialised at several time scales
        (``recency_rates``), so that some heads read the recent past and others the long past.
    """

    def __init__(
        self,
        n_targets: int,
        horizon: int,
        quantiles: Sequence[float],
        *,
        n_lags: int = 16,
        local_window: int | None = 96,
        n_exog: int = 0,
        n_future: int = 0,
        backbone: str = "aaren",
        d_model: int = 32,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
        recency: bool = True,
    ) -> None:
        super().__init__()
        self.n_targets, self.horizon = n_targets, horizon
        self.n_lags, self.local_window = n_lags, local_window
        self.n_exog, self.n_future = n_exog, n_future
        local = local_window is not None
        n_features = n_targets * (n_lags + (2 if local else 0)) + n_exog
        self.core = ForecastNet(
            n_inputs=n_features,
            n_targets=n_targets,
            horizon=horizon,
            quantiles=quantiles,
            backbone=backbone,
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            dropout=dropout,
            n_future=n_future,
            context_length=local_window,
            recency=recency and backbone == "aaren",
        )
        if local:
            # the head and the linear path start at zero: the network starts as the naive
            # forecast (the last value) and learns what improves on it
            for layer in (self.core.head, self.core.window_linear):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        if recency and backbone == "aaren":
            with torch.no_grad():
                for layer in self.core.backbone.layers:
                    layer.attn.recency_rate.copy_(recency_rates(n_heads))
        # rows a step needs: the local window behind the mean n_lags steps ago, and the lags
        lags = max(n_lags, local_window or 0)
        self.memory = max(lags - 1, (local_window - 1 + n_lags) if local else 0)

    @property
    def quantiles(self) -> torch.Tensor:
        return self._modules["core"]._buffers["quantiles"]  # read at every streamed row

    def future_term(self, future: torch.Tensor) -> torch.Tensor:
        """``future`` ``(..., H, n_future)`` (NaN: unknown) -> ``(..., H, n_targets, Q)``, in
        the rows' (globally scaled) units: a known covariate's effect does not depend on the
        local scale (the forecast in local units adds it divided by the scale)."""
        return self.core.future_term(future)

    def init_state(self, batch: int, device: torch.device | str | None = None) -> StreamState:
        """The state before any row: no recent rows (NaN), the backbone's empty state."""
        device = device if device is not None else self.core.quantiles.device
        recent = torch.full((batch, self.memory, self.n_targets), float("nan"), device=device)
        return StreamState(recent, self.core.init_state(batch, device))

    # ------------------------------------------------------------------ features
    def _local_moments(self, rows: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of the ``local_window`` rows ending at each of the last
        ``count`` rows of ``rows`` ``(B, N, C)`` float64 (NaN rows are absent)."""
        width = int(self.local_window)
        windows = rows[:, rows.shape[1] - (count + width - 1) :].unfold(1, width, 1)
        # rows are finite or NaN (absent): zeroing NaN is zeroing the absent ones
        found = (~torch.isnan(windows)).sum(-1)
        n = found.clamp(min=1)
        mean = windows.nan_to_num(0.0).sum(-1) / n
        # two passes (mean, then squared deviations): exact for any level, unlike E[x^2]-E[x]^2
        deviation = (windows - mean.unsqueeze(-1)).nan_to_num(0.0)
        var = (deviation * deviation).sum(-1) / n  # a product: square() runs as pow, slower
        return mean.masked_fill(found == 0, float("nan")), torch.sqrt(var + LOCAL_VARIANCE_FLOOR)

    def frame(
        self, values: torch.Tensor, recent: torch.Tensor, exog: torch.Tensor | None = None
    ) -> LocalFrame:
        """Tokens, local window and local units of the rows ``values`` ``(B, T, C)`` that
        follow ``recent`` ``(B, R, C)``; ``exog`` ``(B, T, n_exog)``."""
        return self._frame(values, torch.cat([recent.to(values.dtype), values], 1), exog)

    def _frame(
        self, values: torch.Tensor, joined: torch.Tensor, exog: torch.Tensor | None
    ) -> LocalFrame:
        """``frame`` given the recent rows and ``values`` joined ``(B, R + T, C)``."""
        count = values.shape[1]
        if (
            count == 1
            and self.local_window is not None
            and values.device.type == "cpu"
            and values.dtype in (torch.float32, torch.float64)
            and not torch.is_grad_enabled()
        ):
            # a live stream's row: the same statistics in NumPy (see _local_frame_numpy)
            tokens, window, centre, scale = _local_frame_numpy(
                joined.numpy(), self.n_lags, int(self.local_window), _NUMPY[values.dtype]
            )
            tokens = torch.from_numpy(tokens)
            if exog is not None and self.n_exog:
                tokens = torch.cat([tokens, exog.to(values.dtype)], -1)
            return LocalFrame(tokens, torch.from_numpy(window), torch.from_numpy(centre),
                              torch.from_numpy(scale))  # fmt: skip
        rows = joined.double()
        span = max(self.n_lags, self.local_window or 0)
        # lags[b, t, c, j] = value of row t - j (newest first), NaN before the series start
        lags = rows[:, rows.shape[1] - (count + span - 1) :].unfold(1, span, 1).flip(-1)
        if self.local_window is None:
            tokens = torch.nan_to_num(lags[..., : self.n_lags], nan=0.0)
            tokens = tokens.transpose(-1, -2).flatten(-2)  # lag-major: lag 0 of every channel, ...
            centre = values.new_zeros(values.shape)
            scale = values.new_ones(values.shape)
            window = None
        else:
            mean, sd = self._local_moments(rows, count + self.n_lags)
            mu, sd = mean[:, self.n_lags :], sd[:, self.n_lags :]
            local = torch.nan_to_num((lags - mu.unsqueeze(-1)) / sd.unsqueeze(-1), nan=0.0)
            moved = torch.nan_to_num((mu - mean[:, :count]) / sd, nan=0.0)
            tokens = torch.cat(
                [local[..., : self.n_lags].transpose(-1, -2).flatten(-2), sd.log(), moved], -1
            )
            window = local[..., : self.local_window].to(values.dtype)
            # forecasts are read from the last value, in the local scale
            centre, scale = lags[..., 0].to(values.dtype), sd.to(values.dtype)
        tokens = tokens.to(values.dtype)
        if exog is not None and self.n_exog:
            tokens = torch.cat([tokens, exog.to(values.dtype)], -1)
        return LocalFrame(tokens, window, centre, scale)

    # ------------------------------------------------------------------ reading rows
    def forward(
        self,
        values: torch.Tensor,
        state: StreamState | None = None,
        exog: torch.Tensor | None = None,
        future: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, StreamState]:
        """Read the rows ``values`` ``(B, T, C)`` (globally scaled) after ``state``.

        ``exog`` ``(B, T, n_exog)``: past covariates of each row; ``future``
        ``(B, T, H, n_future)``: covariates at ``t + h`` (NaN: unknown).

        Returns the forecasts ``(B, T, H, C, Q)`` in local units, the local centre and scale
        ``(B, T, C)`` (``forecast * scale + centre`` is in the rows' units) and the state
        after the last row. One row with a state takes the backbone's O(1) ``step``.
        """
        batch, count, _ = values.shape
        if state is None:
            state = self.init_state(batch, values.device)
        joined = torch.cat([state.recent.to(values.dtype), values], 1)
        local = self._frame(values, joined, exog)
        layers = self._modules["core"]._modules  # see aaren_ts.nn._fast
        embedded = call(layers["embed"], local.tokens)
        if count == 1:
            hidden, backbone_state = layers["backbone"].step(embedded[:, 0], state.backbone)
            hidden = hidden.unsqueeze(1)
        else:
            hidden, backbone_state = layers["backbone"](embedded, state.backbone)
        out = call(layers["head"], hidden).unflatten(-1, (self.horizon, self.n_targets, -1))
        if local.window is not None:
            # (B, T, C, L) -> (B, T, C, H * Q) -> (B, T, H, C, Q)
            linear = call(layers["window_linear"], local.window).unflatten(-1, (self.horizon, -1))
            out = out + linear.transpose(2, 3)
        if future is not None and self.n_future:
            out = out + self.future_term(future) / local.scale[:, :, None, :, None]
        recent = joined[:, joined.shape[1] - self.memory :]
        return out, local.centre, local.scale, StreamState(recent, backbone_state)


_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


@functools.lru_cache(maxsize=32)
def _window_positions(n_lags: int, width: int, length: int) -> np.ndarray:
    """``(n_lags + 1, width)``: the row positions of the windows ending at the last
    ``n_lags + 1`` of ``length`` rows (read-only)."""
    ends = np.arange(length - n_lags - 1, length)
    positions = ends[:, None] + np.arange(1 - width, 1)[None, :]
    positions.setflags(write=False)
    return positions


def _local_frame_numpy(
    joined: np.ndarray, n_lags: int, width: int, dtype: type
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``StreamNet._frame`` of the last row of ``joined`` ``(B, R + 1, C)`` with local
    scaling, in NumPy: ``tokens`` ``(B, 1, n_features)``, ``window`` ``(B, 1, C, width)``,
    ``centre``, ``scale`` ``(B, 1, C)``, all in ``dtype``.

    A stream reads one row per tick, and the torch version is about forty calls on arrays
    of a few dozen numbers, each costing several times its NumPy equivalent. The same
    float64 steps (masked sums over the windows, two-pass variance, the same NaN rules;
    rows are finite or NaN, as everywhere in this module, so zeroing NaN is
    ``nan_to_num``): equal to the torch frame to float64 rounding of the window sums
    (tested), and so to float32 rounding after the final cast.
    """
    rows = joined.astype(np.float64)
    span = max(n_lags, width)
    length = rows.shape[1]
    # lags[b, 0, c, j] = value of the last row - j (newest first), NaN before the series start
    lags = rows[:, length - span :].transpose(0, 2, 1)[:, None, :, ::-1]  # (B, 1, C, span)
    # local moments of the n_lags + 1 windows ending at the last n_lags + 1 rows
    windows = rows[:, _window_positions(n_lags, width, length)]  # (B, n_lags + 1, width, C)
    absent = np.isnan(windows)
    n = np.maximum(width - absent.sum(2), 1)
    mean = np.where(absent, 0.0, windows).sum(2) / n
    deviation = np.where(absent, 0.0, windows - mean[:, :, None])
    var = (deviation * deviation).sum(2) / n
    mean[absent.all(2)] = np.nan  # no row in the window: no mean
    sd = np.sqrt(var[:, n_lags:] + LOCAL_VARIANCE_FLOOR)  # (B, 1, C)
    mu = mean[:, n_lags:]
    local = (lags - mu[..., None]) / sd[..., None]
    local[np.isnan(local)] = 0.0
    moved = (mu - mean[:, :1]) / sd
    moved[np.isnan(moved)] = 0.0
    lagged = local[..., :n_lags].transpose(0, 1, 3, 2).reshape(*local.shape[:2], -1)
    tokens = np.concatenate([lagged, np.log(sd), moved], -1)
    window = local[..., :width].astype(dtype)
    return tokens.astype(dtype), window, lags[..., 0].astype(dtype), sd.astype(dtype)


def batched_state(states: Sequence[Any]) -> Any:
    """Several streams' states as one, concatenated along the batch (first) dimension of
    every tensor; tuples, NamedTuples, lists and dicts are followed, other leaves must be
    equal. For states whose tensors are all batch-first (``StreamState`` of the Aaren
    backbone: the recent rows, and per layer the scan state and the last token time)."""
    first = states[0]
    if len(states) == 1:  # nothing to join (and no copy)
        return first
    if isinstance(first, torch.Tensor):
        return torch.cat(list(states))
    if isinstance(first, tuple) and hasattr(first, "_fields"):
        return type(first)(*(batched_state(parts) for parts in zip(*states, strict=True)))
    if isinstance(first, (tuple, list)):
        return type(first)(batched_state(parts) for parts in zip(*states, strict=True))
    if isinstance(first, dict):
        return {key: batched_state([s[key] for s in states]) for key in first}
    if any(s != first for s in states[1:]):
        raise ValueError(f"cannot batch states that differ in {first!r}")
    return first


def split_state(state: Any, counts: Sequence[int]) -> list[Any]:
    """Undo ``batched_state``: one state per stream, of ``counts`` batch rows each."""
    if len(counts) == 1:  # one stream: its state as it is (any backbone's layout)
        return [state]
    if isinstance(state, torch.Tensor):
        return list(state.split(list(counts)))
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        parts = [split_state(part, counts) for part in state]
        return [type(state)(*row) for row in zip(*parts, strict=True)]
    if isinstance(state, (tuple, list)):
        parts = [split_state(part, counts) for part in state]
        return [type(state)(row) for row in zip(*parts, strict=True)]
    if isinstance(state, dict):
        parts = {key: split_state(value, counts) for key, value in state.items()}
        return [{key: parts[key][i] for key in state} for i in range(len(counts))]
    return [state] * len(counts)
