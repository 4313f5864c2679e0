"""Hand-written backward of the chunked scan: two more chunked scans, run backwards in time.

With ``L_k`` the log-normaliser of prefix ``k`` (saved by the forward, in float64) and the
weights ``P_ki = exp(s_i - L_k)`` (``k >= i``), the gradients are suffix sums
(``aaren_math.md`` section 5):

    dv_i = sum_{k>=i} P_ki do_k
    ds_i = <v_i, dv_i> - sum_{k>=i} P_ki <do_k, o_k>

Both are the forward scan again, on the reversed sequence with scores ``-L_k``:
``sum_{k>=i} exp(-L_k) x_k = exp(Lambda_i) * scan_output_i`` where ``Lambda_i`` is that scan's
own log-normaliser, so ``sum_{k>=i} P_ki x_k = exp(s_i + Lambda_i) * scan_output_i``, and
``s_i + Lambda_i <= log(N)``: nothing overflows, and the scan's exactness and stabilisation
carry over. The reversed scores are float64, so ``L ~ 1e4`` keeps full precision.

Compared with autograd through the chunked graph this stores only the output and ``L`` and
replaces a dozen full-size backward passes (flips of cumulative sums, broadcast products) by
two scans and a few element-wise products. The state (``m``, ``u``, ``w`` of the carried
prefix in, ``u``, ``w`` of the final prefix out) is differentiated too, so training across
chunks of a stream with a carried state works, including a level the recency term moves.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from .chunked import DEFAULT_CHUNK_SIZE, chunked_scan
from .state import ScanState, safe_reference, state_output


def _empty(rows: int, d: int, values: torch.Tensor) -> ScanState:
    """Empty state with float64 levels and weights over values of ``values``' dtype."""
    m = torch.full((rows,), -math.inf, dtype=torch.float64, device=values.device)
    return ScanState(m, torch.zeros_like(m), values.new_zeros(rows, d))


def _suffix_sums(
    lse: torch.Tensor, x: torch.Tensor, chunk_size: int, scratch: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, ScanState, torch.Tensor]:
    """``sum_{k>=i} exp(-L_k) x_k`` as ``(scan output, Lambda)`` per position, and the total.

    ``x`` ``(R, N, D)``. Positions whose prefix is empty (``L = -inf``) carry no weight.
    Full-size buffers are few and reused (``scratch``, if given, receives the result): on a
    CPU, first-touch page faults of fresh memory cost about as much as the arithmetic. Also
    returns the scan's own output buffer, free for reuse.
    """
    rows, n, d = x.shape
    backwards = torch.arange(n - 1, -1, -1, device=x.device)
    reversed_scores = torch.where(lse == -math.inf, lse, -lse).flip(-1)
    x_rev = x.index_select(-2, backwards)
    out_rev, total, lam = chunked_scan(reversed_scores, x_rev, _empty(rows, d, x), chunk_size)
    dest = x_rev if scratch is None else scratch  # x_rev is spent: the result can go there
    out = torch.index_select(out_rev, -2, backwards, out=dest)
    return out, lam.flip(-1), total, out_rev


def level_gradient(m0, u0, w0, d_u0, d_w0) -> torch.Tensor:
    """The gradient of a carried state's level ``m0`` from those of ``u0`` and ``w0``.

    A state stands for the prefix sums ``exp(m0) u0`` and ``exp(m0) w0``, and everything
    downstream depends on it only through them, so ``dL/dm0 = u0 dL/du0 + <w0, dL/dw0>``.
    The level is more than a stabiliser when something moves it: the recency term shifts a
    carried prefix by ``lambda_h * (t_old - t_new)``, and this is the rate's gradient through
    every earlier token of the stream (0 for an empty prefix).
    """
    grad = d_u0.to(torch.float64) * u0.to(torch.float64)
    grad = grad + (d_w0.to(torch.float64) * w0.to(torch.float64)).sum(-1)
    return torch.where(m0 > -math.inf, grad, 0.0).to(m0.dtype)


class ChunkedAttention(torch.autograd.Function):
    """``(scores, values, m0, u0, w0) -> (outputs, m_N, u_N, w_N)`` with the suffix-scan
    backward.

    The returned ``m_N`` is a constant: the final state's reference level, which the
    outputs do not depend on. ``m0`` gets its gradient from ``level_gradient``.
    """

    @staticmethod
    def forward(ctx, scores, values, m0, u0, w0, chunk_size):
        out, final, lse = chunked_scan(scores, values, ScanState(m0, u0, w0), chunk_size)
        ctx.save_for_backward(scores, values, out, lse, m0, final.m, u0, w0)
        ctx.chunk_size = chunk_size
        ctx.mark_non_differentiable(final.m)
        return out, final.m, final.u, final.w

    @staticmethod
    @once_differentiable  # the backward is itself no graph: double backward raises, clearly
    def backward(ctx, d_out, _d_m, d_u, d_w):
        scores, values, out, lse, m0, m_n, u0, w0 = ctx.saved_tensors
        chunk = ctx.chunk_size
        dtype = values.dtype
        s64 = scores.to(torch.float64)

        o_rev, lam, total, spare = _suffix_sums(lse, d_out, chunk)
        h = torch.mul(d_out, out, out=spare).sum(-1, keepdim=True)  # <do_k, o_k>
        h_rev, _, h_total, _ = _suffix_sums(lse, h, chunk)
        weight = torch.exp(s64 + lam)  # sum_{k>=i} P_ki, at most N - i + 1
        d_values = o_rev.mul_(weight.unsqueeze(-1).to(dtype))
        d_scores = -weight * h_rev.squeeze(-1).to(torch.float64)

        # The final state: u_N = sum_i exp(s_i - m_N) (prior included), w_N likewise with v_i.
        m_n = safe_reference(m_n).to(torch.float64)
        to_final = torch.exp(s64 - m_n.unsqueeze(-1))
        d_values.addcmul_(to_final.unsqueeze(-1).to(dtype), d_w.unsqueeze(-2))
        d_scores += to_final * d_u.unsqueeze(-1).to(torch.float64)
        d_scores += torch.mul(d_values, values, out=spare).sum(-1).to(torch.float64)

        # The carried prior enters every output as exp(m0 - L_k) (w0 - u0 o_k), and the final
        # state as exp(m0 - m_N) (u0, w0).
        m0_in, m0 = m0, m0.to(torch.float64)
        prior_weight = torch.exp(m0 + total.m + torch.log(total.u))  # sum_k exp(m0 - L_k)
        to_final_prior = torch.exp(m0 - m_n)
        d_w0 = prior_weight.unsqueeze(-1).to(dtype) * state_output(total).to(dtype)
        d_w0 = d_w0 + to_final_prior.unsqueeze(-1).to(dtype) * d_w
        d_u0 = -prior_weight * state_output(h_total).squeeze(-1).to(torch.float64)
        d_u0 = d_u0 + to_final_prior * d_u.to(torch.float64)
        return (
            d_scores.to(scores.dtype),
            d_values,
            level_gradient(m0_in, u0, w0, d_u0, d_w0),
            d_u0.to(d_u.dtype),
            d_w0.to(d_w.dtype),
            None,
        )


def chunked_attention(
    scores: torch.Tensor,
    values: torch.Tensor,
    state: ScanState,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[torch.Tensor, ScanState]:
    """The chunked backend: ``chunked_scan`` forward, suffix-scan backward when differentiated."""
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (scores, values, *state))
    if not needs_grad:
        with torch.no_grad():
            out, final, _ = chunked_scan(scores, values, state, chunk_size)
        return out, final
    out, m_n, u_n, w_n = ChunkedAttention.apply(
        scores, values, state.m, state.u, state.w, chunk_size
    )
    return out, ScanState(m_n, u_n, w_n)
