"""The chunked parallel scan in plain PyTorch: exact, O(N) time and memory, autograd, any device.

The sequence is cut into chunks of ``C`` tokens (paper section 3.2, ``aaren_math.md`` section 3):

1. Inside a chunk every score is shifted by the chunk's max ``M``, so ``e_i = exp(s_i - M) <= 1``,
   and the prefix sums ``U = cumsum(e)``, ``W = cumsum(e * v)`` give each row's state relative
   to ``M``. Relative precision holds as long as a row's own prefix max is within ``T`` of
   ``M`` (``T = 60`` in float32, where ``exp`` stays in the normal range with room to spare).
   Rows further below ``M`` would underflow: their chunks are recomputed exactly by the token
   loop (``scan_leaves``), vectorised over all such chunks. NaN scores take that route too,
   which keeps NaN causal: it reaches the rows at and after it, never the ones before.
2. The chunk summaries (each chunk's last row) are scanned the same way, recursively, giving
   the carry into every chunk; the initial state enters here as a leading summary.
3. Every row is combined with its chunk's carry with the associative operator.

Levels above the first see general leaves ``(m_i, u_i, w_i)``; the first sees ``(s_i, 1, v_i)``
and is specialised so that the only tensors of the full ``(R, N, D)`` size are ``e * v`` (its
cumulative sum is taken in place) and the output.
"""

from __future__ import annotations

import math

import torch

from .recurrent import scan_leaves
from .state import ScanState, combine, init_state, safe_denominator, safe_reference

DEFAULT_CHUNK_SIZE = 64

# How far (in nats) a row's prefix max may sit below its chunk's max before the shared
# stabiliser loses precision: exp(-T) must stay a normal number with about eps to spare
# (float32: exp(-87) is the smallest normal, exp(-17) ~ eps; float64: exp(-708), exp(-37)).
_STABLE_RANGE = {torch.float32: 60.0, torch.float64: 600.0}


def _chunk_rows(
    m: torch.Tensor, u: torch.Tensor | None, w: torch.Tensor, chunk: int
) -> tuple[ScanState, torch.Tensor]:
    """Inclusive scan inside each chunk of ``chunk`` leaves.

    ``m``, ``u`` ``(R, N)`` and ``w`` ``(R, N, D)`` with ``N`` a multiple of ``chunk``
    (``u=None`` means every leaf has weight 1). Returns per-row states shaped
    ``(R, n_chunks, chunk)`` and ``(R, n_chunks, chunk, D)`` relative to a reference level
    (the chunk max, or the row's own prefix max for recomputed chunks), and each row's own
    prefix max. Rows are read relative to that max before any division, so that ``u`` is at
    least 1 and neither the output nor its gradient divides by an underflowed number.
    """
    rows, n = m.shape
    d = w.shape[-1]
    n_chunks = n // chunk
    m_c = m.reshape(rows, n_chunks, chunk)
    w_c = w.reshape(rows, n_chunks, chunk, d)
    u_c = None if u is None else u.reshape(rows, n_chunks, chunk)

    chunk_max = m_c.detach().amax(dim=-1, keepdim=True)
    # A leaf (m_i, u_i, w_i) weighs in as exp(m_i - M) * (u_i, w_i); first-level leaves: u_i = 1.
    scale = torch.exp(m_c - safe_reference(chunk_max))
    big_u = (scale if u_c is None else scale * u_c).cumsum(dim=-1)
    # Backward of the product needs its inputs, not the product: the cumsum may overwrite it.
    # (Scores may be float64 over float32 values: the backward scans -logsumexp that way.)
    big_w = (scale.unsqueeze(-1).to(w.dtype) * w_c).cumsum_(dim=-2)

    prefix_max = m_c.detach().cummax(dim=-1).values
    # Rows with nothing in them yet (all -inf so far) have U = W = 0 exactly; their reference
    # must be -inf too, or a carry combined into them later would be scaled away.
    empty = prefix_max == -math.inf
    ref = torch.where(empty, prefix_max, chunk_max)
    # Both the weights (m's dtype) and the weighted values (w's dtype) must stay in range.
    limit = min(_STABLE_RANGE[m.dtype], _STABLE_RANGE[w.dtype])
    row_ok = (prefix_max >= chunk_max - limit) | (empty & ~torch.isnan(chunk_max))
    bad = ~row_ok.all(dim=-1).reshape(-1)
    if bool(bad.any()):
        idx = bad.nonzero().squeeze(-1)
        flat = rows * n_chunks
        leaves = ScanState(
            m_c.reshape(flat, chunk)[idx],
            torch.ones_like(m_c.reshape(flat, chunk)[idx])
            if u_c is None
            else u_c.reshape(flat, chunk)[idx],
            w_c.reshape(flat, chunk, d)[idx],
        )
        exact = scan_leaves(leaves, init_state(idx.shape, d, m.dtype, m.device))
        ref = ref.reshape(flat, chunk).index_copy(0, idx, exact.m).reshape(ref.shape)
        big_u = big_u.reshape(flat, chunk).index_copy(0, idx, exact.u).reshape(big_u.shape)
        exact_w = exact.w.to(big_w.dtype)
        big_w = big_w.reshape(flat, chunk, d).index_copy(0, idx, exact_w).reshape(big_w.shape)
    return ScanState(ref, big_u, big_w), prefix_max


def _rescale_to(rows: ScanState, level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors that move rows from their reference to ``level`` (>= each row's own max).

    At most ``exp(T)`` (the reference is within ``T`` of the row max), 0 for empty rows.
    """
    ref = safe_reference(level)
    return torch.exp(rows.m - ref), ref


def _carries(rows: ScanState, init: ScanState, chunk: int) -> tuple[ScanState, ScanState]:
    """The state before each chunk, and the state after the last one.

    The carry into chunk ``j`` is ``init (+) S_0 (+) ... (+) S_{j-1}`` with ``S_j`` chunk
    ``j``'s summary (its last row): an inclusive scan of ``[init, S_0, ..., S_{J-2}]``.
    """
    last = ScanState(rows.m[..., -1], rows.u[..., -1], rows.w[..., -1, :])  # (R, J)
    n_chunks = last.m.shape[-1]
    if n_chunks == 1:
        carries = ScanState(init.m.unsqueeze(-1), init.u.unsqueeze(-1), init.w.unsqueeze(-2))
    else:
        leaves = ScanState(
            torch.cat([init.m.unsqueeze(-1), last.m[..., :-1]], dim=-1),
            torch.cat([init.u.unsqueeze(-1), last.u[..., :-1]], dim=-1),
            torch.cat([init.w.unsqueeze(-2), last.w[..., :-1, :]], dim=-2),
        )
        carries = scan_states(leaves, chunk)
    final = combine(
        ScanState(carries.m[..., -1], carries.u[..., -1], carries.w[..., -1, :]),
        ScanState(last.m[..., -1], last.u[..., -1], last.w[..., -1, :]),
    )
    return carries, final


def _split(n: int, chunk: int) -> list[tuple[int, int, int]]:
    """``[0, n)`` as ``(start, stop, chunk)``: whole chunks, then a shorter tail.

    Slicing instead of padding keeps the values from being copied.
    """
    whole = (n // chunk) * chunk
    parts = [(0, whole, chunk)] if whole else []
    if whole < n:
        parts.append((whole, n, n - whole))
    return parts


def scan_states(leaves: ScanState, chunk: int) -> ScanState:
    """Inclusive scan of general leaves ``(R, N)`` from the empty state: every prefix's state."""
    rows, _ = leaves.m.shape
    state = init_state(rows, leaves.w.shape[-1], leaves.m.dtype, leaves.m.device)
    pieces = []
    for start, stop, size in _split(leaves.m.shape[-1], chunk):
        part = ScanState(*(t[:, start:stop] for t in leaves))
        rows_state, row_max = _chunk_rows(part.m, part.u, part.w, size)
        carries, state = _carries(rows_state, state, chunk)
        factor, _ = _rescale_to(rows_state, row_max)
        own = ScanState(row_max, rows_state.u * factor, rows_state.w * factor.unsqueeze(-1))
        full = combine(
            ScanState(carries.m.unsqueeze(-1), carries.u.unsqueeze(-1), carries.w.unsqueeze(-2)),
            own,
        )
        pieces.append(ScanState(full.m.flatten(1, 2), full.u.flatten(1, 2), full.w.flatten(1, 2)))
    if len(pieces) == 1:
        return pieces[0]
    return ScanState(*(torch.cat(ts, dim=1) for ts in zip(*pieces, strict=False)))


def _outputs(
    rows: ScanState, row_max: torch.Tensor, carries: ScanState
) -> tuple[torch.Tensor, torch.Tensor]:
    """``carry (+) row`` for every row, read out as ``w / u`` without materialising ``u, w``.

    Everything is taken relative to the true max of carry and row, so the denominator is at
    least 1 (or exactly 0 for an empty prefix). Also returns each row's log-normaliser
    ``log sum_i exp(s_i)`` in float64: the max is an input score, so the sum keeps full
    precision even where scores are ~1e4 (float32 would round it to ~1e-3).
    """
    c_m, c_u, c_w = carries  # (R, J), (R, J), (R, J, D)
    level = torch.maximum(c_m.unsqueeze(-1), row_max)
    scale_row, ref = _rescale_to(rows, level)
    scale_carry = torch.exp(c_m.unsqueeze(-1) - ref)
    raw_denom = c_u.unsqueeze(-1) * scale_carry + rows.u * scale_row
    lse = level.to(torch.float64) + torch.log(raw_denom.to(torch.float64))
    denom = safe_denominator(raw_denom)
    dtype = rows.w.dtype
    row_factor = (scale_row / denom).unsqueeze(-1).to(dtype)
    if torch.is_grad_enabled() and rows.w.requires_grad:
        out = rows.w * row_factor
    else:  # nothing to differentiate: reuse the rows' buffer and save a full-size allocation
        out = rows.w.mul_(row_factor)
    # The product's backward needs its inputs only, so the carry term may be added in place.
    carry_factor = (scale_carry / denom).unsqueeze(-1).to(dtype)
    return out.addcmul_(c_w.unsqueeze(-2).to(dtype), carry_factor), lse


def chunked_scan(
    scores: torch.Tensor,
    values: torch.Tensor,
    state: ScanState,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[torch.Tensor, ScanState, torch.Tensor]:
    """Chunked attention of ``scores`` ``(R, N)``, ``values`` ``(R, N, D)`` after ``state``.

    Returns the outputs, the final state and every position's float64 log-normaliser. Works
    under autograd too, but ``chunked_attention`` differentiates it far more cheaply. Scores
    may be float64 over float32 values; otherwise all inputs share the accumulation dtype.
    ``chunk_size`` must be at least 2: each level of the recursion shrinks the sequence by
    that factor.
    """
    if chunk_size < 2:
        raise ValueError(f"chunk_size must be at least 2, got {chunk_size}")
    rows, n = scores.shape
    if n == 0:
        return values.clone(), state, scores.new_empty((rows, 0), dtype=torch.float64)
    pieces, lses = [], []
    for start, stop, size in _split(n, chunk_size):
        rows_state, row_max = _chunk_rows(scores[:, start:stop], None, values[:, start:stop], size)
        carries, state = _carries(rows_state, state, chunk_size)
        out, lse = _outputs(rows_state, row_max, carries)
        pieces.append(out.reshape(rows, stop - start, -1))
        lses.append(lse.reshape(rows, stop - start))
    if len(pieces) == 1:
        return pieces[0], state, lses[0]
    return torch.cat(pieces, dim=1), state, torch.cat(lses, dim=1)
