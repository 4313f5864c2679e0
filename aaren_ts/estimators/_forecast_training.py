"""Training the forecast network: full-history chunks or context windows, early stopping,
and quantile calibration on the held-out tail.

Two ways to read the data, one loop:

- ``SeriesData`` (full-history mode): each series is read in consecutive chunks carrying the
  detached state (truncated backpropagation through time), with the pinball loss at every
  position whose targets are observed, as inference reads it.
- ``WindowData`` (``context_length`` mode): windows of the last L observations, each
  normalised on its own (``window_forecast``), as in the Time-Series-Library protocol.

Both hold out the tail of every series (``validation_size``): no training loss looks at
targets there. ``fit_network`` stops early on the tail's loss and restores the best weights;
``quantile_shifts`` then reads the tail's residuals to calibrate the quantiles.

Pure torch: no sktime here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from ..nn import detach_state
from ._forecast_net import ForecastNet, future_targets, pinball_loss, window_forecast
from ._optim import adam
from ._sharding import Shard
from ._stream_net import StreamNet

# A loss function of the network: the training data yields one per optimiser step.
Step = Callable[[ForecastNet | StreamNet], torch.Tensor]

# Known-future covariates are hidden from this share of training sequences, so that the
# network also forecasts well when predict is not given them.
FUTURE_DROPOUT = 0.5
# Fewer tail residuals than this for a horizon step: calibrate it with the pooled shift.
MIN_CALIBRATION_SAMPLES = 30


def _hide_future(future: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor | None:
    """Replace the covariates of a random share of the batch by NaN (unknown)."""
    if future is None:
        return None
    hide = torch.rand(future.shape[0], generator=generator) < FUTURE_DROPOUT
    shape = (-1,) + (1,) * (future.dim() - 1)
    return torch.where(hide.to(future.device).view(shape), float("nan"), future)


def _as_batched(tensors: Sequence[torch.Tensor] | None) -> list[torch.Tensor] | None:
    if tensors is None:
        return None
    return [t.unsqueeze(0) if t.dim() == 2 else t for t in tensors]


def _repeated(one_pass, generator, shard, min_steps: int) -> Iterator[Step]:
    """Passes ``one_pass(generator, shard)`` until ``min_steps`` steps (or an empty pass)."""
    made = 0
    while True:
        before = made
        for step in one_pass(generator, shard):
            made += 1
            yield step
        if made >= min_steps or made == before:
            return


class SeriesData:
    """Full-history training data: series read whole, in chunks, state carried.

    ``values[i]`` ``([B_i,] T_i, C)`` globally scaled targets, optional ``exog[i]``
    ``([B_i,] T_i, n_exog)`` (past covariates of each row) and ``futures[i]``
    ``([B_i,] T_i, n_future)`` (covariates known ahead) on the net's device: the inputs of a
    ``StreamNet``. Sequences of equal length train together, ``batch_size`` at a time.

    An epoch reads every batch from its start, in chunks of ``chunk_length`` rows carrying
    the detached state (truncated backpropagation through time), with the pinball loss at
    every row whose targets lie before the held-out tail, as inference reads the history.
    The first chunk of each pass has a random length, so that chunk boundaries move between
    passes. An epoch repeats passes until it has made at least ``min_steps`` optimiser steps:
    a short series would otherwise train one step per epoch.
    """

    def __init__(
        self,
        values: Sequence[torch.Tensor],
        horizon: int,
        *,
        exog: Sequence[torch.Tensor] | None = None,
        futures: Sequence[torch.Tensor] | None = None,
        chunk_length: int = 256,
        batch_size: int | None = None,
        validation_size: float = 0.0,
        min_steps: int = 1,
    ) -> None:
        values, exog, futures = map(_as_batched, (values, exog, futures))
        self.chunk_length = chunk_length
        self.horizon = horizon
        self.min_steps = min_steps
        groups: dict[int, list[int]] = {}
        for i, v in enumerate(values):
            groups.setdefault(v.shape[1], []).append(i)

        def joined(parts, idx):
            return None if parts is None else torch.cat([parts[i] for i in idx])

        self.batches = []
        for idx in groups.values():
            v, x, f = joined(values, idx), joined(exog, idx), joined(futures, idx)
            size = batch_size or v.shape[0]
            for start in range(0, v.shape[0], size):
                part = slice(start, start + size)
                self.batches.append(
                    (
                        v[part],
                        None if x is None else x[part],
                        None if f is None else f[part],
                        validation_size,
                    )
                )
        self.validating = validation_size > 0 and any(
            round(v.shape[1] * validation_size) > 0 for v, *_ in self.batches
        )

    # The untrained network is the naive point forecast (every quantile at the last value):
    # it and the trained epochs are compared on their point forecast (the median's pinball
    # loss on the tail); the intervals come from calibration (``quantile_shifts``).
    select_on_median = True

    def _targets(self, y: torch.Tensor, validation_size: float, tail_only: bool) -> torch.Tensor:
        """``(B, T, H, C)`` targets, NaN outside the training part (or outside the tail)."""
        future = future_targets(y, self.horizon)
        length = y.shape[1]
        tail = round(length * validation_size)
        # position t, step h targets row t + h
        rows = torch.arange(length).view(-1, 1) + torch.arange(1, self.horizon + 1)
        in_tail = (rows >= length - tail).to(y.device).view(1, length, -1, 1)
        keep = in_tail if tail_only else ~in_tail
        return torch.where(keep, future, float("nan"))

    def _covariates(self, f: torch.Tensor | None) -> torch.Tensor | None:
        return None if f is None else future_targets(f, self.horizon)

    def epoch(self, net: StreamNet, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Yield one loss per chunk; the caller steps the optimiser between them."""
        for step in self.steps(generator):
            yield step(net)

    def _chunks(self, length: int, trained: int, generator: torch.Generator) -> list[slice]:
        """Chunks of one pass: a random first length, then ``chunk_length`` rows each, up to
        the last row with a training target (``trained`` rows)."""
        first = int(torch.randint(1, self.chunk_length + 1, (1,), generator=generator))
        bounds = [0, *range(first, trained, self.chunk_length), trained]
        return [slice(a, b) for a, b in itertools.pairwise(bounds) if b > a]

    def steps(self, generator: torch.Generator, shard: Shard | None = None) -> Iterator[Step]:
        """One loss function ``net -> loss`` per chunk, to be called in order (each carries
        the state the previous one left). With a ``shard``, each reads only this rank's rows
        of the batch and returns its share of the batch's loss (``Shard.loss``)."""
        yield from _repeated(self._pass, generator, shard, self.min_steps)

    def _pass(self, generator: torch.Generator, shard: Shard | None) -> Iterator[Step]:
        for b in torch.randperm(len(self.batches), generator=generator).tolist():
            v, x, f, validation_size = self.batches[b]
            target = self._targets(v, validation_size, tail_only=False)
            # rows whose targets all lie in the tail teach nothing: the pass stops before them
            trained = v.shape[1] - round(v.shape[1] * validation_size) - 1
            if trained < 1:
                continue
            covariates = self._covariates(f)
            rows, weight = (slice(None), 1.0) if shard is None else shard.rows(v.shape[0])
            carried = {"state": None}
            for chunk in self._chunks(v.shape[1], trained, generator):

                def step(
                    net,
                    chunk=chunk,
                    v=v,
                    x=x,
                    target=target,
                    covariates=covariates,
                    rows=rows,
                    weight=weight,
                    carried=carried,
                ):
                    seen = None
                    if covariates is not None:
                        # every rank draws the whole batch's mask: the generators stay in step
                        seen = _hide_future(covariates[:, chunk], generator)[rows]
                    exog = None if x is None else x[rows, chunk]
                    forecast, centre, scale, state = net(
                        v[rows, chunk], carried["state"], exog, seen
                    )
                    carried["state"] = detach_state(state)
                    # the loss is taken in the globally scaled units the metrics use
                    forecast = in_row_units(forecast, centre, scale)
                    if shard is None:
                        return pinball_loss(forecast, target[:, chunk], net.quantiles)
                    return shard.loss(forecast, target[:, chunk], rows, weight, net.quantiles)

                yield step

    @torch.no_grad()
    def validation(self, net: StreamNet) -> tuple[torch.Tensor, torch.Tensor]:
        """Forecasts ``(N, H, C, Q)`` and targets ``(N, H, C)`` (NaN: not in the tail), both
        in the local units of each forecast's origin, of the positions whose targets reach the
        tail, every series read whole as at inference."""
        forecasts, targets = [], []
        for v, x, f, validation_size in self.batches:
            length = v.shape[1]
            tail = round(length * validation_size)
            if tail == 0:
                continue
            first = max(0, length - tail - self.horizon)  # earliest position that reaches it
            target = self._targets(v, validation_size, tail_only=True)
            covariates = self._covariates(f)
            state, outputs, local_targets = None, [], []
            for start in range(0, length, self.chunk_length):
                chunk = slice(start, start + self.chunk_length)
                seen = None if covariates is None else covariates[:, chunk]
                exog = None if x is None else x[:, chunk]
                forecast, centre, scale, state = net(v[:, chunk], state, exog, seen)
                keep = max(0, first - start)
                if keep < forecast.shape[1]:
                    outputs.append(forecast[:, keep:])
                    local = (target[:, chunk] - centre.unsqueeze(2)) / scale.unsqueeze(2)
                    local_targets.append(local[:, keep:])
            forecasts.append(torch.cat(outputs, 1).flatten(0, 1))
            targets.append(torch.cat(local_targets, 1).flatten(0, 1))
        return torch.cat(forecasts), torch.cat(targets)


def in_row_units(forecast: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Local-unit forecasts ``(B, T, H, C, Q)`` -> the rows' units, with ``(B, T, C)`` units."""
    return forecast * scale[:, :, None, :, None] + centre[:, :, None, :, None]


class WindowData:
    """Windowed training data: every window of ``context_length`` observations that has at
    least one target, normalised per window.

    ``values[i]`` ``(T_i, C)`` globally scaled targets, optional ``inputs_x[i]`` ``(T_i, n_x)``
    (past covariates, appended to the tokens) and ``futures[i]`` ``(T_i, n_future)``
    (covariates known ahead). Windows are drawn ``batch_size`` at a time; an epoch visits
    every training window, or a fresh random ``windows_per_epoch`` of them, and repeats that
    until it has made at least ``min_steps`` optimiser steps (short series).
    """

    # epochs are compared on the pinball loss of every quantile (an untrained windowed
    # network is no baseline worth keeping)
    select_on_median = False

    def __init__(
        self,
        values: Sequence[torch.Tensor],
        horizon: int,
        context_length: int,
        n_lags: int,
        independent: bool,
        *,
        inputs_x: Sequence[torch.Tensor] | None = None,
        futures: Sequence[torch.Tensor] | None = None,
        batch_size: int = 128,
        validation_size: float = 0.0,
        windows_per_epoch: int | None = None,
        stride: int = 1,
        min_steps: int = 1,
    ) -> None:
        self.horizon, self.length, self.stride = horizon, context_length, stride
        self.windows_per_epoch = windows_per_epoch
        self.min_steps = min_steps
        self.n_lags, self.independent = n_lags, independent
        self.batch_size = batch_size
        # all series end to end, each followed by `horizon` NaN rows, so that every window
        # is one slice of one tensor; training and tail targets are separate copies
        ends, input_parts, train_parts, tail_parts, x_parts, f_parts = [], [], [], [], [], []
        offset = 0
        for i, v in enumerate(values):
            n, tail = v.shape[0], round(v.shape[0] * validation_size)
            pad = v.new_full((horizon, v.shape[1]), float("nan"))
            rows = torch.arange(n, device=v.device).view(-1, 1)
            input_parts.append(torch.cat([v, torch.zeros_like(pad)]))
            train_parts.append(torch.cat([torch.where(rows < n - tail, v, float("nan")), pad]))
            tail_parts.append(torch.cat([torch.where(rows >= n - tail, v, float("nan")), pad]))
            for parts, source in ((x_parts, inputs_x), (f_parts, futures)):
                if source is not None:
                    s = source[i]
                    parts.append(torch.cat([s, s.new_full((horizon, s.shape[1]), float("nan"))]))
            # window ending at row e (its last input) has targets e + 1 .. e + horizon
            last = torch.arange(context_length - 1, n - 1, device=v.device)
            ends.append((offset + last, n - tail - 1 - last > 0, last + horizon >= n - tail))
            offset += n + horizon
        self.inputs = torch.cat(input_parts)
        self.train_targets = torch.cat(train_parts)
        self.tail_targets = torch.cat(tail_parts)
        self.x = torch.cat(x_parts) if inputs_x is not None else None
        self.future = torch.cat(f_parts) if futures is not None else None
        all_ends = torch.cat([e for e, _, _ in ends])
        self.train_ends = all_ends[torch.cat([t for _, t, _ in ends])]
        self.tail_ends = all_ends[torch.cat([v for _, _, v in ends])] if validation_size else None
        self.validating = self.tail_ends is not None and len(self.tail_ends) > 0
        if len(self.train_ends) == 0:
            raise ValueError("no training window: every series is too short for context_length")

    def _forecast(self, net: ForecastNet, ends: torch.Tensor, future_generator=None, rows=None):
        past = ends.view(-1, 1) + torch.arange(1 - self.length, 1, device=ends.device)
        ahead = ends.view(-1, 1) + torch.arange(1, self.horizon + 1, device=ends.device)
        x = None if self.x is None else self.x[past]
        future = None if self.future is None else self.future[ahead]
        if future_generator is not None:
            # drawn for the whole batch before sharding: every rank's generator stays in step
            future = _hide_future(future, future_generator)
        if rows is not None:  # this rank's rows of the batch
            past, x = past[rows], None if x is None else x[rows]
            future = None if future is None else future[rows]
        forecast, centre, scale = window_forecast(
            net, self.inputs[past], self.n_lags, self.independent, x, future, self.stride
        )
        return forecast, centre, scale, ahead

    def epoch(self, net: ForecastNet, generator: torch.Generator) -> Iterator[torch.Tensor]:
        for step in self.steps(generator):
            yield step(net)

    def steps(self, generator: torch.Generator, shard: Shard | None = None) -> Iterator[Step]:
        """One loss function ``net -> loss`` per batch of windows. With a ``shard``, each
        reads only this rank's windows and returns its share of the batch's loss."""
        yield from _repeated(self._pass, generator, shard, self.min_steps)

    def _pass(self, generator: torch.Generator, shard: Shard | None) -> Iterator[Step]:
        order = torch.randperm(len(self.train_ends), generator=generator)
        if self.windows_per_epoch is not None:
            order = order[: self.windows_per_epoch]
        for start in range(0, len(order), self.batch_size):
            ends = self.train_ends[order[start : start + self.batch_size].to(self.inputs.device)]

            def step(net, ends=ends):
                rows, weight = (None, 1.0) if shard is None else shard.rows(len(ends))
                forecast, centre, scale, ahead = self._forecast(net, ends, generator, rows)
                # the loss is taken in the globally scaled units the metrics use
                forecast = forecast * scale.unsqueeze(-1) + centre.unsqueeze(-1)
                target = self.train_targets[ahead]
                if shard is None:
                    return pinball_loss(forecast, target, net.quantiles)
                return shard.loss(forecast, target, rows, weight, net.quantiles)

            yield step

    @torch.no_grad()
    def validation(self, net: ForecastNet) -> tuple[torch.Tensor, torch.Tensor]:
        """Window-normalised forecasts ``(N, H, C, Q)`` and targets ``(N, H, C)`` of the tail."""
        forecasts, targets = [], []
        for start in range(0, len(self.tail_ends), 4096):
            ends = self.tail_ends[start : start + 4096]
            forecast, centre, scale, ahead = self._forecast(net, ends)
            forecasts.append(forecast)
            targets.append((self.tail_targets[ahead] - centre) / scale)
        return torch.cat(forecasts), torch.cat(targets)


def fit_network(
    net: ForecastNet,
    data: SeriesData | WindowData,
    *,
    max_epochs: int,
    lr: float,
    generator: torch.Generator,
    max_steps: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    patience: int = 5,
    validation_history: list[float] | None = None,
    shard: Shard | None = None,
) -> list[float]:
    """Adam on ``data``'s losses; returns the mean training loss of each epoch.

    Training ends after ``max_epochs`` epochs or ``max_steps`` optimiser steps (None: no
    limit), whichever comes first; an epoch cut short by ``max_steps`` still ends with its
    validation.

    With a held-out tail, each epoch is scored on it (pinball loss); training stops after
    ``patience`` epochs without improvement and the best weights are restored. Each epoch's
    validation loss is appended to ``validation_history`` when one is given.

    With a ``shard`` (data-parallel training, one call per rank of a process group), each
    rank computes its share of every batch's loss inside ``DistributedDataParallel``, whose
    gradient average is then the single-process batch gradient; every rank holds all the
    data and scores the tail itself, and rank 0's score decides for all.
    """
    model = None if shard is None else shard.wrap(net)
    optimizer = adam(net.parameters(), lr=lr)
    best, best_weights, waited = float("inf"), None, 0
    history: list[float] = []
    net.train()
    if data.validating:
        # the weights before training are a candidate too: a full-history network starts as
        # the naive forecast, which training must beat on the tail to replace it
        best = _validation_score(net, data, shard)
        best_weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
    made = 0
    for epoch in range(max_epochs):
        if max_steps is not None and made >= max_steps:
            break
        total, count = 0.0, 0
        for step in data.steps(generator, shard):
            loss = step(net) if model is None else model(step)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            count += 1
            made += 1
            if max_steps is not None and made >= max_steps:
                break
        if shard is not None:  # the ranks' shares of a batch's loss average to its loss
            total = shard.mean(total)
        history.append(total / max(count, 1))
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
        if data.validating:
            score = _validation_score(net, data, shard)
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


def _validation_score(net, data: SeriesData | WindowData, shard: Shard | None) -> float:
    """The pinball loss on the held-out tail (rank 0's, on every rank)."""
    net.eval()
    forecast, target = data.validation(net)
    net.train()
    levels = net.quantiles
    if data.select_on_median:
        median = levels == 0.5
        forecast, levels = forecast[..., median], levels[median]
    score = float(pinball_loss(forecast, target, levels))
    if shard is not None:  # one decision for all ranks, so that they stop together
        score = shard.from_rank_zero(score)
    return score


def quantile_shifts(
    forecast: torch.Tensor, target: torch.Tensor, quantiles: torch.Tensor
) -> torch.Tensor:
    """Per horizon step and level, the shift that makes each quantile's empirical coverage on
    held-out data equal its level (split-conformal recalibration of quantile forecasts).

    ``forecast`` ``(N, H, C, Q)``, ``target`` ``(N, H, C)`` (NaN: unobserved). Returns
    ``(H, Q)``: the ``q``-quantile of ``target - forecast_q`` over the observed residuals of
    step ``h`` (pooled over channels and positions). Steps with fewer than
    ``MIN_CALIBRATION_SAMPLES`` residuals use the shift pooled over every step; with fewer
    than that overall, no shift (zeros).
    """
    residual = (target.unsqueeze(-1) - forecast).to(torch.float64)  # (N, H, C, Q)
    residual = residual.transpose(0, 1).flatten(1, 2).cpu().numpy()  # (H, N * C, Q)
    observed = ~np.isnan(residual[..., 0])
    levels = quantiles.cpu().numpy().astype(np.float64)
    shifts = np.zeros((residual.shape[0], len(levels)))
    if observed.sum() < MIN_CALIBRATION_SAMPLES:
        return torch.from_numpy(shifts)

    def level_quantiles(r: np.ndarray) -> np.ndarray:  # (M, Q) -> (Q,)
        return np.array([np.quantile(r[:, k], levels[k]) for k in range(len(levels))])

    pooled = level_quantiles(residual[observed])
    for h in range(residual.shape[0]):
        r = residual[h][observed[h]]
        shifts[h] = pooled if r.shape[0] < MIN_CALIBRATION_SAMPLES else level_quantiles(r)
    return torch.from_numpy(shifts)
