"""The marked temporal point process network behind ``AarenPointProcess`` (pure torch).

Encoder: each event becomes a token ``embed(mark) + W [z(tau), sin(w t), cos(w t)]``, with
``z(tau)`` the standardised log inter-event time and ``t`` the absolute time; a start token
(mark index ``n_marks``, ``tau = 0``, ``t = t_start``) opens every sequence. A causal backbone
(Aaren, Transformer or GRU) reads the tokens; output ``y_i`` summarises the start and events
``1..i``.

Decoder (intensity-free, Shchur et al. 2020): from ``y_i``, the next mark is a categorical
and the next inter-event time ``tau_{i+1}`` given that mark a mixture of log-normals
(``mark_conditional=True``; with False, one mixture shared by every mark, so that mark and
time are independent given ``y_i``, as in Shchur et al.). Density, survival, mean and
sampling stay exact and in closed form: marginally ``tau`` is a larger log-normal mixture.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import make_backbone

LOG_SCALE_RANGE = (-5.0, 1.0)  # of each component, in standardised log-time units
N_FREQUENCIES = 8


class Decoded(NamedTuple):
    """Next-event distribution: a joint over the mark ``k`` and a mixture component ``c``,
    each ``(k, c)`` a log-normal over ``tau``. Marginally ``tau`` is a log-normal mixture of
    ``n_marks * K`` components; given the mark, one of ``K``."""

    log_weights: torch.Tensor  # (..., M, K) log P(k, c), summing to 1 over (k, c)
    loc: torch.Tensor  # (..., M, K) mean of log tau
    scale: torch.Tensor  # (..., M, K) std of log tau
    mark_log_probs: torch.Tensor  # (..., M) log P(k) = logsumexp over c

    def _log_components(self, tau: torch.Tensor) -> torch.Tensor:
        """``log P(k, c) + log N(log tau; loc, scale)`` ``(..., M, K)``."""
        return self._log_components_at(torch.log(tau))

    def _log_components_at(self, log_tau: torch.Tensor) -> torch.Tensor:
        """``_log_components`` from ``log tau``; leading dimensions beyond the
        distribution's broadcast in front (several points per distribution)."""
        z = (log_tau[..., None, None] - self.loc) / self.scale
        comp = -0.5 * z**2 - torch.log(self.scale) - 0.5 * math.log(2 * math.pi)
        return self.log_weights + comp

    def log_density(self, tau: torch.Tensor) -> torch.Tensor:
        """Marginal ``log p(tau)`` (``tau > 0``, shape ``(...)``)."""
        return torch.logsumexp(self._log_components(tau).flatten(-2), -1) - torch.log(tau)

    def event_log_likelihood(
        self, tau: torch.Tensor, mark: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(tau), log P(mark | tau))``: their sum is the joint ``log p(tau, mark)``."""
        comps = self._log_components(tau)
        marginal = torch.logsumexp(comps.flatten(-2), -1)
        per_mark = torch.logsumexp(comps, -1)  # (..., M)
        joint = per_mark.gather(-1, mark.unsqueeze(-1)).squeeze(-1)
        return marginal - torch.log(tau), joint - marginal

    def log_survival(self, tau: torch.Tensor) -> torch.Tensor:
        """``log P(next tau > tau)``; 0 at ``tau = 0``."""
        log_tau = torch.log(tau.clamp_min(1e-30))[..., None, None]
        z = (log_tau - self.loc) / self.scale
        return torch.logsumexp((self.log_weights + torch.special.log_ndtr(-z)).flatten(-2), -1)

    def mean(self) -> torch.Tensor:
        """``E[tau]`` in closed form: ``sum_{k,c} P(k, c) exp(loc + scale^2 / 2)``."""
        terms = self.log_weights + self.loc + 0.5 * self.scale**2
        return torch.exp(torch.logsumexp(terms.flatten(-2), -1))

    def capped_mean(self, cap: float) -> torch.Tensor:
        """``E[min(tau, cap)]`` in closed form, per log-normal component
        ``exp(loc + s^2 / 2) Phi((log cap - loc - s^2) / s) + cap (1 - Phi((log cap - loc) / s))``,
        summed in log space. A component with a large scale has an uncapped mean of
        ``exp(loc + s^2 / 2)``, far beyond any gap the data had; capped at the data's range
        it adds at most ``cap`` times its weight."""
        log_cap = math.log(cap)
        s2 = self.scale**2
        below = self.loc + 0.5 * s2 + torch.special.log_ndtr((log_cap - self.loc - s2) / self.scale)
        above = log_cap + torch.special.log_ndtr((self.loc - log_cap) / self.scale)
        terms = self.log_weights + torch.logaddexp(below, above)
        return torch.exp(torch.logsumexp(terms.flatten(-2), -1))

    def quantile(self, level: float, iterations: int = 64) -> torch.Tensor:
        """The ``level`` quantile of ``tau`` (``level = 0.5``: the median), by bisection on
        ``log tau`` between the components' ``loc -+ 10 scale``: ``P(tau > q) = 1 - level``
        to float precision after 64 halvings."""
        low = (self.loc - 10 * self.scale).flatten(-2).amin(-1)
        high = (self.loc + 10 * self.scale).flatten(-2).amax(-1)
        target = math.log1p(-level)
        for _ in range(iterations):
            middle = 0.5 * (low + high)
            above = self.log_survival(torch.exp(middle)) > target  # P(tau > q) too large
            low, high = torch.where(above, middle, low), torch.where(above, high, middle)
        return torch.exp(0.5 * (low + high))

    def mode(self, points: int = 512) -> torch.Tensor:
        """The most probable gap on a log scale: ``exp`` of the peak of the density of
        ``log tau`` (the density of ``tau`` itself runs up towards 0 under a wide component,
        whose own mode is ``exp(loc - s^2)``). The best of each component's centre and
        ``points`` evenly spaced candidates across the components' range, refined by
        golden-section search around it."""
        low = (self.loc - 6 * self.scale).flatten(-2).amin(-1)
        high = (self.loc + 6 * self.scale).flatten(-2).amax(-1)
        grid = torch.linspace(0.0, 1.0, points, dtype=low.dtype, device=low.device)
        span = low.unsqueeze(-1) + (high - low).unsqueeze(-1) * grid
        candidates = torch.cat([span, self.loc.flatten(-2)], -1)  # (..., points + M * K)
        best = candidates.gather(-1, self._log_density_of_log(candidates).argmax(-1, True))
        step = ((high - low) / (points - 1)).unsqueeze(-1)
        a, b = best - step, best + step
        ratio = (math.sqrt(5) - 1) / 2
        for _ in range(48):  # golden section on the bracket around the best candidate
            c, d = b - ratio * (b - a), a + ratio * (b - a)
            left = self._log_density_of_log(c) > self._log_density_of_log(d)
            a, b = torch.where(left, a, c), torch.where(left, d, b)
        return torch.exp(0.5 * (a + b)).squeeze(-1)

    def _log_density_of_log(self, log_tau: torch.Tensor) -> torch.Tensor:
        """The log density of ``log tau`` at ``log_tau`` ``(..., P)``, several points per
        distribution."""
        comps = self._log_components_at(log_tau.movedim(-1, 0))  # (P, ..., M, K)
        return torch.logsumexp(comps.flatten(-2), -1).movedim(0, -1)

    def sample(self, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact draws of ``(tau, mark)``, one per leading index."""
        shape = self.loc.shape[:-2]
        n_comp = self.loc.shape[-1]
        w = self.log_weights.reshape(-1, self.loc.shape[-2] * n_comp).exp()
        j = torch.multinomial(w, 1, generator=generator).view(shape)
        loc = self.loc.flatten(-2).gather(-1, j.unsqueeze(-1)).squeeze(-1)
        scale = self.scale.flatten(-2).gather(-1, j.unsqueeze(-1)).squeeze(-1)
        eps = torch.randn(shape, generator=generator, dtype=loc.dtype, device=loc.device)
        return torch.exp(loc + scale * eps), torch.div(j, n_comp, rounding_mode="floor")


class TPPNet(nn.Module):
    """Token encoder + backbone + log-normal-mixture / categorical decoder."""

    def __init__(
        self,
        n_marks: int,
        backbone: str,
        d_model: int,
        n_layers: int,
        n_heads: int,
        dropout: float,
        n_components: int,
        log_tau_mean: float,
        log_tau_std: float,
        min_inter_time: float,
        mark_conditional: bool = True,
        recency: bool = False,
    ) -> None:
        super().__init__()
        self.recency = recency and backbone == "aaren"
        extra = {"recency": True} if self.recency else {}
        self.n_marks = n_marks
        self.mark_conditional = mark_conditional
        self.n_components = n_components
        self.min_inter_time = float(min_inter_time)
        self.register_buffer("log_tau_mean", torch.tensor(float(log_tau_mean)))
        self.register_buffer("log_tau_std", torch.tensor(float(log_tau_std)))
        # absolute-time frequencies: periods from the typical gap to 10^4 typical gaps
        periods = math.exp(log_tau_mean) * torch.logspace(0, 4, N_FREQUENCIES, dtype=torch.float64)
        self.register_buffer("frequencies", (2 * math.pi / periods).float())
        self.mark_embedding = nn.Embedding(n_marks + 1, d_model)
        self.time_features = nn.Linear(1 + 2 * N_FREQUENCIES, d_model)
        self.encoder = make_backbone(backbone, d_model, n_layers, n_heads, None, dropout, **extra)
        per_mark = n_marks if mark_conditional else 1
        self.head = nn.Linear(d_model, 3 * n_components * per_mark + n_marks)

    # ------------------------------------------------------------------ encoder
    def tokens(self, tau: torch.Tensor, times: torch.Tensor, marks: torch.Tensor) -> torch.Tensor:
        """Tokens of events ``(...,)`` -> ``(..., d_model)``; ``marks == n_marks``: start."""
        log_tau = torch.log(tau.clamp_min(self.min_inter_time))
        z = (log_tau - self.log_tau_mean) / self.log_tau_std
        z = torch.where(marks == self.n_marks, torch.zeros_like(z), z)
        angles = (times.double().unsqueeze(-1) * self.frequencies.double()).remainder(2 * math.pi)
        dtype = self.time_features.weight.dtype
        z, angles = z.to(dtype), angles.to(dtype)
        feats = torch.cat([z.unsqueeze(-1), torch.sin(angles), torch.cos(angles)], -1)
        return self.mark_embedding(marks) + self.time_features(feats)

    def decode(self, y: torch.Tensor) -> Decoded:
        K, M = self.n_components, self.n_marks
        out = self.head(y)
        mark_log_probs = F.log_softmax(out[..., :M], -1)
        params = out[..., M:].unflatten(-1, (3, M if self.mark_conditional else 1, K))
        comp_log_weights = F.log_softmax(params[..., 0, :, :], -1)  # P(c | k)
        loc = self.log_tau_mean + self.log_tau_std * params[..., 1, :, :]
        scale = self.log_tau_std * torch.exp(params[..., 2, :, :].clamp(*LOG_SCALE_RANGE))
        shape = (*y.shape[:-1], M, K)
        return Decoded(
            (mark_log_probs.unsqueeze(-1) + comp_log_weights).expand(shape),
            loc.expand(shape),
            scale.expand(shape),
            mark_log_probs,
        )

    def step(self, token: torch.Tensor, state, time: torch.Tensor):
        """One token ``(1, d_model)`` at event time ``time`` ``(1,)`` (float64)."""
        if self.recency:
            return self.encoder.step(token, state, time)
        return self.encoder.step(token, state)

    def start_tokens(self, t_start: torch.Tensor) -> torch.Tensor:
        marks = torch.full(t_start.shape, self.n_marks, dtype=torch.long, device=t_start.device)
        return self.tokens(torch.ones_like(t_start), t_start, marks)

    # ------------------------------------------------------------------ likelihood
    def event_terms(self, batch: PaddedEvents):
        """Per-event time and mark log-likelihoods ``(B, N)`` (0 at padding), the survival
        term of each sequence's open interval ``(B,)``, and the decoded outputs ``(B, N+1)``.
        """
        start = self.start_tokens(batch.t_start).unsqueeze(1)
        x = torch.cat([start, self.tokens(batch.tau, batch.times, batch.marks_in)], 1)
        if self.recency:  # Aaren's recency term on event times (start token at t_start)
            y, _ = self.encoder(x, None, torch.cat([batch.t_start.unsqueeze(1), batch.times], 1))
        else:
            y, _ = self.encoder(x)
        dec = self.decode(y)
        prior = Decoded(*(p[:, :-1] for p in dec))  # outputs before each event
        tau = batch.tau.clamp_min(self.min_inter_time)
        time_ll, mark_ll = prior.event_log_likelihood(tau, batch.marks_in)
        time_ll, mark_ll = time_ll * batch.mask, mark_ll * batch.mask
        last = Decoded(*(p[torch.arange(len(batch.lengths)), batch.lengths] for p in dec))
        survival = last.log_survival((batch.t_end - batch.last_time).to(y.dtype))
        return time_ll, mark_ll, survival, dec


class PaddedEvents(NamedTuple):
    """Right-padded event batch (padding: mark 0, tau 1, time = last time; masked out)."""

    times: torch.Tensor  # (B, N)
    tau: torch.Tensor  # (B, N) inter-event times, tau_1 = t_1 - t_start
    marks_in: torch.Tensor  # (B, N) long
    mask: torch.Tensor  # (B, N) float, 1 on events
    lengths: torch.Tensor  # (B,) long
    t_start: torch.Tensor  # (B,)
    t_end: torch.Tensor  # (B,)
    last_time: torch.Tensor  # (B,) last event time


def pad_events(sequences, device, dtype=torch.float32) -> PaddedEvents:
    """``EventSequence`` list -> ``PaddedEvents`` (times as float64 differences first, so that
    ``tau`` is exact before the cast)."""
    import numpy as np

    n = max(len(s.times) for s in sequences)
    B = len(sequences)
    times = np.zeros((B, n))
    tau = np.ones((B, n))
    marks = np.zeros((B, n), dtype=np.int64)
    mask = np.zeros((B, n))
    for b, s in enumerate(sequences):
        m = len(s.times)
        times[b, :m] = s.times
        times[b, m:] = s.times[-1]
        tau[b, :m] = np.diff(s.times, prepend=s.t_start)
        marks[b, :m] = s.marks
        mask[b, :m] = 1.0
    lengths = np.array([len(s.times) for s in sequences])

    def t(a, dt=dtype):
        return torch.as_tensor(a, dtype=dt, device=device)

    return PaddedEvents(
        t(times, torch.float64),
        t(tau),
        torch.as_tensor(marks, device=device),
        t(mask),
        torch.as_tensor(lengths, device=device),
        t([s.t_start for s in sequences], torch.float64),
        t([s.t_end for s in sequences], torch.float64),
        t([s.times[-1] for s in sequences], torch.float64),
    )
