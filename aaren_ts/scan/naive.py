"""The O(N^2) oracle: an explicit causally masked softmax over every prefix.

Slow and memory-hungry on purpose: it is the independent reference that every fast path is
tested against, written the way the definition reads,
``o_k = sum_{i<=k} softmax(s_1..s_k)_i * v_i``.
"""

from __future__ import annotations

import math

import torch

from .state import ScanState, combine, safe_reference


def naive_attention(
    scores: torch.Tensor, values: torch.Tensor, state: ScanState
) -> tuple[torch.Tensor, ScanState]:
    """Masked-softmax attention of every prefix, continuing from ``state``.

    ``scores`` ``(R, N)``, ``values`` ``(R, N, D)`` and ``state`` are already in the accumulation
    dtype. The carried prefix enters as one extra leading token of score ``m + log(u)`` and
    value ``w / u`` (weight 0 when the prefix is empty), which is exactly what it summarises.
    """
    n = scores.shape[-1]
    m0, u0, w0 = state
    prior_score = torch.where(u0 > 0, m0 + torch.log(u0), torch.full_like(m0, -math.inf))
    prior_value = w0 / torch.where(u0 > 0, u0, torch.ones_like(u0)).unsqueeze(-1)
    all_scores = torch.cat([prior_score.unsqueeze(-1), scores], dim=-1)  # (R, N + 1)
    all_values = torch.cat([prior_value.unsqueeze(-2), values], dim=-2)  # (R, N + 1, D)

    # Row k sees the prior token and scores 1..k.
    visible = torch.ones(n, n + 1, dtype=torch.bool, device=scores.device).tril(diagonal=1)
    logits = all_scores.unsqueeze(-2).expand(*scores.shape[:-1], n, n + 1)
    logits = logits.masked_fill(~visible, -math.inf)
    weights = torch.softmax(logits, dim=-1)
    # A row with no finite score has no weight at all: output 0, as SDPA gives a masked row.
    empty_row = (logits == -math.inf).all(dim=-1, keepdim=True)
    weights = weights.masked_fill(empty_row, 0.0)
    outputs = weights @ all_values

    # The final state: the whole block's (max, sum, weighted sum) folded into the prior.
    if n == 0:
        return outputs, state
    block_max = scores.detach().amax(dim=-1)
    e = torch.exp(scores - safe_reference(block_max).unsqueeze(-1))
    block = ScanState(block_max, e.sum(-1), (e.unsqueeze(-1) * values).sum(-2))
    return outputs, combine(state, block)
