"""The Aaren scan state and the associative operator that combines two states.

State layout ``(m, u, w)`` for a prefix of scores ``s_1..s_k`` and values ``v_1..v_k``:

- ``m`` shape ``(...)``: a reference level, the running max of the scores (``-inf`` when empty);
- ``u`` shape ``(...)``: ``sum_i exp(s_i - m)``;
- ``w`` shape ``(..., D)``: ``sum_i exp(s_i - m) * v_i``.

The attention output of the prefix is ``w / u``. Any ``m`` gives the same prefix (scaling ``u``
and ``w`` by ``exp(m_old - m_new)``); keeping it at the running max keeps every ``exp`` at or
below 1, so nothing overflows. The empty prefix is ``(-inf, 0, 0)``: it is the identity of the
operator and its output is defined as 0 (as ``scaled_dot_product_attention`` does for a fully
masked row). States are accumulated in float32, or float64 when the inputs are float64.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import torch


class ScanState(NamedTuple):
    """Summary of a scanned prefix: ``(m, u, w)`` (see the module docstring)."""

    m: torch.Tensor
    u: torch.Tensor
    w: torch.Tensor


def accumulation_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """float64 if any input is float64, else float32 (half inputs are accumulated in float32)."""
    return torch.float64 if torch.float64 in dtypes else torch.float32


def init_state(
    batch_shape: Sequence[int] | int,
    d: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> ScanState:
    """The empty-prefix state ``(m=-inf, u=0, w=0)`` for ``batch_shape`` and value size ``d``.

    Examples
    --------
    >>> s = init_state((2, 3), 4)
    >>> s.m.shape, s.u.shape, s.w.shape
    (torch.Size([2, 3]), torch.Size([2, 3]), torch.Size([2, 3, 4]))
    """
    if isinstance(batch_shape, numbers.Integral):
        batch_shape = (batch_shape,)
    try:
        batch_shape = tuple(batch_shape)
    except TypeError:
        raise TypeError(
            f"batch_shape must be an int or a tuple of ints, got {batch_shape!r}"
        ) from None
    for size in (*batch_shape, d):
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise TypeError(f"batch_shape {batch_shape!r} and d={d!r} must be ints")
        if size < 0:
            raise ValueError(f"batch_shape {batch_shape} and d={d} must be >= 0")
    dtype = accumulation_dtype(dtype)
    m = torch.full(batch_shape, -math.inf, dtype=dtype, device=device)
    u = torch.zeros(batch_shape, dtype=dtype, device=device)
    w = torch.zeros((*batch_shape, d), dtype=dtype, device=device)
    return ScanState(m, u, w)


def safe_reference(m: torch.Tensor) -> torch.Tensor:
    """``m`` with ``-inf`` replaced by 0, so that ``exp(x - ref)`` never computes ``-inf + inf``.

    NaN is kept: NaN input must come out as NaN, never be repaired.
    """
    return torch.nan_to_num(m, nan=math.nan, posinf=math.inf, neginf=0.0)


def combine(a: ScanState, b: ScanState) -> ScanState:
    """The associative Aaren operator ``a (+) b``: the prefix ``a`` followed by ``b``.

    Shapes broadcast. The new reference level (the max) carries no gradient: the output
    ``w / u`` does not depend on it, so detaching it is exact and keeps autograd away from the
    max. The inputs' own ``m`` keep theirs: for a leaf ``(s_i, 1, v_i)`` it is the score.
    """
    m, scale_a, scale_b = _common_level(a.m, b.m)
    u = torch.addcmul(b.u * scale_b, a.u, scale_a)
    w = torch.addcmul(b.w * scale_b.unsqueeze(-1), a.w, scale_a.unsqueeze(-1))
    return ScanState(m, u, w)


def absorb(a: ScanState, score: torch.Tensor, value: torch.Tensor) -> ScanState:
    """``combine(a, ScanState(score, 1, value))``: the prefix ``a`` followed by one token, the
    same numbers without building the leaf's ``u = 1`` (``1 * scale`` is exactly ``scale``).
    A stream's step does this per layer and token."""
    m, scale_a, scale_b = _common_level(a.m, score)
    u = torch.addcmul(scale_b, a.u, scale_a)
    w = torch.addcmul(value * scale_b.unsqueeze(-1), a.w, scale_a.unsqueeze(-1))
    return ScanState(m, u, w)


def absorb_tokens(
    a: ScanState, scores: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, ScanState]:
    """The prefix ``a`` (canonical) followed by a few tokens at once: the outputs after each
    token ``(..., n, D)`` and the state after the last, equal to ``absorb`` token by token up
    to rounding. ``scores`` ``(..., n)``, ``values`` ``(..., n, D)``, one dtype with ``a``.

    One block of ``n x n`` weights (each prefix's own maximum as its level) instead of ``n``
    sequential updates: some twenty operations whatever ``n``, for the handful of tokens a
    stream or a policy's act feeds at once (quadratic in ``n``: not for long inputs). A NaN
    score makes its prefix and every later one NaN and leaves earlier ones untouched, as
    token by token; an all ``-inf`` prefix reads as output 0.
    """
    n = scores.shape[-1]
    levels = torch.maximum(torch.cummax(scores, -1).values, a.m.unsqueeze(-1))  # (..., n)
    ref = safe_reference(levels)
    prior = torch.exp(a.m.unsqueeze(-1) - ref)  # (..., n): the prefix a at each level
    later = torch.ones(n, n, dtype=torch.bool, device=scores.device).triu(1)
    # token i's weight in prefix k: exp(s_i - level_k) for i <= k, exactly 0 after k
    weights = torch.exp((scores.unsqueeze(-2) - ref.unsqueeze(-1)).masked_fill(later, -math.inf))
    u = torch.addcmul(weights.sum(-1), prior, a.u.unsqueeze(-1))
    w = torch.addcmul(weights @ values, prior.unsqueeze(-1), a.w.unsqueeze(-2))
    outputs = w / safe_denominator(u).unsqueeze(-1)
    return outputs, ScanState(levels[..., -1], u[..., -1], w[..., -1, :])


def _common_level(
    m_a: torch.Tensor, m_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The joined reference level (the max, detached) and each side's factor to it."""
    m = torch.maximum(m_a, m_b).detach()
    ref = safe_reference(m)
    return m, torch.exp(m_a - ref), torch.exp(m_b - ref)


def canonical(state: ScanState) -> ScanState:
    """``state`` with an empty prefix (``u = 0``) at reference ``-inf``, whatever level it
    was written with."""
    m, u, w = state
    return ScanState(m.masked_fill(u == 0, -math.inf), u, w)


def safe_denominator(u: torch.Tensor) -> torch.Tensor:
    """``u`` where positive, else 1: an empty prefix (``u = w = 0``) reads as output 0.

    NaN stays NaN through ``w`` (``NaN > 0`` is false, but ``w`` is NaN too), and the
    gradient of ``w / safe_denominator(u)`` is finite for the empty prefix.
    """
    return torch.where(u > 0, u, 1.0)  # one call fewer than masked_fill(~(u > 0), 1.0)


def state_output(state: ScanState) -> torch.Tensor:
    """The attention output ``w / u`` of a state (0 for the empty prefix)."""
    return state.w / safe_denominator(state.u).unsqueeze(-1)


def cast_state(state: ScanState, dtype: torch.dtype, device: torch.device) -> ScanState:
    """``state`` in ``dtype`` on ``device`` (a no-op when it already is)."""
    return ScanState(*(t.to(dtype=dtype, device=device) for t in state))
