"""The network behind the forecasters: embedding, a causal backbone, a multi-horizon quantile head.

At every time step ``t`` the network reads the observation at ``t`` (scaled target channels,
then any exogenous channels) and emits quantile forecasts of the targets at ``t+1 .. t+H``
(a direct, many-to-many multi-horizon output). Because the backbone is causal and its state
explicit, the forecast after any stream of observations is the head applied to the last
step's output, whether the history was read in one parallel pass, in chunks, or one step at
a time (``aaren_ts.nn`` contracts).

Training (``train_forecast_net``) follows the inference path: each series is read in
consecutive chunks carrying the detached state (truncated backpropagation through time), with
the pinball loss at every position whose targets are observed.

Pure torch: no sktime here, so the same code serves every estimator front end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..nn import detach_state, make_backbone


class ForecastNet(nn.Module):
    """Embedding -> backbone -> ``(horizon, n_targets, n_quantiles)`` head at every step.

    Parameters
    ----------
    n_inputs : int
        Features per time step (target channels plus exogenous channels).
    n_targets : int
        Target channels forecast by the head.
    horizon : int
        Largest forecast step.
    quantiles : sequence of float
        Quantile levels in (0, 1) the head predicts, in increasing order.
    backbone : {"aaren", "transformer", "gru"}
    d_model, n_layers, n_heads : int
    dropout : float
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
    ) -> None:
        super().__init__()
        self.n_targets = n_targets
        self.horizon = horizon
        self.register_buffer("quantiles", torch.tensor(list(quantiles), dtype=torch.float32))
        self.embed = nn.Linear(n_inputs, d_model)
        self.backbone = make_backbone(backbone, d_model, n_layers, n_heads, dropout=dropout)
        self.head = nn.Linear(d_model, horizon * n_targets * len(quantiles))

    def _read_out(self, hidden: torch.Tensor) -> torch.Tensor:
        out = self.head(hidden)
        return out.unflatten(-1, (self.horizon, self.n_targets, self.quantiles.numel()))

    def init_state(self, batch: int, device: torch.device | str | None = None) -> Any:
        return self.backbone.init_state(batch, device)

    def forward(self, inputs: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """``inputs`` ``(B, T, n_inputs)`` -> forecasts ``(B, T, H, n_targets, Q)``, state."""
        hidden, state = self.backbone(self.embed(inputs), state)
        return self._read_out(hidden), state

    def step(self, inputs_t: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """One step ``(B, n_inputs)`` -> forecasts ``(B, H, n_targets, Q)``, state."""
        hidden, state = self.backbone.step(self.embed(inputs_t), state)
        return self._read_out(hidden), state


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


def train_forecast_net(
    net: ForecastNet,
    inputs: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    *,
    max_epochs: int,
    chunk_length: int,
    lr: float,
    generator: torch.Generator,
    on_epoch: Callable[[int, float], None] | None = None,
    validation_size: float = 0.0,
    patience: int = 5,
    validation_history: list[float] | None = None,
) -> list[float]:
    """Fit ``net`` on series read in consecutive chunks with carried, detached state.

    ``inputs[i]`` ``(T_i, n_inputs)`` and ``targets[i]`` ``(T_i, n_targets)`` on the net's
    device. Series of equal length train together as one batch; batches are visited in a
    random order drawn from ``generator``. Returns the mean training loss of each epoch.

    ``validation_size`` > 0 holds out that fraction of every series' tail: no training loss
    looks at targets there. After each epoch the whole series is read (the tail's forecasts
    see the full history, as at inference) and scored on the tail; training stops after
    ``patience`` epochs without improvement, and the best weights are restored. Each
    epoch's validation loss is appended to ``validation_history`` when one is given.
    """
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    groups: dict[int, list[int]] = {}
    for i, x in enumerate(inputs):
        groups.setdefault(x.shape[0], []).append(i)
    batches = []
    for idx in groups.values():
        x = torch.stack([inputs[i] for i in idx])
        future = future_targets(torch.stack([targets[i] for i in idx]), net.horizon)
        length = x.shape[1]
        tail = round(length * validation_size)
        # position t, step h targets row t + h: training sees rows before the tail only
        target_row = torch.arange(length).view(-1, 1) + torch.arange(1, net.horizon + 1)
        in_tail = (target_row >= length - tail).to(future.device).view(1, length, -1, 1)
        nan = torch.full_like(future, float("nan"))
        train_future = torch.where(in_tail, nan, future)
        valid_future = torch.where(in_tail, future, nan) if tail else None
        batches.append((x, train_future, valid_future))
    validating = any(v is not None for _, _, v in batches)
    best, best_weights, waited = float("inf"), None, 0
    history = []
    net.train()
    for epoch in range(max_epochs):
        total, count = 0.0, 0
        for b in torch.randperm(len(batches), generator=generator).tolist():
            x, future, _ = batches[b]
            state = None
            for start in range(0, x.shape[1], chunk_length):
                stop = start + chunk_length
                forecast, state = net(x[:, start:stop], state)
                loss = pinball_loss(forecast, future[:, start:stop], net.quantiles)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                state = detach_state(state)
                total += float(loss.detach())
                count += 1
        history.append(total / max(count, 1))
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
        if validating:
            score = _validation_loss(net, batches)
            if validation_history is not None:
                validation_history.append(score)
            if score < best:
                best, waited = score, 0
                best_weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                waited += 1
                if waited >= patience:
                    break
    if best_weights is not None:
        net.load_state_dict(best_weights)
    net.eval()
    return history


def _validation_loss(net: ForecastNet, batches) -> float:
    """Pinball loss on the held-out tails, each series read whole (as at inference)."""
    net.eval()
    losses = []
    with torch.no_grad():
        for x, _, valid_future in batches:
            if valid_future is not None:
                forecast, _ = net(x)
                losses.append(float(pinball_loss(forecast, valid_future, net.quantiles)))
    net.train()
    return sum(losses) / len(losses)
