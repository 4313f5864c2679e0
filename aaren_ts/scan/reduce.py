"""The many-to-one form: the state after a whole block of tokens, without every prefix's output.

Attention of one query is a many-to-one RNN (``aaren_math.md``): its output after the last
token needs only ``(max, sum of exp, weighted sum of values)`` over the block, one reduction
per row, where ``aaren_attention`` gives all N prefixes' outputs. A model that reads only the
last position (a windowed forecast's head, the top layer of a stack read at its end) needs
no more than this from its last attention layer: O(N) work per row instead of a scan or an
``(N, N)`` block. The block's summary is folded into a carried ``state`` with the scan's own
operator, so this equals ``aaren_attention(..., return_state=True)``'s final state.
"""

from __future__ import annotations

import torch

from .checks import check_sequence_inputs, prepare_state
from .state import ScanState, accumulation_dtype, combine, safe_reference


def aaren_reduce(
    scores: torch.Tensor, values: torch.Tensor, state: ScanState | None = None
) -> ScanState:
    """The state after ``state`` followed by every token of the block.

    Parameters
    ----------
    scores : torch.Tensor
        Shape ``(..., N)``: the query-key scores (scale already applied).
    values : torch.Tensor
        Shape ``(..., N, D)``.
    state : ScanState, optional
        A carried prefix (``None``: empty).

    Returns
    -------
    ScanState
        ``(m, u, w)`` after the last token, accumulated in float32 (float64 for float64
        inputs): the same state as ``aaren_attention(scores, values, state,
        return_state=True)[1]``. ``state_output`` of it is the last position's output (0 for
        an all ``-inf`` row; NaN in the inputs gives NaN). Differentiable (first and higher
        order, plain autograd); the level (the max) carries no gradient, as in ``combine``.

    Examples
    --------
    >>> import torch
    >>> from aaren_ts.scan import aaren_attention, aaren_reduce, state_output
    >>> s, v = torch.randn(2, 8), torch.randn(2, 8, 4)
    >>> last = state_output(aaren_reduce(s, v))          # O(N): the last output only
    >>> torch.allclose(last, aaren_attention(s, v)[:, -1], atol=1e-6)
    True
    """
    score_shape, d, _ = check_sequence_inputs(scores, values)
    acc = accumulation_dtype(scores.dtype, values.dtype)
    state = prepare_state(state, score_shape[:-1], d, acc, scores.device)
    if score_shape[-1] == 0:
        return state
    scores, values = scores.to(acc), values.to(acc)
    level = scores.detach().amax(-1)
    weights = torch.exp(scores - safe_reference(level).unsqueeze(-1))  # (..., N), at most 1
    block = ScanState(level, weights.sum(-1), (weights.unsqueeze(-2) @ values).squeeze(-2))
    return combine(state, block)
