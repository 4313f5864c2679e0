"""The dense form with a hand-written backward, for training on short fresh sequences.

``dense.py`` builds every prefix's softmax as one masked ``(N, N)`` block per row and lets
autograd differentiate it: about a dozen recorded operations forward and twice that backward,
each a small kernel plus the autograd engine's bookkeeping, which on a CPU costs more than
the arithmetic at a dozen tokens (windowed training on patch tokens). Here the same forward
(``dense._weights``, normalised, one batched product) is one autograd node whose backward is
written out: with ``p_kj`` the weight of token ``j`` in prefix ``k`` and ``out_k`` its output,

    dL/dv_j = sum_k p_kj dL/dout_k
    dL/ds_j = sum_k p_kj (dL/dout_k . v_j - dL/dout_k . out_k)

(the softmax Jacobian; the prefix levels cancel). Three batched products and a few
elementwise calls, no graph. First-order only (``once_differentiable``): gradients of
gradients are refused, as with the chunked scan; the ``"dense"`` backend keeps autograd all
the way. Only the training case is handled here (an empty start, no row that starts empty,
finite scores and values, gradients wanted); anything else is ``dense_attention``'s.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from .dense import _weights, dense_attention, floored_exp, fresh_start
from .state import ScanState


class _FreshPrefixSoftmax(torch.autograd.Function):
    """``out_k = sum_{j<=k} softmax(s_1..s_k)_j v_j`` for rows ``(R, N)``, ``(R, N, D)``."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        level = scores.cummax(dim=-1).values  # (R, N): every prefix's max
        weights = _weights(scores.unsqueeze(-2) - level.unsqueeze(-1))  # (R, N, N)
        # fresh: each row's own max has weight 1, so every denominator is at least 1
        weights = weights * weights.sum(-1, keepdim=True).reciprocal()
        out = torch.bmm(weights, values)
        ctx.save_for_backward(weights, values, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights, values, out = ctx.saved_tensors
        grad_scores = grad_values = None
        if ctx.needs_input_grad[1]:
            grad_values = torch.bmm(weights.transpose(1, 2), grad_out)
        if ctx.needs_input_grad[0]:
            against_values = torch.bmm(grad_out, values.transpose(1, 2))  # (R, N, N)
            against_out = (grad_out * out).sum(-1, keepdim=True)  # (R, N, 1)
            grad_scores = (weights * (against_values - against_out)).sum(-2)
        return grad_scores, grad_values


def short_attention(
    scores: torch.Tensor, values: torch.Tensor, state: ScanState
) -> tuple[torch.Tensor, ScanState]:
    """``dense_attention`` with the hand-written backward where it applies (see above)."""
    n = scores.shape[-1]
    wanted = torch.is_grad_enabled() and (scores.requires_grad or values.requires_grad)
    if (
        n == 0
        or not wanted
        or not fresh_start(scores, state)  # a carried prefix, or a row that starts empty
        or not bool((scores < math.inf).all())  # NaN or +inf: dense keeps their rules
        or not bool(torch.isfinite(values).all())
    ):
        return dense_attention(scores, values, state)
    outputs = _FreshPrefixSoftmax.apply(scores, values)
    # the final state, as dense_attention's: the last prefix's level, denominator and
    # numerator (its output times its denominator), differentiable through both
    level = scores.detach().amax(-1)
    denom = floored_exp(scores - level.unsqueeze(-1)).sum(-1)
    return outputs, ScanState(level, denom, outputs[:, -1] * denom.unsqueeze(-1))
