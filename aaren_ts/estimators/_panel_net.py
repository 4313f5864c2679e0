"""The network behind the panel estimators, and its training loop.

``PanelNet`` reads a multivariate series step by step: a causal convolution embeds each step
with the ``kernel_size - 1`` steps before it, a causal backbone reads the embedded sequence,
and a linear head emits outputs (class logits, or a regression value) at EVERY step, from
the backbone's output at that step (``readout="last"``) or from the mean of its outputs at
all steps so far (``readout="mean"``). The output at step ``t`` depends on steps ``0..t``
only, so:

- a series is read out at its own last step, and right-padding a batch of ragged series
  changes nothing (no padding artefacts);
- the outputs at every step of one parallel pass are the predictions after every prefix;
- ``step`` continues a series one observation at a time with a constant-size state (the last
  ``kernel_size - 1`` inputs, the backbone's state and, for the mean readout, the running sum
  and count of the backbone's outputs), and gives the same outputs.

Training (``fit_panel_network``) uses the loss at each series' last step, AdamW, shuffled
mini-batches padded to their longest series, and optional early stopping on held-out series.

With a ``Shard`` it trains one rank's part of data-parallel training
(``_distributed``). Pure torch: no sktime here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nn import make_backbone
from ..nn.transformer import sinusoidal_encoding
from ._optim import adam
from ._sharding import Shard


def _multi_scale_mask(sizes: tuple[int, ...], d_model: int, n_channels: int) -> torch.Tensor:
    """``(d_model, n_channels, max(sizes))``: 1 on the last ``k`` taps of the output rows
    of size ``k`` (an equal share of ``d_model`` per size, the remainder to the first)."""
    share = [d_model // len(sizes)] * len(sizes)
    share[0] += d_model - sum(share)
    largest = max(sizes)
    mask = torch.zeros(d_model, n_channels, largest)
    start = 0
    for size, rows in zip(sizes, share, strict=True):
        mask[start : start + rows, :, largest - size :] = 1.0
        start += rows
    return mask


READOUTS = ("last", "mean")


def check_positional(positional: object, backbone: str) -> None:
    """Refuse ``positional=True`` with the transformer backbone, which adds its own code
    ("auto" never asks for it there)."""
    if not isinstance(positional, str) and positional and backbone == "transformer":
        raise ValueError(
            "positional=True applies to the aaren and gru backbones: the transformer "
            "backbone adds its own sinusoidal code"
        )


def running_mean(y: torch.Tensor) -> torch.Tensor:
    """``(B, T, D)`` -> the mean of steps ``0..t`` at every step ``t`` (causal: right-padding
    after a series' last step leaves its means unchanged)."""
    steps = torch.arange(1, y.shape[1] + 1, device=y.device, dtype=y.dtype)
    return y.cumsum(1) / steps.view(1, -1, 1)


class PanelNet(nn.Module):
    """Causal convolution -> backbone -> linear head at every step.

    Parameters
    ----------
    n_channels : int
        Channels of the input series.
    n_outputs : int
        Outputs per step (classes, or 1 for regression).
    backbone : {"aaren", "transformer", "gru"}
    d_model, n_layers, n_heads : int
    dropout : float
    kernel_size : int or tuple of int
        Steps each embedding reads (the step and ``kernel_size - 1`` before it). A tuple
        gives a multi-scale embedding: one causal convolution per size, each giving an equal
        share of ``d_model`` (the first takes the remainder); ``self.kernel_size`` is then
        the largest, the steps a stream keeps.
    recency : bool
        Aaren backbone only: a learnable per-head score term linear in the position.
    readout : {"last", "mean"}
        What the head reads at step ``t``: the backbone's output at ``t``, or the mean of its
        outputs at steps ``0..t`` (a pooled summary of the whole prefix).
    positional : bool
        Add the sinusoidal code of each step's index (0 at a series' first step) to its
        embedding, as the Transformer backbone does inside itself; for the Aaren and GRU
        backbones (a stream counts its steps in its state).
    """

    def __init__(
        self,
        n_channels: int,
        n_outputs: int,
        backbone: str = "aaren",
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
        kernel_size: int | Sequence[int] = 3,
        recency: bool = False,
        readout: str = "last",
        positional: bool = False,
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        check_positional(positional, backbone)
        self.positional = bool(positional)
        self.n_channels = n_channels
        self.readout = readout
        sizes = (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.kernel_sizes = tuple(int(k) for k in sizes)
        self.kernel_size = max(self.kernel_sizes)
        self.embed = nn.Conv1d(n_channels, d_model, self.kernel_size)
        # one convolution of the largest size whose rows of the smaller ones read only
        # their last taps: the multi-scale embedding in one call, stepped like the plain one
        mask = None
        if len(self.kernel_sizes) > 1:
            mask = _multi_scale_mask(self.kernel_sizes, d_model, n_channels)
            with torch.no_grad():
                self.embed.weight.mul_(mask)  # the taps never read stay zero when saved
        self.register_buffer("embed_mask", mask, persistent=False)  # rebuilt, never saved
        extra = {"recency": True} if recency else {}
        self.backbone = make_backbone(
            backbone, d_model, n_layers, n_heads, dropout=dropout, **extra
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, n_outputs)

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding's convolution of ``x`` ``(B, C, T)`` (masked when multi-scale)."""
        mask = getattr(self, "embed_mask", None)  # None too in networks pickled before it
        if mask is None:
            return self.embed(x)
        return F.conv1d(x, self.embed.weight * mask, self.embed.bias)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C)`` -> ``(B, T, d_model)``, causal (zeros before the first step)."""
        x = F.pad(x.transpose(1, 2), (self.kernel_size - 1, 0))
        e = self._convolve(x).transpose(1, 2)
        if self._positional():
            e = e + self._position_code(torch.arange(e.shape[1], device=e.device), e)
        return e

    def _positional(self) -> bool:
        return getattr(self, "positional", False)  # absent: pickled before the option

    def _position_code(self, positions: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The sinusoidal code of ``positions`` ``(n,)``: ``(n, d_model)``, ``like``'s dtype."""
        return sinusoidal_encoding(positions, like.shape[-1]).to(like.dtype)

    def _pools(self) -> bool:
        return getattr(self, "readout", "last") == "mean"  # absent: pickled before readouts

    def forward(self, x: torch.Tensor, *, last_only: bool = False) -> torch.Tensor:
        """Outputs after every prefix: ``(B, T, C)`` -> ``(B, T, n_outputs)``.

        ``last_only``: the outputs after the last step only, ``(B, n_outputs)`` (for a batch
        whose series all end there). With the last-step readout the backbone's top layer
        then reads its tokens for that step alone (``last_only`` of the backbone); the mean
        readout needs every step's output, so it slices the full pass.
        """
        if last_only and not self._pools():
            y, _ = self.backbone(self._embed(x), last_only=True)
            return self.head(self.dropout(y))
        y, _ = self.backbone(self._embed(x))
        if self._pools():
            y = running_mean(y)
        out = self.head(self.dropout(y))
        return out[:, -1] if last_only else out

    def init_state(self, batch: int, device: torch.device | str | None = None) -> tuple:
        """The state before any step: ``(last kernel_size - 1 inputs, backbone state)``, and
        for the mean readout ``(sum of the backbone's outputs, steps)`` after them, and with
        ``positional`` the index of the next step ``(batch,)`` last."""
        ref = self.head.weight
        device = device if device is not None else ref.device
        window = torch.zeros(batch, self.kernel_size - 1, self.n_channels, device=device)
        state = (window, self.backbone.init_state(batch, device, ref.dtype))
        if self._pools():
            total = torch.zeros(batch, self.head.in_features, device=device, dtype=ref.dtype)
            state += (total, torch.zeros(batch, 1, device=device, dtype=ref.dtype))
        if self._positional():
            state += (torch.zeros(batch, dtype=torch.long, device=device),)
        return state

    def step(self, x_t: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        """One step ``(B, C)`` -> ``(outputs (B, n_outputs), state)``, constant cost for the
        Aaren and GRU backbones (the Transformer's cache grows)."""
        window, inner, *rest = state
        position = rest.pop() if self._positional() else None
        window = torch.cat([window, x_t.unsqueeze(1)], dim=1)  # (B, kernel_size, C)
        e = self._convolve(window.transpose(1, 2)).squeeze(-1)
        if position is not None:
            e = e + self._position_code(position, e)
        y, inner = self.backbone.step(e, inner)
        state = (window[:, 1:], inner)
        if self._pools():
            total, steps = rest[0] + y, rest[1] + 1
            y, state = total / steps, (*state, total, steps)
        if position is not None:
            state = (*state, position + 1)
        return self.head(self.dropout(y)), state


COMBINES = ("probabilities", "mean")


class PanelEnsemble(nn.Module):
    """Several ``PanelNet`` of one shape, read as one: their predictions averaged.

    ``combine="probabilities"`` (classification): the outputs are the log of the members'
    mean class probabilities, so a softmax of them (what the classifier applies) is exactly
    that mean; ``"mean"`` (regression): the members' mean output. Every step's outputs are
    combined the same way, so early predictions and streams average too, and a stream's
    state is the members' states side by side (still O(1) per step for each member).

    Parameters
    ----------
    n_networks : int
        Members (built here with fresh weights; ``of`` wraps members already trained).
    combine : {"probabilities", "mean"}
    **net_kwargs
        ``PanelNet``'s arguments, the same for every member.
    """

    def __init__(self, n_networks: int, combine: str = "probabilities", **net_kwargs: Any):
        super().__init__()
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
        self.combine = combine
        self.members = nn.ModuleList(PanelNet(**net_kwargs) for _ in range(n_networks))

    @classmethod
    def of(cls, members: Sequence[PanelNet], combine: str) -> PanelEnsemble:
        """An ensemble of these (already built or trained) members."""
        ensemble = cls(0, combine)
        ensemble.members.extend(members)
        return ensemble

    def _combined(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(outputs)
        if self.combine == "mean":
            return stacked.mean(0)
        # log of the mean probability, stable for any logits (finite logits give finite logs)
        return torch.logsumexp(F.log_softmax(stacked, dim=-1), dim=0) - math.log(len(outputs))

    def forward(self, x: torch.Tensor, *, last_only: bool = False) -> torch.Tensor:
        """The members' combined outputs (see ``PanelNet.forward``)."""
        return self._combined([m(x, last_only=last_only) for m in self.members])

    def init_state(self, batch: int, device: torch.device | str | None = None) -> tuple:
        """The members' states before any step, one per member."""
        return tuple(m.init_state(batch, device) for m in self.members)

    def step(self, x_t: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        """One step of every member, combined: ``(B, C)`` -> ``(outputs, state)``."""
        pairs = [m.step(x_t, s) for m, s in zip(self.members, state, strict=True)]
        return self._combined([out for out, _ in pairs]), tuple(s for _, s in pairs)


class PanelLoss:
    """A batch loss that is a weighted mean over rows: ``sum(rows) / sum(weights)``.

    ``rows(output, target)`` are the rows' weighted losses and ``weights(target)`` their
    weights, so that the loss of part of a batch can be scaled by the whole batch's weight
    (data-parallel training: ``Shard.share``). Plain objects, so that they pickle into
    spawned training processes.
    """

    def rows(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def weights(self, target: torch.Tensor) -> torch.Tensor:
        return torch.ones(target.shape[0], dtype=torch.float32, device=target.device)

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.rows(output, target).sum() / self.weights(target).sum()


class CrossEntropy(PanelLoss):
    """Cross-entropy of class logits with optional class weights and label smoothing, equal
    to ``F.cross_entropy(..., weight, label_smoothing)`` (its mean divides by the summed
    weights of the rows' classes).

    Examples
    --------
    The rows' losses over the rows' class weights are torch's weighted mean:

    >>> logits, target = torch.randn(5, 3), torch.tensor([0, 2, 1, 2, 2])
    >>> loss = CrossEntropy(torch.tensor([1.0, 2.0, 0.5]), 0.1)
    >>> expected = F.cross_entropy(logits, target, torch.tensor([1.0, 2.0, 0.5]),
    ...                            label_smoothing=0.1)
    >>> by_rows = loss.rows(logits, target).sum() / loss.weights(target).sum()
    >>> bool(torch.isclose(by_rows, expected))
    True
    """

    def __init__(self, class_weight: torch.Tensor | None = None, smoothing: float = 0.0):
        self.class_weight, self.smoothing = class_weight, smoothing

    def _weight(self, device: torch.device) -> torch.Tensor | None:
        return None if self.class_weight is None else self.class_weight.to(device)

    def rows(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            output,
            target,
            weight=self._weight(output.device),
            label_smoothing=self.smoothing,
            reduction="none",
        )

    def weights(self, target: torch.Tensor) -> torch.Tensor:
        weight = self._weight(target.device)
        return super().weights(target) if weight is None else weight[target]

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # torch's own reduction, so that single-process training is what it always was
        return F.cross_entropy(
            output, target, weight=self._weight(output.device), label_smoothing=self.smoothing
        )


class SquaredError(PanelLoss):
    """Mean squared error of a single output per row (``F.mse_loss``)."""

    def rows(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output[:, 0] - target) ** 2

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output[:, 0], target)


def pad_batch(
    series: Sequence[np.ndarray], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ``(T_i, C)`` arrays with zeros: ``(B, T_max, C)`` float32 and lengths ``(B,)``."""
    lengths = torch.tensor([len(s) for s in series], dtype=torch.long)
    out = np.zeros((len(series), int(lengths.max()), series[0].shape[1]), dtype=np.float32)
    for i, s in enumerate(series):
        out[i, : len(s)] = s
    return torch.from_numpy(out).to(device), lengths.to(device)


def last_outputs(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each series' output at its own last step: ``(B, T, K)`` -> ``(B, K)``."""
    return outputs[torch.arange(outputs.shape[0], device=outputs.device), lengths - 1]


def outputs_at_ends(net: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``net``'s outputs at each series' own last step ``(B, K)``: when no series of the
    batch is padded (the usual equal-length panel), through its last-step route."""
    if bool((lengths == x.shape[1]).all()):
        return net(x, last_only=True)
    return last_outputs(net(x), lengths)


@torch.no_grad()
def predict_outputs(
    net: PanelNet,
    series: Sequence[np.ndarray],
    device: torch.device,
    batch_size: int = 256,
    every_step: bool = False,
) -> list[np.ndarray]:
    """Outputs of each series at its last step ``(K,)``, or at every step ``(T_i, K)``.

    Series are batched by length (similar lengths together) to keep padding small; the
    result is in the input order.
    """
    net.eval()
    order = np.argsort([len(s) for s in series], kind="stable")
    results: list[Any] = [None] * len(series)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        x, lengths = pad_batch([series[i] for i in idx], device)
        if not every_step:
            outputs = outputs_at_ends(net, x, lengths).double().cpu()
            for row, i in enumerate(idx):
                results[i] = outputs[row].numpy()
            continue
        outputs = net(x).double().cpu()
        for row, i in enumerate(idx):
            results[i] = outputs[row, : int(lengths[row])].numpy()
    return results


def _batch_loss(
    series: Sequence[np.ndarray],
    targets: torch.Tensor,
    idx: list[int],
    loss_fn: PanelLoss,
    prefix_loss: float,
    device: torch.device,
    shard: Shard | None,
) -> Callable[[nn.Module], torch.Tensor]:
    """The loss ``net -> loss`` of the batch ``idx``; with a ``shard``, this rank's share of
    it (its rows' losses over the whole batch's weight), which DDP's gradient average turns
    into the whole batch's gradient."""
    mine = idx
    if shard is not None:
        rows, weight = shard.rows(len(idx))
        mine = idx[rows]
        batch_weight = loss_fn.weights(targets[idx])
        steps = torch.tensor([len(series[i]) for i in idx], device=batch_weight.device)
        last_weight, every_weight = batch_weight.sum(), (batch_weight * steps).sum()
    x, lengths = pad_batch([series[i] for i in mine], device)
    target = targets[mine]

    def mean(output: torch.Tensor, target: torch.Tensor, total: torch.Tensor | None):
        if shard is None:
            return loss_fn(output, target)
        return shard.share(loss_fn.rows(output, target).sum(), total, weight)

    last_total = None if shard is None else last_weight

    def compute(net: nn.Module) -> torch.Tensor:
        if prefix_loss == 0:  # only the last steps are read
            return mean(outputs_at_ends(net, x, lengths), target, last_total)
        outputs = net(x)
        loss = mean(last_outputs(outputs, lengths), target, last_total)
        steps = torch.arange(outputs.shape[1], device=device)
        seen = steps.unsqueeze(0) < lengths.unsqueeze(1)  # (B, T): inside the series
        every = target.unsqueeze(1).expand(-1, outputs.shape[1], *target.shape[1:])
        every_loss = mean(outputs[seen], every[seen], None if shard is None else every_weight)
        return (1 - prefix_loss) * loss + prefix_loss * every_loss

    return compute


def fit_panel_network(
    net: PanelNet,
    series: Sequence[np.ndarray],
    targets: torch.Tensor,
    loss_fn: PanelLoss,
    *,
    device: torch.device,
    max_epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    generator: torch.Generator,
    validation: tuple[Sequence[np.ndarray], torch.Tensor] | None = None,
    patience: int = 10,
    prefix_loss: float = 0.0,
    on_epoch: Callable[[int, float, float | None], None] | None = None,
    shard: Shard | None = None,
) -> tuple[list[float], list[float]]:
    """AdamW on the loss at each series' last step; returns (train, validation) losses.

    ``targets`` ``(N, ...)`` lines up with ``series``. With ``prefix_loss`` = w > 0 the
    training loss is ``(1 - w) * last-step loss + w * loss over every step`` (each prefix
    labelled with its series' target), which trains the early predictions too. With
    ``validation`` (held-out series and targets), each epoch is scored on it (last-step
    loss); training stops after ``patience`` epochs without improvement, and the best
    epoch's weights are restored.

    With a ``shard`` (data-parallel training, one call per rank of a process group), every
    rank draws the same batches and computes its rows' share of each batch's loss inside
    ``DistributedDataParallel``, so the averaged gradient is the single-process one; every
    rank scores the validation series itself and rank 0's score decides for all.
    """
    model = None if shard is None else shard.wrap(net)
    optimizer = adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    targets = targets.to(device)
    history: list[float] = []
    val_history: list[float] = []
    best, best_weights, waited = float("inf"), None, 0
    if validation is not None:
        val_x, val_lengths = pad_batch(validation[0], device)
        val_y = validation[1].to(device)
    for epoch in range(max_epochs):
        net.train()
        order = torch.randperm(len(series), generator=generator).tolist()
        total, count = 0.0, 0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            compute = _batch_loss(series, targets, idx, loss_fn, prefix_loss, device, shard)
            loss = compute(net) if model is None else model(compute)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        if shard is not None:  # the ranks' shares of a batch's loss average to its loss
            total = shard.mean(total)
        history.append(total / max(count, 1))
        score = None
        if validation is not None:
            net.eval()
            with torch.no_grad():
                score = float(loss_fn(outputs_at_ends(net, val_x, val_lengths), val_y))
            if shard is not None:  # one decision for all ranks, so that they stop together
                score = shard.from_rank_zero(score)
            val_history.append(score)
            if score < best:
                best, waited = score, 0
                best_weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                waited += 1
        if on_epoch is not None:
            on_epoch(epoch, history[-1], score)
        if validation is not None and waited >= patience:
            break
    if best_weights is not None:
        net.load_state_dict(best_weights)
    net.eval()
    return history, val_history


@dataclass
class PanelData:
    """What a training process needs besides the network: the training series and targets,
    the loss, and the held-out series (pickled into each spawned rank)."""

    series: list[np.ndarray]
    targets: torch.Tensor
    loss_fn: PanelLoss
    validation: tuple[list[np.ndarray], torch.Tensor] | None = None


def train_panel(
    net: PanelNet,
    data: PanelData,
    *,
    generator: torch.Generator,
    on_epoch: Callable[[int, float, float | None], None] | None = None,
    shard: Shard | None = None,
    **fit_kwargs: Any,
) -> tuple[list[float], list[float]]:
    """``fit_panel_network`` on ``data``, on the network's device (a data-parallel rank's)."""
    device = next(net.parameters()).device
    return fit_panel_network(
        net,
        data.series,
        data.targets,
        data.loss_fn,
        device=device,
        generator=generator,
        validation=data.validation,
        on_epoch=on_epoch,
        shard=shard,
        **fit_kwargs,
    )
