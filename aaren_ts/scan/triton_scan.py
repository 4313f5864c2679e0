"""The ``"triton"`` scan backend: fused forward and backward kernels (``triton_kernels``).

Host side only: layout, the choice of segments, launches, and the autograd Function. Inputs
may be float32, bfloat16 or float16 (read as they are, accumulated in float32; outputs in the
promoted input dtype), any length, any number of rows, value size up to ``MAX_D``.

Segments: with ``R`` rows and few of them, one program per row would leave most of the GPU
idle (a long sequence with a small batch is where attention hurts most). Each row is then cut
into ``S`` segments: a first pass writes each segment's summary, a small kernel scans the
summaries per row, and a second pass computes every segment's outputs from its carry (the
backward does the same, right to left). ``segments=None`` picks ``S`` from the number of
multiprocessors; tests force it to check the split path on small inputs.

Under ``TRITON_INTERPRET=1`` the same kernels run on CPU tensors through Triton's
interpreter: that is how CI checks them without a GPU (slowly: keep sizes small).
"""

from __future__ import annotations

import math
import os

import torch
from torch.autograd.function import once_differentiable

from .chunked_grad import level_gradient
from .state import ScanState

MAX_D = 256
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# When rows are cut into segments: one program per row was measured on an H100 (issue 4) at
# 84-88% of copy bandwidth with 512 rows (3.9 per multiprocessor) but 41% with 128 rows (one
# per multiprocessor); the two-pass split moves 1.5x the minimal bytes (at most ~67%). So rows
# are split only below SPLIT_BELOW per multiprocessor, into enough segments for
# PROGRAMS_PER_SM programs per multiprocessor, none shorter than MIN_SEGMENT tokens.
SPLIT_BELOW = 2
PROGRAMS_PER_SM = 4
MIN_SEGMENT = 1024
# Split strategies for few long rows: "two-pass" (segment summaries, their scan, outputs: three
# full-size transfers where two are the minimum) or "lookback" (one kernel, decoupled look-back
# between segments of LOOKBACK_SEGMENT tokens, short enough that the second read of a segment
# comes from L2). "two-pass" stays the default until the look-back is timed on a GPU: the
# interpreter runs programs one by one, so the tests check its arithmetic, never its waiting.
SPLITS = ("two-pass", "lookback")
DEFAULT_SPLIT = os.environ.get("AAREN_TS_TRITON_SPLIT", "two-pass")
LOOKBACK_SEGMENT = 256


def new_buffer(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Every buffer a kernel writes comes from here (uninitialised: the kernels write every
    element; the tests swap in a NaN-filled version to prove it)."""
    return torch.empty(shape, dtype=dtype, device=device)


def interpreting() -> bool:
    """True when Triton runs kernels through its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _kernels():
    from . import triton_kernels  # Triton is imported only when a kernel is launched

    return triton_kernels


def _block_sizes(d: int) -> tuple[int, int, int]:
    """``(BLOCK_T, BLOCK_D, num_warps)``: a block of 16 tokens keeps the in-block product at
    16 float32 multiply-adds per element, far under the FMA rate of a memory-bound pass."""
    block_d = max(16, 1 << (d - 1).bit_length())
    return 16, block_d, 4 if block_d <= 64 else 8


def _multiprocessors(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4  # the interpreter: any small number exercises the split


def choose_segments(rows: int, n: int, device: torch.device, block_t: int = 16) -> int:
    """How many segments to cut each row into (1: one program per row)."""
    sms = _multiprocessors(device)
    if rows >= SPLIT_BELOW * sms:
        return 1
    by_load = math.ceil(PROGRAMS_PER_SM * sms / rows)
    by_length = max(1, n // MIN_SEGMENT)
    return max(1, min(by_load, by_length))


def _segment_length(n: int, segments: int, block_t: int) -> tuple[int, int]:
    """Segment length (a multiple of ``block_t``) and the resulting number of segments."""
    seg = math.ceil(max(n, 1) / segments)
    seg = math.ceil(seg / block_t) * block_t
    return seg, max(1, math.ceil(n / seg))


def _layout(
    values: torch.Tensor, segments: int | None, block_t: int
) -> tuple[int, int, tuple[int, int, int]]:
    """Segment length, number of segments per row, and the values' strides."""
    rows, n, _ = values.shape
    if segments is None:
        segments = choose_segments(rows, n, values.device, block_t)
    seg, n_seg = _segment_length(n, segments, block_t)
    return seg, n_seg, (values.stride(0), values.stride(1), values.stride(2))


def _output_form(state: ScanState) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(m, u, o = w / u)`` in float32, the form the kernels carry."""
    m, u, w = (t.float().contiguous() for t in state)
    o = w / torch.where(u > 0, u, torch.ones_like(u)).unsqueeze(-1)
    return m, u, o.contiguous()


def forward(
    scores: torch.Tensor,
    values: torch.Tensor,
    state: ScanState,
    segments: int | None = None,
    save_f32: bool = False,
    split: str | None = None,
    publish_inclusive: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, ScanState, torch.Tensor]:
    """Outputs, the per-position ``(m_k, log u_k)``, the final state, and the outputs to
    differentiate with (float32: the outputs themselves, or with ``save_f32`` a float32 copy
    of half-precision outputs written by the same pass).

    ``scores`` ``(R, N)``, ``values`` ``(R, N, D)``, ``state`` ``(m, u, w)`` of shapes
    ``(R,)``, ``(R,)``, ``(R, D)``. ``split`` (default ``DEFAULT_SPLIT``) is how rows cut into
    segments are scanned; ``publish_inclusive=False`` is for tests of the look-back.
    """
    k = _kernels()
    split = DEFAULT_SPLIT if split is None else split
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rows, n = scores.shape
    d = values.shape[-1]
    device = scores.device
    out_dtype = torch.promote_types(scores.dtype, values.dtype)
    scores = scores.contiguous()
    block_t, block_d, warps = _block_sizes(d)
    m0, u0, o0 = _output_form(state)
    out = new_buffer((rows, n, d), out_dtype, device)
    lm = new_buffer((rows, n), torch.float32, device)
    ll = new_buffer((rows, n), torch.float32, device)
    save_f32 = save_f32 and out_dtype != torch.float32
    out32 = new_buffer((rows, n, d), torch.float32, device) if save_f32 else out
    seg, n_seg, strides = _layout(values, segments, block_t)
    if split == "lookback" and n_seg > 1:
        if segments is None:  # short segments: their second read hits L2
            seg, n_seg = _segment_length(n, math.ceil(n / LOOKBACK_SEGMENT), block_t)
        final = _lookback_forward(
            scores, values, out, out32, lm, ll, (m0, u0, o0), seg, n_seg, strides,
            block_t, block_d, warps, save_f32, publish_inclusive,
        )  # fmt: skip
        return out, lm, ll, final, out32
    fin = _empty_states(rows * n_seg, d, device)
    if n_seg == 1:
        carry = (m0, u0, o0)
    else:
        # Pass 1: every segment's own summary, from an empty carry.
        empty = _empty_states(rows * n_seg, d, device, fill=True)
        k.fwd_kernel[(rows * n_seg,)](
            scores, values, out, out32, lm, ll, *empty, *fin,
            n, d, seg, n_seg, *strides,
            BLOCK_T=block_t, BLOCK_D=block_d, WRITE_OUT=False, SAVE_F32=False, num_warps=warps,
        )  # fmt: skip
        carry = _empty_states(rows * n_seg, d, device)
        row_final = _empty_states(rows, d, device)
        k.fwd_carry_kernel[(rows,)](
            *fin, m0, u0, o0, *carry, *row_final, d, n_seg, BLOCK_D=block_d, num_warps=warps
        )
        fin = _empty_states(rows * n_seg, d, device)
    k.fwd_kernel[(rows * n_seg,)](
        scores, values, out, out32, lm, ll, *carry, *fin,
        n, d, seg, n_seg, *strides,
        BLOCK_T=block_t, BLOCK_D=block_d, WRITE_OUT=True, SAVE_F32=save_f32, num_warps=warps,
    )  # fmt: skip
    last = torch.arange(n_seg - 1, rows * n_seg, n_seg, device=device)
    fm, fu, fo = (t.index_select(0, last) for t in fin)
    if n == 0:
        fm, fu, fo = m0, u0, o0
    final = ScanState(fm, fu, fo * fu.unsqueeze(-1))
    return out, lm, ll, final, out32


def _lookback_forward(
    scores, values, out, out32, lm, ll, init, seg, n_seg, strides,
    block_t, block_d, warps, save_f32, publish_inclusive,
) -> ScanState:  # fmt: skip
    """One launch of ``fwd_lookback_kernel``; returns the rows' final states."""
    rows, n = scores.shape
    d = values.shape[-1]
    device = scores.device
    tiles = rows * n_seg
    # Published words start at 0: "not written yet" (their lowest bit is the flag).
    words = [torch.zeros(shape, dtype=torch.int64, device=device)
             for shape in ((tiles,), (tiles,), (tiles, d))]  # fmt: skip
    inclusive = [torch.zeros_like(w) for w in words]
    counter = torch.zeros(1, dtype=torch.int32, device=device)
    fin = _empty_states(rows, d, device)
    _kernels().fwd_lookback_kernel[(tiles,)](
        scores, values, out, out32, lm, ll, *init, *words, *inclusive, *fin, counter,
        n, d, seg, n_seg, *strides,
        BLOCK_T=block_t, BLOCK_D=block_d, SAVE_F32=save_f32,
        PUBLISH_INCLUSIVE=publish_inclusive, num_warps=warps,
    )  # fmt: skip
    return ScanState(fin[0], fin[1], fin[2] * fin[1].unsqueeze(-1))


def _empty_states(count: int, d: int, device: torch.device, fill: bool = False):
    """Buffers for ``count`` states ``(m, u, o)``; ``fill`` makes them the empty prefix."""
    if fill:
        return (
            torch.full((count,), -math.inf, device=device),
            torch.zeros(count, device=device),
            torch.zeros(count, d, device=device),
        )
    f32 = torch.float32
    return (
        new_buffer((count,), f32, device),
        new_buffer((count,), f32, device),
        new_buffer((count, d), f32, device),
    )


def backward(
    scores: torch.Tensor,
    values: torch.Tensor,
    out: torch.Tensor,
    lm: torch.Tensor,
    ll: torch.Tensor,
    d_out: torch.Tensor,
    m_final: torch.Tensor,
    d_u_final: torch.Tensor | None,
    d_w_final: torch.Tensor | None,
    segments: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(d_scores, d_values, (R, G, Gh))``: the gradients and the suffix carry left at the
    start of every row (``sum_k exp(R - L_k) (do_k, h_k)`` with the final-state term), from
    which the initial state's gradient follows."""
    k = _kernels()
    rows, n = scores.shape
    d = values.shape[-1]
    device = scores.device
    block_t, block_d, warps = _block_sizes(d)
    d_out = d_out.contiguous()
    out = out.contiguous()
    d_scores = new_buffer(tuple(scores.shape), scores.dtype, device)
    d_values = new_buffer(tuple(values.shape), values.dtype, device)
    # The final state's gradient is a suffix term with reference m_N: u_N and w_N weigh
    # token i by exp(s_i - m_N).
    has_final = d_u_final is not None or d_w_final is not None
    f64 = torch.float64  # the suffix sums' dtype (see ``triton_kernels``)
    if has_final and n > 0:
        r0 = torch.where(m_final > -math.inf, m_final.float(), math.inf)
        g0 = (
            torch.zeros(rows, d, device=device, dtype=f64)
            if d_w_final is None
            else d_w_final.to(f64)
        ).contiguous()
        h0 = (
            torch.zeros(rows, device=device, dtype=f64) if d_u_final is None else -d_u_final.to(f64)
        )
    else:
        r0 = torch.full((rows,), math.inf, device=device)
        g0 = torch.zeros(rows, d, device=device, dtype=f64)
        h0 = torch.zeros(rows, device=device, dtype=f64)
    seg, n_seg, strides = _layout(values, segments, block_t)
    fin = _suffix_buffers(rows * n_seg, d, device)
    if n_seg == 1:
        carry, h, h_from_o = (r0, g0, h0.contiguous()), out, True
    else:
        # Pass 1: each segment's own suffix sum (and h_k, kept for pass 2).
        h = new_buffer((rows, n), torch.float32, device)
        empty = _suffix_buffers(rows * n_seg, d, device, fill=True)
        k.bwd_kernel[(rows * n_seg,)](
            scores, values, d_out, out, h, lm, ll, d_scores, d_values, *empty, *fin,
            n, d, seg, n_seg, *strides,
            BLOCK_T=block_t, BLOCK_D=block_d, WRITE_GRADS=False, H_FROM_O=True, WRITE_H=True,
            num_warps=warps,
        )  # fmt: skip
        carry = _suffix_buffers(rows * n_seg, d, device)
        k.bwd_carry_kernel[(rows,)](
            *fin, r0, g0, h0.contiguous(), *carry, d, n_seg, BLOCK_D=block_d, num_warps=warps
        )
        fin, h_from_o = _suffix_buffers(rows * n_seg, d, device), False
    k.bwd_kernel[(rows * n_seg,)](
        scores, values, d_out, out, h, lm, ll, d_scores, d_values, *carry, *fin,
        n, d, seg, n_seg, *strides,
        BLOCK_T=block_t, BLOCK_D=block_d, WRITE_GRADS=True, H_FROM_O=h_from_o, WRITE_H=False,
        num_warps=warps,
    )  # fmt: skip
    first = torch.arange(0, rows * n_seg, n_seg, device=device)
    start_carry = tuple(t.index_select(0, first) for t in fin)
    if n == 0:
        start_carry = (r0, g0, h0)
    return d_scores, d_values, start_carry


def _suffix_buffers(count: int, d: int, device: torch.device, fill: bool = False):
    """Buffers for ``count`` suffix carries ``(R, G, Gh)`` (a float32 reference, float64
    sums); ``fill`` makes them empty sums (reference ``+inf``, nothing summed)."""
    f32, f64 = torch.float32, torch.float64
    if fill:
        return (
            torch.full((count,), math.inf, device=device),
            torch.zeros(count, d, device=device, dtype=f64),
            torch.zeros(count, device=device, dtype=f64),
        )
    return (
        new_buffer((count,), f32, device),
        new_buffer((count, d), f64, device),
        new_buffer((count,), f64, device),
    )


class TritonAttention(torch.autograd.Function):
    """``(scores, values, m0, u0, w0) -> (outputs, m_N, u_N, w_N)`` with the fused backward.

    The returned ``m_N`` is a reference level, a constant; ``m0`` gets its gradient from
    ``level_gradient``, as in the chunked backend.
    """

    @staticmethod
    def forward(ctx, scores, values, m0, u0, w0, segments, split):
        out, lm, ll, final, out32 = forward(
            scores, values, ScanState(m0, u0, w0), segments, save_f32=True, split=split
        )
        ctx.save_for_backward(scores, values, out32, lm, ll, m0, final.m, u0, w0)
        ctx.segments = segments
        ctx.mark_non_differentiable(final.m)
        return out, final.m, final.u, final.w

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, _d_m, d_u, d_w):
        scores, values, out, lm, ll, m0, m_n, u0, w0 = ctx.saved_tensors
        if d_out is None:
            d_out = torch.zeros_like(out)
        d_scores, d_values, (r, g, gh) = backward(
            scores, values, out, lm, ll, d_out, m_n, d_u, d_w, ctx.segments
        )
        # The prior is a leaf at level m0 <= r with weight u0 and value w0 / u0.
        to_prior = torch.where(
            (m0 > -math.inf) & (r < math.inf), torch.exp(m0.float() - r), torch.zeros_like(r)
        )
        d_w0 = to_prior.unsqueeze(-1).double() * g
        d_u0 = -to_prior.double() * gh
        d_m0 = level_gradient(m0, u0, w0, d_u0, d_w0)
        return d_scores, d_values, d_m0, d_u0.to(m0.dtype), d_w0.to(m0.dtype), None, None


def triton_attention(
    scores: torch.Tensor,
    values: torch.Tensor,
    state: ScanState,
    segments: int | None = None,
    split: str | None = None,
) -> tuple[torch.Tensor, ScanState]:
    """The ``"triton"`` backend: ``(R, N)`` scores and ``(R, N, D)`` values in their own dtype
    (float32, bfloat16 or float16), a float32 state; outputs in the promoted input dtype.
    ``segments`` and ``split`` override the automatic choices (see ``forward``)."""
    check_supported(scores, values)
    scores = scores.contiguous()  # values may be strided; the kernels take their strides
    m0, u0, w0 = (t.float() for t in state)
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (scores, values, m0, u0, w0)
    )
    if not needs_grad:
        out, _, _, final, _ = forward(scores, values, ScanState(m0, u0, w0), segments, split=split)
        return out, final
    out, m_n, u_n, w_n = TritonAttention.apply(scores, values, m0, u0, w0, segments, split)
    return out, ScanState(m_n, u_n, w_n)


def check_supported(scores: torch.Tensor, values: torch.Tensor) -> None:
    """Clear errors for inputs the kernels do not handle (``"auto"`` never sends them)."""
    for name, t in (("scores", scores), ("values", values)):
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"backend 'triton' takes float32, bfloat16 or float16 {name}, got {t.dtype} "
                "(float64 runs on the 'chunked' backend)"
            )
    if values.shape[-1] > MAX_D:
        raise ValueError(
            f"backend 'triton' handles value sizes up to {MAX_D}, got {values.shape[-1]}"
        )
    if scores.device.type != "cuda" and not interpreting():
        raise ValueError(
            f"backend 'triton' needs CUDA tensors (got {scores.device}); on CPU it runs only "
            "under Triton's interpreter (TRITON_INTERPRET=1)"
        )


def applies(scores: torch.Tensor, values: torch.Tensor) -> bool:
    """What ``"auto"`` sends here: CUDA tensors of a supported dtype and value size."""
    return (
        scores.device.type == "cuda"
        and scores.dtype in FLOAT_DTYPES
        and values.dtype in FLOAT_DTYPES
        and 0 < values.shape[-1] <= MAX_D
    )
