"""The token loop: the RNN cell of the paper (section 3.1), one token at a time.

``aaren_step`` is the O(1) streaming update; ``recurrent_attention`` runs it over a sequence
and is the second reference for the parallel paths. ``scan_leaves`` is the same loop over
general leaves ``(m_i, u_i, w_i)``; the chunked path uses it for chunks whose scores jump too
far for a single stabiliser.
"""

from __future__ import annotations

import torch

from .checks import check_inputs, prepare_state
from .state import ScanState, absorb, accumulation_dtype, canonical, combine, state_output


def scan_leaves(leaves: ScanState, init: ScanState) -> ScanState:
    """Inclusive scan of ``init (+) leaf_1 (+) ... (+) leaf_k`` for every ``k``, token by token.

    ``leaves`` hold ``m``, ``u`` of shape ``(R, N)`` and ``w`` of shape ``(R, N, D)``;
    the result has the same shapes.
    """
    state = init
    ms, us, ws = [], [], []
    # unbind, not indexing: the backward of N separate index ops would write N full-size
    # zero tensors (O(N^2)); unbind's backward stacks the N gradients once.
    for m, u, w in zip(leaves.m.unbind(-1), leaves.u.unbind(-1), leaves.w.unbind(-2), strict=True):
        state = combine(state, ScanState(m, u, w))
        ms.append(state.m)
        us.append(state.u)
        ws.append(state.w)
    if not ms:
        return leaves
    return ScanState(torch.stack(ms, -1), torch.stack(us, -1), torch.stack(ws, -2))


def recurrent_attention(
    scores: torch.Tensor, values: torch.Tensor, state: ScanState
) -> tuple[torch.Tensor, ScanState]:
    """Token-loop attention of ``scores`` ``(R, N)``, ``values`` ``(R, N, D)`` after ``state``."""
    if scores.shape[-1] == 0:
        return values.clone(), state
    leaves = ScanState(scores, torch.ones_like(scores), values)
    states = scan_leaves(leaves, state)
    final = ScanState(states.m[..., -1], states.u[..., -1], states.w[..., -1, :])
    return state_output(states), final


def aaren_step(
    state: ScanState | None, score: torch.Tensor, value: torch.Tensor
) -> tuple[torch.Tensor, ScanState]:
    """Absorb one new token in O(1) time and memory.

    Parameters
    ----------
    state : ScanState or None
        The state of the prefix so far (``None``: empty prefix).
    score : torch.Tensor
        Shape ``(...)``: the new token's score.
    value : torch.Tensor
        Shape ``(..., D)``: the new token's value.

    Returns
    -------
    output : torch.Tensor
        Shape ``(..., D)``: attention output of the prefix including the new token, in the
        promoted dtype of ``score`` and ``value``.
    state : ScanState
        The state including the new token (float32, or float64 for float64 inputs).

    Examples
    --------
    >>> import torch
    >>> from aaren_ts.scan import aaren_attention, aaren_step
    >>> s, v = torch.randn(2, 5), torch.randn(2, 5, 3)
    >>> state = None
    >>> for k in range(5):
    ...     out, state = aaren_step(state, s[:, k], v[:, k])
    >>> torch.allclose(out, aaren_attention(s, v)[:, -1], atol=1e-6)
    True
    """
    batch_shape, d, dtype = check_inputs(score, value, "score", "value", "(..., D)")
    acc = accumulation_dtype(score.dtype, value.dtype)
    state = prepare_state(state, batch_shape, d, acc, score.device)
    new_state = absorb(state, score.to(acc), value.to(acc))
    return state_output(new_state).to(dtype), new_state


def fitting_step(
    state: ScanState, score: torch.Tensor, value: torch.Tensor
) -> tuple[torch.Tensor, ScanState] | None:
    """``aaren_step(state, score, value)`` when the three already fit each other: tensors of
    one floating dtype (float32 or float64, so no cast) on one device, ``state.m`` shaped
    like ``score`` and ``state.w`` like ``value``; None otherwise (``aaren_step`` then checks,
    casts or names the problem).

    The same numbers as ``aaren_step`` (the empty prefix made canonical, then ``absorb``),
    without its argument checks and no-op casts: a stream's layer calls this once per token,
    and those checks cost as much as the arithmetic.
    """
    if not state_fits(state, score, value):
        return None
    new_state = absorb(canonical(state), score, value)
    return state_output(new_state), new_state


def state_fits(state: ScanState, score: torch.Tensor, value: torch.Tensor) -> bool:
    """Whether ``state``, ``score`` ``(...)`` and ``value`` ``(..., D)`` can be combined as
    they are: a ``ScanState`` of tensors, one floating dtype (float32 or float64: nothing to
    cast or accumulate wider), matching shapes, one device."""
    if type(state) is not ScanState:
        return False
    m, u, w = state
    if not (isinstance(m, torch.Tensor) and isinstance(u, torch.Tensor)
            and isinstance(w, torch.Tensor)):  # fmt: skip
        return False
    dtype = score.dtype
    return dtype in (torch.float32, torch.float64) and (
        m.dtype == u.dtype == w.dtype == value.dtype == dtype
        and m.shape == score.shape == u.shape
        and w.shape == value.shape
        and m.device == score.device == value.device == u.device == w.device
    )
