"""The dense form for short sequences: every prefix's softmax as one masked ``(N, N)`` block.

For a dozen tokens (patch tokens, a short window) the chunked scan's fixed cost, a few dozen
small kernels forward and as many backward, outweighs its ``O(N)`` arithmetic. Here the
prefix weights are one lower-triangular matrix per row, ``E_ki = exp(s_i - M_k)`` for
``i <= k`` with ``M_k`` the prefix max, and the outputs one batched product ``E @ v``: a
handful of kernels, ``O(N^2)`` work, exact, and differentiated by autograd (every input to an
``exp`` is clamped to at most 0, so neither direction overflows). It is not cheaper everywhere: on a
CPU the batched ``(N, N) @ (N, D)`` products are slow once the weights outgrow the cache, and
the chunked scan's fixed cost is amortised over many rows. ``"auto"`` uses it while the
weights ``rows x N x N`` stay within ``DENSE_SMALL_WEIGHTS`` elements, or within
``DENSE_MAX_WEIGHTS`` for at most ``DENSE_MAX_TOKENS`` tokens or ``DENSE_FEW_ROWS`` rows; without
gradients, while they stay within ``DENSE_FORWARD_WEIGHTS``.

Two cases. From an empty state with no row starting empty (training's usual call) the
weights need no prior term and every denominator is at least 1. Otherwise the carried
prefix enters the numerator and denominator directly as ``exp(m0 - M_k) * (w0, u0)``
(unlike ``naive.py``, the oracle it is tested against, it is no token: an empty prefix costs
no ``log(0)`` and its gradient stays finite), and the last row's numerator and denominator,
at level ``M_N``, are the final state.
"""

from __future__ import annotations

import math

import torch

from .chunked_grad import chunked_attention
from .state import ScanState, safe_denominator, safe_reference

# "auto" takes the dense form while rows x N x N is at most DENSE_SMALL_WEIGHTS, whatever the
# shape, and up to DENSE_MAX_WEIGHTS (512 KiB of float32 weights) for at most
# DENSE_MAX_TOKENS tokens or at most DENSE_FEW_ROWS rows (a few rows of a longer sequence:
# full-history training of one short series, whose 4 heads read up to ~180 tokens). Measured
# with benchmarks/short_sequences.py and the same timer at the bounds (fwd+bwd, one thread,
# d_head 8 and 32): 0.4-0.65x the chunked scan's time at 128 rows x 4-12 tokens, 1,024 x 4
# and 8,192 x 4; about equal at 1,024 x 12; 0.35-0.7x within 65,536 weights at any shape
# (4 x 32-128, 16 x 32-64, 64 x 32); 0.4-0.99x at 131,072 with at most 32 rows (4 x 181,
# 8 x 128, 32 x 64, 2 x 256); but 1.3x at 128 x 32 and 1.3-18x beyond 131,072 (128 x 64,
# 4 x 256, 16 x 128: the batched (N, N) products), which the bounds keep out.
# Without gradients (inference) the chunked scan has no backward to pay for, and the dense
# form wins only on smaller blocks: up to DENSE_FORWARD_WEIGHTS (forward alone, same timer:
# 0.45-0.86x up to 16,384 weights; 0.8-1.1x at 65,536; 1.5-2.2x at 512 x 16).
DENSE_FORWARD_WEIGHTS = 16384
DENSE_MAX_TOKENS = 16
DENSE_FEW_ROWS = 32
DENSE_MAX_WEIGHTS = 131072
DENSE_SMALL_WEIGHTS = 65536


def fresh_start(scores: torch.Tensor, state: ScanState) -> bool:
    """Training's usual case: no carried prefix and no row that starts empty (an empty
    prefix needs its first score to be -inf): no prior term, and no denominator below 1."""
    return not bool(state.u.any()) and bool((scores[:, 0] > -math.inf).all())


def dense_attention(
    scores: torch.Tensor, values: torch.Tensor, state: ScanState
) -> tuple[torch.Tensor, ScanState]:
    """Masked-softmax attention of every prefix of ``scores`` ``(R, N)``, ``values``
    ``(R, N, D)`` after ``state``, all in the accumulation dtype."""
    n = scores.shape[-1]
    if n == 0:
        return values.clone(), state
    if not bool(torch.isfinite(values).all()):
        # A masked weight is an exact 0, but 0 * NaN (or inf) is NaN: in the product a bad
        # value would reach the rows before it. The chunked scan keeps NaN causal.
        return chunked_attention(scores, values, state)
    # (torch.softmax over the masked logits is exact too, but 10x slower here on a CPU.)
    fresh = fresh_start(scores, state)
    m0, u0, w0 = state
    # Levels carry no gradient: the outputs do not depend on them (state.combine's argument).
    with torch.no_grad():
        level = scores.cummax(dim=-1).values  # (R, N)
        if not fresh:
            level = safe_reference(torch.maximum(level, m0.unsqueeze(-1)))
    # (R, N, N), row k: tokens 1..k relative to M_k
    weights = _weights(scores.unsqueeze(-2) - level.unsqueeze(-1))
    denom = weights.sum(-1)
    numer = torch.bmm(weights, values)
    if not fresh:
        prior = torch.exp(m0.unsqueeze(-1) - level)  # (R, N); 0 for an empty prefix
        denom = denom + prior * u0.unsqueeze(-1)
        numer = numer + prior.unsqueeze(-1) * w0.unsqueeze(-2)
    # A reciprocal and a product: cheaper to differentiate than a broadcast division.
    outputs = numer * (denom if fresh else safe_denominator(denom)).reciprocal().unsqueeze(-1)
    return outputs, ScanState(level[:, -1], denom[:, -1], numer[:, -1])


# exp below about -87 (float32) gives subnormal numbers, which CPUs compute 10-30x slower;
# weights under exp(-80) are under 1e-34 of the row max's own weight 1: they are dropped.
_FLOOR = {torch.float32: -80.0, torch.float64: -700.0}


def _weights(relative: torch.Tensor) -> torch.Tensor:
    """``exp`` of ``relative`` ``(R, N, N)`` (scores minus their row's level) on and below the
    diagonal, exactly 0 above it.

    Weights below ``exp(floor)`` are exactly 0 (a -inf score is a masked token, and the rest
    would be subnormal; NaN is kept). The exponent is clamped to ``[floor, 0]``: on and below
    the diagonal that changes nothing kept (every row level is at least its scores); above
    it, it keeps a later, larger score from overflowing, since an infinite weight would make
    the masked gradient ``0 * inf``.
    """
    n = relative.shape[-1]
    return floored_exp(relative, torch.ones(n, n, dtype=torch.bool, device=relative.device).tril())


def floored_exp(relative: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``exp(relative)`` (scores minus a level at least as large) where ``mask`` allows,
    exactly 0 elsewhere and below ``exp(floor)`` (see ``_weights``; NaN is kept)."""
    floor = _FLOOR[relative.dtype]
    kept = ~(relative < floor) if mask is None else mask & ~(relative < floor)
    return torch.where(kept, relative.clamp(floor, 0.0).exp(), 0.0)
