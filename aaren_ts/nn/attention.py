"""``AarenAttention``: multi-head attention of one learned query over every prefix.

Per layer there is one learned query vector (``d_model`` wide), projected per head like a
Transformer's queries; keys and values are projected from the input. The scores
``s_i = <q_h, k_i> / sqrt(d_head)`` and values feed the scan core, so each position's output
attends over its whole prefix, in parallel (``forward``) or one token at a time (``step``).

Optional recency (``recency=True``): a learnable per-head rate ``lambda_h`` (initialised at 0)
adds ``lambda_h * t_i`` to the scores, with ``t_i`` the position or a given timestamp: an
exponential recency weighting (``lambda_h > 0`` favours recent tokens). Softmax ignores a shift
common to a prefix, so scores are written relative to the newest token's time and the carried
state is re-levelled by ``lambda_h * (t_old - t_new)``: no large ``t`` ever enters float32,
however long the stream (``aaren_math.md`` section 6).
"""

from __future__ import annotations

import math
import weakref
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import positive_int
from ..scan import ScanState, aaren_attention, aaren_reduce, aaren_step, init_state, state_output
from ..scan.recurrent import fitting_step, state_fits
from ..scan.state import absorb_tokens, canonical
from ._fast import call


def _time_dtype(device: torch.device | str | None) -> torch.dtype:
    """float64 for clocks (1e9-second timestamps keep sub-second steps), except on Apple's MPS,
    which has no float64."""
    return torch.float32 if torch.device(device or "cpu").type == "mps" else torch.float64


# layer -> its folded step projection, kept outside the module so that it never enters a
# state dict, a pickle or a deep copy (see ``AarenAttention._step_projection``)
_STEP_PROJECTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# Up to this many tokens without gradients, ``forward`` takes them as one small block
# (``AarenAttention._forward_few``): a policy's act feeds 2-3 tokens per call.
_FEW_TOKENS = 4

# Optimiser steps taken in this process, part of every kept projection's key: torch's fused
# optimisers (``fused=True``, which aaren_ts's own training uses) write the parameters in
# place without moving their version counters, so versions alone missed their updates.
_OPTIMISER_STEPS = [0]
_COUNTING: list = []  # the registered hook's handle, once a projection is first kept


def _count_optimiser_step(optimizer, args, kwargs) -> None:
    _OPTIMISER_STEPS[0] += 1


def _count_optimiser_steps() -> None:
    """Count every optimiser step from now on (torch calls the hook after any ``step``)."""
    if not _COUNTING:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        _COUNTING.append(register_optimizer_step_post_hook(_count_optimiser_step))


class AttentionState(NamedTuple):
    """Stream state of one ``AarenAttention`` layer.

    ``scan``: the per-head scan state, batch shape ``(batch, n_heads)``, value size ``d_head``.
    ``time``: ``(batch,)``, the time of the last token absorbed (positions count from 0; only
    differences matter), float64 (float32 on MPS).
    """

    scan: ScanState
    time: torch.Tensor


class AarenAttention(nn.Module):
    """Multi-head Aaren attention with a learned query.

    Parameters
    ----------
    d_model : int
        Input and output width.
    n_heads : int
        Number of heads; must divide ``d_model``.
    recency : bool, default False
        Add a learnable per-head score term linear in position or timestamp.
    bias : bool, default True
        Bias in the key, value, query and output projections.
    scan_backend : str, default "auto"
        Passed to ``aaren_attention`` (``"chunked"``, ``"recurrent"``, ``"naive"``...).

    Examples
    --------
    >>> import torch
    >>> attn = AarenAttention(d_model=16, n_heads=4)
    >>> y, state = attn(torch.randn(2, 10, 16))
    >>> y.shape
    torch.Size([2, 10, 16])
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        recency: bool = False,
        bias: bool = True,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        d_model, n_heads = positive_int(d_model, "d_model"), positive_int(n_heads, "n_heads")
        if d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.scan_backend = scan_backend
        self.query = nn.Parameter(torch.randn(d_model))
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.recency_rate = nn.Parameter(torch.zeros(n_heads)) if recency else None

    def init_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> AttentionState:
        """The empty state for ``batch`` streams (float32, or float64 for float64 models)."""
        dtype = dtype or self.query.dtype
        device = device if device is not None else self.query.device
        scan = init_state((batch, self.n_heads), self.d_head, dtype, device)
        return AttentionState(scan, torch.zeros(batch, dtype=_time_dtype(device), device=device))

    def _head_query(self) -> torch.Tensor:
        # (n_heads, d_head), with the 1/sqrt(d_head) scale folded in.
        return self.q_proj(self.query).view(self.n_heads, self.d_head) / math.sqrt(self.d_head)

    def _score_projection(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Key projection and query folded into one ``d_model -> n_heads`` map.

        With one query per head the keys are only ever read through ``<q_h, k_i>``, so
        ``s_i = (q_h^T W_k,h) x_i + q_h^T b_k,h``: a ``(n_heads, d_model)`` weight built from
        the parameters each call (gradients reach ``W_k``, ``b_k`` and the query through it),
        and the ``d_model x d_model`` key matmul is never done, forward or backward.
        """
        q = self._head_query()
        weight = self.k_proj.weight.view(self.n_heads, self.d_head, self.d_model)
        weight = torch.einsum("hd,hdi->hi", q, weight)
        bias = self.k_proj.bias
        bias = None if bias is None else (bias.view(self.n_heads, self.d_head) * q).sum(-1)
        return weight, bias

    def _step_projection(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The value projection and the folded score projection stacked into one
        ``d_model -> d_model + n_heads`` map, for steps without gradients.

        Folding the query into the keys costs a dozen small tensor operations, as much as
        the rest of a stream's step; the weights only change when a parameter does, so
        the result is kept until one of them is written in place (its version counter
        moves: ``load_state_dict``, an in-place operation), replaced, or any optimiser takes
        a step (fused optimisers leave version counters alone). The entry holds the
        parameters' storages, so a replaced one can never reuse its address. Writes through
        ``.data`` are not seen: they bypass both.
        """
        # read through the parameter dicts: on Python 3.11 every attribute that reaches
        # nn.Module.__getattr__ first raises (and formats) an AttributeError, ten per step here
        modules = self._modules
        params = (
            self._parameters["query"],
            *(modules[name]._parameters[kind] for name in ("q_proj", "k_proj", "v_proj")
              for kind in ("weight", "bias")),
        )  # fmt: skip
        _count_optimiser_steps()
        key = (
            _OPTIMISER_STEPS[0],
            *((p.data_ptr(), p._version) if p is not None else None for p in params),
        )
        entry = _STEP_PROJECTIONS.get(self)
        if entry is not None and entry[0] == key:
            return entry[2], entry[3]
        with torch.no_grad():
            score_weight, score_bias = self._score_projection()
            weight = torch.cat([self.v_proj.weight, score_weight])
            bias = self.v_proj.bias
            if bias is not None:
                bias = torch.cat([bias, score_bias])
        held = tuple(p.detach() for p in params if p is not None)  # keeps the storages
        _STEP_PROJECTIONS[self] = (key, held, weight, bias)
        return weight, bias

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Query-key scores ``(..., n_heads)`` of tokens ``x`` ``(..., d_model)``, scale
        included, before any recency term."""
        return F.linear(x, *self._score_projection())

    def _relevel(self, scan: ScanState, shift: torch.Tensor) -> ScanState:
        """Add ``shift`` ``(batch, n_heads)`` to every score of the carried prefix."""
        return ScanState(scan.m + shift.to(scan.m.dtype), scan.u, scan.w)

    def forward(
        self,
        x: torch.Tensor,
        state: AttentionState | None = None,
        times: torch.Tensor | None = None,
        *,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, AttentionState]:
        """Attend over every prefix of ``x`` ``(batch, time, d_model)`` after ``state``.

        ``times`` ``(batch, time)``: timestamps for the recency term (default: positions).
        With ``last_only`` the output is the last position's only, ``(batch, d_model)``,
        from one reduction over the tokens (``aaren_reduce``) instead of the scan; the state
        is the same.
        """
        if x.dim() != 3 or x.shape[-1] != self.d_model or not x.is_floating_point():
            raise ValueError(
                f"x must be a floating-point tensor of shape (batch, time, d_model="
                f"{self.d_model}), got {x.dtype} of shape {tuple(x.shape)}"
            )
        batch, n, _ = x.shape
        if last_only and n == 0:
            raise ValueError("last_only needs at least one token: x has none")
        if state is None:
            state = self.init_state(batch, x.device)
        if n and n <= _FEW_TOKENS and times is None and not torch.is_grad_enabled():
            few = self._forward_few(x, state, last_only)
            if few is not None:
                return few
        if torch.is_grad_enabled():
            values = self.v_proj(x)
            scores = self.scores(x)
        else:  # inference (a stream's update, a policy's act): the weights folded once
            projected = F.linear(x, *self._step_projection())
            values, scores = projected[..., : self.d_model], projected[..., self.d_model :]
        values = values.reshape(batch, n, self.n_heads, self.d_head).transpose(1, 2)
        scores = scores.transpose(1, 2)  # (batch, n_heads, n)
        scan, time = state
        if times is not None:
            times = times.to(device=x.device, dtype=time.dtype)
            new_time = times[:, -1] if n else time
        else:
            new_time = time + n  # positions: one per token
            if self.recency_rate is not None:  # only the recency term reads every position
                steps = torch.arange(1, n + 1, device=x.device, dtype=time.dtype)
                times = time.unsqueeze(-1) + steps
        if self.recency_rate is not None and n:
            rate = self.recency_rate.unsqueeze(0)  # (1, n_heads)
            # Relative to the newest token: t_i - t_end <= 0, small, exact in float64.
            age = (times - new_time.unsqueeze(-1)).to(scores.dtype)  # (batch, n)
            scores = scores + rate.unsqueeze(-1) * age.unsqueeze(1)
            scan = self._relevel(scan, rate * (time - new_time).unsqueeze(-1).to(rate.dtype))
        if last_only:  # (batch, n_heads, d_head) -> (batch, d_model)
            scan = aaren_reduce(scores, values, scan)
            out = state_output(scan).to(values.dtype).reshape(batch, self.d_model)
            return call(self._modules["out_proj"], out), AttentionState(scan, new_time)
        out, scan = aaren_attention(
            scores, values, scan, return_state=True, backend=self.scan_backend
        )
        out = out.transpose(1, 2).reshape(batch, n, self.d_model)
        return call(self._modules["out_proj"], out), AttentionState(scan, new_time)

    def _forward_few(
        self, x: torch.Tensor, state: AttentionState, last_only: bool
    ) -> tuple[torch.Tensor, AttentionState] | None:
        """``forward`` of a few tokens without gradients (a policy's act, a stream's short
        update), or None where the state does not fit them (another dtype or shape: the
        general path then checks and casts). One projection for all tokens, then
        ``absorb_tokens``: the tokens' weights as one small block, where the parallel
        scan's dispatch and checks cost more than its arithmetic. Equal to ``step`` token
        by token up to rounding (recency included: each earlier score is ``rate`` lower per
        later token, the carried prefix ``n * rate`` lower)."""
        batch, n, _ = x.shape
        scan, time = state
        projected = F.linear(x, *self._step_projection())
        scores = projected[..., self.d_model :].transpose(1, 2)  # (batch, n_heads, n)
        values = projected[..., : self.d_model].reshape(batch, n, self.n_heads, self.d_head)
        values = values.transpose(1, 2)  # (batch, n_heads, n, d_head)
        if not state_fits(scan, scores[..., 0], values[..., 0, :]):  # the step's own test
            return None
        rate = self._parameters.get("recency_rate")  # see step
        if rate is not None:
            age = torch.arange(1 - n, 1, device=x.device, dtype=scores.dtype)  # i - n
            scores = scores + rate.unsqueeze(-1) * age
            scan = ScanState(scan.m - n * rate, scan.u, scan.w)
        outs, scan = absorb_tokens(canonical(scan), scores, values)
        if last_only:
            out = outs[:, :, -1].reshape(batch, self.d_model)
        else:
            out = outs.transpose(1, 2).reshape(batch, n, self.d_model)
        return call(self._modules["out_proj"], out), AttentionState(scan, time + n)

    def step(
        self,
        x_t: torch.Tensor,
        state: AttentionState | None = None,
        time: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, AttentionState]:
        """Absorb one token ``x_t`` ``(batch, d_model)`` in O(1); ``time`` ``(batch,)`` optional."""
        batch = x_t.shape[0]
        if state is None:
            state = self.init_state(batch, x_t.device)
        if torch.is_grad_enabled():  # training through steps: gradients reach every weight
            value = self.v_proj(x_t).view(batch, self.n_heads, self.d_head)
            score = self.scores(x_t)  # (batch, n_heads)
        else:  # a stream's step: one matmul for values and scores, weights folded once
            projected = F.linear(x_t, *self._step_projection())
            value = projected[:, : self.d_model].view(batch, self.n_heads, self.d_head)
            score = projected[:, self.d_model :]
        scan, old_time = state
        new_time = old_time + 1 if time is None else time.to(old_time)
        recency_rate = self._parameters.get("recency_rate")  # None without recency; see _fast
        if recency_rate is not None:
            if time is None:  # one position on: the shift rate * (-1) is exactly -rate
                # (batch, n_heads) - (n_heads,): broadcast and promoted in the one call
                scan = ScanState(scan.m - recency_rate, scan.u, scan.w)
            else:
                rate = recency_rate.unsqueeze(0)
                age = (old_time - new_time).unsqueeze(-1).to(rate.dtype)
                scan = self._relevel(scan, rate * age)
        # a state of this layer's own dtype and shape skips aaren_step's checks (same numbers)
        stepped = fitting_step(scan, score, value)
        out, scan = aaren_step(scan, score, value) if stepped is None else stepped
        out = call(self._modules["out_proj"], out.reshape(batch, self.d_model))
        return out, AttentionState(scan, new_time)
