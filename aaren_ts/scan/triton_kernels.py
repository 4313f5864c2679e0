"""Triton kernels of the Aaren scan (forward and backward), CUDA or Triton's CPU interpreter.

Imported only by ``triton_scan`` (which launches them), and only when Triton is installed.

Every kernel walks a *segment* of one row in blocks of ``BLOCK_T`` tokens with a carried
state; a row is one segment when there are enough rows to fill the GPU, and is cut into
segments otherwise (their summaries are scanned by a small kernel, then each segment runs
again from its carry: the sequence itself is spread across programs).

Forward, per block, with the carry ``(mc, uc, oc)`` (running max, ``sum exp(s - mc)``,
output so far) and ``m_k`` the running max at row ``k``::

    E[k, i] = exp(s_i - m_k)                 (i <= k in the block, else 0; every entry <= 1)
    u_k     = sum_i E[k, i] + exp(mc - m_k) uc          (>= 1 unless the prefix is empty)
    o_k     = (E @ V + exp(mc - m_k) uc oc)_k / u_k

The block is attention inside the block (a ``BLOCK_T x BLOCK_T`` product in float32), so no
row ever shares a stabiliser with a larger score: no underflow, no 0/0, for any score range.
Saved for the backward: ``m_k`` and ``log u_k`` (the log-normaliser ``L_k = m_k + log u_k``
kept as two float32 numbers: ``s_i - m_k`` is exact, where ``s_i - L_k`` in one float32 would
be rounded at the scale of ``L``, about 1e-3 at 1e4).

Backward (``aaren_math.md`` section 5), per block from the end, with ``P[k, i] =
exp(s_i - L_k)`` and a suffix carry ``(R, Gd, Gh) = sum_{k after the block} exp(R - L_k)
(do_k, h_k)``, ``h_k = <do_k, o_k>``, whose reference ``R`` is the smallest running max among
those ``k`` (so every ``exp`` is at most 1)::

    dv_i = (P^T @ dO)_i + exp(s_i - R) Gd
    ds_i = <v_i, dv_i> - (P^T h)_i - exp(s_i - R) Gh

The suffix sums (each block's own and the carry ``Gd``, ``Gh``) and the carry's share of
``ds``, ``<v_i, Gd> - Gh``, are float64: that difference subtracts two sums over every later
row, which all but cancel where token ``i`` leads many rows, and float32 sums left up to 2e-4
of rounding there at 4097 tokens (``tests/test_triton.py``, long leaders). It adds about
``2 * BLOCK_T * D`` float64 multiply-adds a block, a sixteenth of the float32 block product,
to a kernel bound by memory traffic.

The gradient of a returned final state enters as one more suffix term (reference ``m_N``,
``(d_w, -d_u)``), and the carry left at the start of the sequence gives the gradient of an
initial state.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _max_combine(a, b):
    return tl.maximum(a, b)


@triton.jit
def _load_block(s_ptr, v_ptr, row_s, row_v, offs_t, tmask, offs_d, dmask, stride_vn, stride_vd):
    """Scores (BLOCK_T,) and values (BLOCK_T, BLOCK_D) of one block, as float32."""
    s = tl.load(s_ptr + row_s + offs_t, mask=tmask, other=float("-inf")).to(tl.float32)
    v_offs = row_v + offs_t[:, None].to(tl.int64) * stride_vn + offs_d[None, :] * stride_vd
    v = tl.load(v_ptr + v_offs, mask=tmask[:, None] & dmask[None, :], other=0.0).to(tl.float32)
    return s, v


@triton.jit
def _join(m_loc, empty_loc, u_loc, acc, mc, uc, oc):
    """Rows (or a block total) known relative to their own max ``m_loc`` (``u_loc`` and the
    weighted sum ``acc``), joined with the carry ``(mc, uc, oc)``: ``(m, u, o)``. Rows come
    as columns (``(T, 1)`` with ``acc`` ``(T, D)``), a total as scalars with ``acc`` ``(D,)``."""
    m = tl.maximum(m_loc, mc)
    m_ref = tl.where(m == float("-inf"), 0.0, m)
    a = tl.exp(tl.where(empty_loc, float("-inf"), m_loc - m_ref))  # <= 1, 0 if empty
    c = tl.exp(mc - m_ref) * uc  # the carry's weight, 0 if empty
    u = a * u_loc + c
    return m, u, (a * acc + c * oc) / tl.where(u > 0, u, 1.0)


@triton.jit
def _scan_segment(
    s_ptr,
    v_ptr,
    o_ptr,
    o32_ptr,
    lm_ptr,
    ll_ptr,
    row,
    start,
    stop,
    n,
    d,
    stride_vr,
    stride_vn,
    stride_vd,
    mc,
    uc,
    oc,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    WRITE_OUT: tl.constexpr,
    SAVE_F32: tl.constexpr,
):
    """Tokens ``[start, stop)`` of ``row`` from the carry ``(mc, uc, oc)``, block by block;
    writes outputs and ``(m_k, log u_k)`` if ``WRITE_OUT``; returns the carry after ``stop``."""
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < d
    idx = tl.arange(0, BLOCK_T)
    lower = idx[:, None] >= idx[None, :]  # [k, i]: token i is in row k's prefix
    is_last = idx == BLOCK_T - 1
    row_s = row * n
    row_v = row * stride_vr
    for t0 in range(start, stop, BLOCK_T):
        offs_t = t0 + idx
        tmask = offs_t < stop
        s, v = _load_block(s_ptr, v_ptr, row_s, row_v, offs_t, tmask, offs_d, dmask,
                           stride_vn, stride_vd)  # fmt: skip
        # Inside the block alone (nothing here waits on the carry): running max, weights,
        # sums, the block product, and the block's own totals (its last row).
        m_loc = tl.associative_scan(s, 0, _max_combine)
        empty_loc = m_loc == float("-inf")
        ml_ref = tl.where(empty_loc, 0.0, m_loc)
        # Masking before the exp: tokens after row k may sit far above m_k.
        e = tl.exp(tl.where(lower, s[None, :] - ml_ref[:, None], float("-inf")))
        u_loc = tl.sum(e, axis=1)
        acc = tl.dot(e, v, input_precision="ieee")
        m_blk = tl.max(s, axis=0)
        u_blk = tl.sum(tl.where(is_last, u_loc, 0.0), axis=0)
        acc_blk = tl.sum(tl.where(is_last[:, None], acc, 0.0), axis=0)
        # With the carry: every row, then the carry for the next block (a short chain).
        m, u, o = _join(
            m_loc[:, None], empty_loc[:, None], u_loc[:, None], acc, mc, uc, oc[None, :]
        )  # m, u: (BLOCK_T, 1)
        if WRITE_OUT:
            o_offs = (row * n + offs_t[:, None]) * d + offs_d[None, :]
            tl.store(o_ptr + o_offs, o.to(o_ptr.dtype.element_ty),
                     mask=tmask[:, None] & dmask[None, :])  # fmt: skip
            if SAVE_F32:
                tl.store(o32_ptr + o_offs, o, mask=tmask[:, None] & dmask[None, :])
            col = row_s + offs_t[:, None]
            tl.store(lm_ptr + col, m, mask=tmask[:, None])
            tl.store(ll_ptr + col, tl.log(tl.where(u > 0, u, 1.0)), mask=tmask[:, None])
        mc, uc, oc = _join(m_blk, m_blk == float("-inf"), u_blk, acc_blk, mc, uc, oc)
    return mc, uc, oc


@triton.jit
def fwd_kernel(
    s_ptr,
    v_ptr,
    o_ptr,
    o32_ptr,
    lm_ptr,
    ll_ptr,
    init_m_ptr,
    init_u_ptr,
    init_o_ptr,
    fin_m_ptr,
    fin_u_ptr,
    fin_o_ptr,
    n,
    d,
    seg_len,
    n_seg,
    stride_vr,
    stride_vn,
    stride_vd,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    WRITE_OUT: tl.constexpr,
    SAVE_F32: tl.constexpr,
):
    """One (row, segment): outputs and log-normalisers from the carry ``init_*[pid]``.

    Scores are ``(R, n)`` contiguous, outputs ``(R, n, d)`` contiguous; every program writes
    its final state to ``fin_*[pid]``. ``WRITE_OUT=False`` only computes that final state
    (the segment summaries of the split forward, from an empty carry). ``SAVE_F32`` also
    writes the outputs in float32 to ``o32`` for the backward: with half-precision outputs,
    ``<do_k, o_k>`` on rounded ``o_k`` would cost the score gradient two digits.
    """
    pid = tl.program_id(0).to(tl.int64)
    row = pid // n_seg
    start = (pid % n_seg) * seg_len
    stop = tl.minimum(start + seg_len, n)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < d
    mc = tl.load(init_m_ptr + pid)
    uc = tl.load(init_u_ptr + pid)
    oc = tl.load(init_o_ptr + pid * d + offs_d, mask=dmask, other=0.0)
    mc, uc, oc = _scan_segment(
        s_ptr, v_ptr, o_ptr, o32_ptr, lm_ptr, ll_ptr, row, start, stop, n, d,
        stride_vr, stride_vn, stride_vd, mc, uc, oc,
        BLOCK_T=BLOCK_T, BLOCK_D=BLOCK_D, WRITE_OUT=WRITE_OUT, SAVE_F32=SAVE_F32,
    )  # fmt: skip
    tl.store(fin_m_ptr + pid, mc)
    tl.store(fin_u_ptr + pid, uc)
    tl.store(fin_o_ptr + pid * d + offs_d, oc, mask=dmask)


@triton.jit
def _merge_fwd(m1, u1, o1, m2, u2, o2):
    """``(m1, u1, o1) (+) (m2, u2, o2)`` in output form (``o = w / u``)."""
    m = tl.maximum(m1, m2)
    ref = tl.where(m == float("-inf"), 0.0, m)
    a1 = u1 * tl.exp(m1 - ref)
    a2 = u2 * tl.exp(m2 - ref)
    u = a1 + a2
    denom = tl.where(u > 0, u, 1.0)
    return m, u, (a1 * o1 + a2 * o2) / denom


@triton.jit
def fwd_carry_kernel(
    sum_m_ptr,
    sum_u_ptr,
    sum_o_ptr,
    init_m_ptr,
    init_u_ptr,
    init_o_ptr,
    car_m_ptr,
    car_u_ptr,
    car_o_ptr,
    fin_m_ptr,
    fin_u_ptr,
    fin_o_ptr,
    d,
    n_seg,
    BLOCK_D: tl.constexpr,
):
    """Per row: the carry into every segment (exclusive scan of the summaries after the
    initial state) and the row's final state."""
    row = tl.program_id(0).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < d
    m = tl.load(init_m_ptr + row)
    u = tl.load(init_u_ptr + row)
    o = tl.load(init_o_ptr + row * d + offs_d, mask=dmask, other=0.0)
    for j in range(0, n_seg):
        k = row * n_seg + j
        tl.store(car_m_ptr + k, m)
        tl.store(car_u_ptr + k, u)
        tl.store(car_o_ptr + k * d + offs_d, o, mask=dmask)
        m2 = tl.load(sum_m_ptr + k)
        u2 = tl.load(sum_u_ptr + k)
        o2 = tl.load(sum_o_ptr + k * d + offs_d, mask=dmask, other=0.0)
        m, u, o = _merge_fwd(m, u, o, m2, u2, o2)
    tl.store(fin_m_ptr + row, m)
    tl.store(fin_u_ptr + row, u)
    tl.store(fin_o_ptr + row * d + offs_d, o, mask=dmask)


# --- single-pass split: decoupled look-back -------------------------------------------------
# Every published number travels as one 64-bit word, the float's bits above a "written" flag,
# so each word is self-validating: a reader never needs the order between different threads'
# stores, only that an aligned 64-bit store is seen whole.


@triton.jit
def _pack(x):
    bits = x.to(tl.int32, bitcast=True).to(tl.int64) & 0xFFFFFFFF
    return (bits << 32) | 1


@triton.jit
def _unpack(word):
    return (word >> 32).to(tl.int32).to(tl.float32, bitcast=True)


@triton.jit
def _publish(m_ptr, u_ptr, o_ptr, slot, m, u, o, offs_d, dmask, d):
    tl.atomic_xchg(o_ptr + slot * d + offs_d, _pack(o), mask=dmask, sem="release")
    tl.atomic_xchg(m_ptr + slot, _pack(m), sem="release")
    tl.atomic_xchg(u_ptr + slot, _pack(u), sem="release")


@triton.jit
def _peek(m_ptr, u_ptr, o_ptr, slot, offs_d, dmask, d):
    """``(ready, m, u, o)`` of a published slot (``ready`` only when every word is in)."""
    wm = tl.atomic_add(m_ptr + slot, 0, sem="acquire")
    wu = tl.atomic_add(u_ptr + slot, 0, sem="acquire")
    wo = tl.atomic_add(o_ptr + slot * d + offs_d, 0, mask=dmask, sem="acquire")
    flags = tl.where(dmask, wo & 1, 1)
    ready = (wm & 1) + (wu & 1) + tl.min(flags, axis=0) == 3
    return ready, _unpack(wm), _unpack(wu), tl.where(dmask, _unpack(wo), 0.0)


@triton.jit
def fwd_lookback_kernel(
    s_ptr,
    v_ptr,
    o_ptr,
    o32_ptr,
    lm_ptr,
    ll_ptr,
    init_m_ptr,
    init_u_ptr,
    init_o_ptr,
    agg_m_ptr,
    agg_u_ptr,
    agg_o_ptr,
    inc_m_ptr,
    inc_u_ptr,
    inc_o_ptr,
    fin_m_ptr,
    fin_u_ptr,
    fin_o_ptr,
    counter_ptr,
    n,
    d,
    seg_len,
    n_seg,
    stride_vr,
    stride_vn,
    stride_vd,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    SAVE_F32: tl.constexpr,
    PUBLISH_INCLUSIVE: tl.constexpr,
):
    """The split forward in one pass over memory (Merrill and Garland's decoupled look-back).

    A program takes the next tile (row, segment) from an atomic counter, so every earlier tile
    is already held by a running program: waiting on it cannot deadlock. It scans its segment
    from an empty carry and publishes that aggregate, then walks back over earlier segments of
    its row, combining aggregates until it meets a published inclusive prefix (segment 0
    always publishes one: the row's initial state and its aggregate), publishes its own
    inclusive prefix, and scans the segment again from its carry, writing the outputs; the
    second read of a short segment comes from L2. ``PUBLISH_INCLUSIVE=False`` publishes only
    segment 0's, so that tests walk the whole chain of aggregates.
    """
    tile = tl.atomic_add(counter_ptr, 1).to(tl.int64)
    row = tile // n_seg
    j = tile % n_seg
    start = j * seg_len
    stop = tl.minimum(start + seg_len, n)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < d
    empty_m = tl.full((), float("-inf"), tl.float32)
    empty_u = tl.zeros((), tl.float32)
    empty_o = tl.zeros([BLOCK_D], tl.float32)
    am, au, ao = _scan_segment(
        s_ptr, v_ptr, o_ptr, o32_ptr, lm_ptr, ll_ptr, row, start, stop, n, d,
        stride_vr, stride_vn, stride_vd, empty_m, empty_u, empty_o,
        BLOCK_T=BLOCK_T, BLOCK_D=BLOCK_D, WRITE_OUT=False, SAVE_F32=False,
    )  # fmt: skip
    if j == 0:
        cm = tl.load(init_m_ptr + row)
        cu = tl.load(init_u_ptr + row)
        co = tl.load(init_o_ptr + row * d + offs_d, mask=dmask, other=0.0)
    else:
        _publish(agg_m_ptr, agg_u_ptr, agg_o_ptr, tile, am, au, ao, offs_d, dmask, d)
        cm, cu, co = empty_m, empty_u, empty_o
        k = tile - 1
        searching = tl.full((), 1, tl.int32)
        while searching == 1:
            ready, pm, pu, po = _peek(inc_m_ptr, inc_u_ptr, inc_o_ptr, k, offs_d, dmask, d)
            if ready:
                cm, cu, co = _merge_fwd(pm, pu, po, cm, cu, co)
                searching = tl.full((), 0, tl.int32)
            else:
                ready, pm, pu, po = _peek(agg_m_ptr, agg_u_ptr, agg_o_ptr, k, offs_d, dmask, d)
                if ready:
                    cm, cu, co = _merge_fwd(pm, pu, po, cm, cu, co)
                    k = k - 1
    im, iu, io = _merge_fwd(cm, cu, co, am, au, ao)
    if PUBLISH_INCLUSIVE:
        _publish(inc_m_ptr, inc_u_ptr, inc_o_ptr, tile, im, iu, io, offs_d, dmask, d)
    elif j == 0:
        _publish(inc_m_ptr, inc_u_ptr, inc_o_ptr, tile, im, iu, io, offs_d, dmask, d)
    fm, fu, fo = _scan_segment(
        s_ptr, v_ptr, o_ptr, o32_ptr, lm_ptr, ll_ptr, row, start, stop, n, d,
        stride_vr, stride_vn, stride_vd, cm, cu, co,
        BLOCK_T=BLOCK_T, BLOCK_D=BLOCK_D, WRITE_OUT=True, SAVE_F32=SAVE_F32,
    )  # fmt: skip
    if j == n_seg - 1:
        tl.store(fin_m_ptr + row, fm)
        tl.store(fin_u_ptr + row, fu)
        tl.store(fin_o_ptr + row * d + offs_d, fo, mask=dmask)


@triton.jit
def _merge_suffix(r1, g1, h1, r2, g2, h2):
    """Two suffix sums ``sum exp(r - L_k) (x_k, h_k)`` on one reference, the smaller one.

    An empty sum has reference ``+inf``; ``exp(min - r)`` is at most 1 for both sides. The
    merged sums are float64 (either side may be a float32 block sum).
    """
    r = tl.minimum(r1, r2)
    f1 = tl.exp(tl.where(r1 == float("inf"), float("-inf"), r - r1)).to(tl.float64)
    f2 = tl.exp(tl.where(r2 == float("inf"), float("-inf"), r - r2)).to(tl.float64)
    return (
        r,
        f1 * g1.to(tl.float64) + f2 * g2.to(tl.float64),
        f1 * h1.to(tl.float64) + f2 * h2.to(tl.float64),
    )


@triton.jit
def bwd_kernel(
    s_ptr,
    v_ptr,
    do_ptr,
    o_ptr,
    h_ptr,
    lm_ptr,
    ll_ptr,
    ds_ptr,
    dv_ptr,
    car_r_ptr,
    car_g_ptr,
    car_h_ptr,
    fin_r_ptr,
    fin_g_ptr,
    fin_h_ptr,
    n,
    d,
    seg_len,
    n_seg,
    stride_vr,
    stride_vn,
    stride_vd,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    WRITE_GRADS: tl.constexpr,
    H_FROM_O: tl.constexpr,
    WRITE_H: tl.constexpr,
):
    """One (row, segment), from its last block to its first, starting from the suffix carry
    ``car_*[pid]``; writes ``ds``, ``dv`` (``WRITE_GRADS``) and the carry left at the segment
    start to ``fin_*[pid]``.

    ``h_k = <do_k, o_k>`` is computed from ``o`` (``H_FROM_O``, then stored if ``WRITE_H``)
    or read from ``h``. ``do``, ``o`` and ``dv`` are ``(R, n, d)`` contiguous, ``v`` strided.
    """
    pid = tl.program_id(0).to(tl.int64)
    row = pid // n_seg
    start = (pid % n_seg) * seg_len
    stop = tl.minimum(start + seg_len, n)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < d
    idx = tl.arange(0, BLOCK_T)
    lower = idx[:, None] >= idx[None, :]  # [k, i]

    r = tl.load(car_r_ptr + pid)
    g = tl.load(car_g_ptr + pid * d + offs_d, mask=dmask, other=0.0)
    gh = tl.load(car_h_ptr + pid)
    row_s = row * n
    row_v = row * stride_vr
    n_blocks = tl.cdiv(stop - start, BLOCK_T)
    for b in range(0, n_blocks):
        t0 = start + (n_blocks - 1 - b) * BLOCK_T
        offs_t = t0 + idx
        tmask = offs_t < stop
        tdmask = tmask[:, None] & dmask[None, :]
        s = tl.load(s_ptr + row_s + offs_t, mask=tmask, other=float("-inf")).to(tl.float32)
        lm = tl.load(lm_ptr + row_s + offs_t, mask=tmask, other=float("-inf"))
        ll = tl.load(ll_ptr + row_s + offs_t, mask=tmask, other=0.0)
        od_offs = (row * n + offs_t[:, None]) * d + offs_d[None, :]
        do = tl.load(do_ptr + od_offs, mask=tdmask, other=0.0).to(tl.float32)
        if H_FROM_O:
            o = tl.load(o_ptr + od_offs, mask=tdmask, other=0.0).to(tl.float32)
            h = tl.sum(do * o, axis=1)
            if WRITE_H:
                tl.store(h_ptr + row_s + offs_t, h, mask=tmask)
        else:
            h = tl.load(h_ptr + row_s + offs_t, mask=tmask, other=0.0)
        live = lm != float("-inf")  # rows with a non-empty prefix (padding rows are -inf)
        lm_ref = tl.where(live, lm, 0.0)
        # The block's own suffix sum (folded into the carry after its gradients, which see
        # the carry from later blocks only); its reference is its smallest running max.
        r_blk = tl.min(tl.where(live, lm, float("inf")), axis=0)
        wk = tl.exp(tl.where(live, (r_blk - lm_ref) - ll, float("-inf")))  # exp(r_blk - L_k) <= 1
        g_blk = tl.sum(wk.to(tl.float64)[:, None] * do.to(tl.float64), axis=0)
        h_blk = tl.sum(wk.to(tl.float64) * h.to(tl.float64), axis=0)
        if WRITE_GRADS:
            v_offs = row_v + offs_t[:, None].to(tl.int64) * stride_vn + offs_d[None, :] * stride_vd
            v = tl.load(v_ptr + v_offs, mask=tdmask, other=0.0).to(tl.float32)
            x = (s[None, :] - lm_ref[:, None]) - ll[:, None]
            p = tl.exp(tl.where(lower & live[:, None], x, float("-inf")))
            c = tl.exp(tl.where(r == float("inf"), float("-inf"), s - r))  # carry -> i, <= 1
            dv_blk = tl.dot(tl.trans(p), do, input_precision="ieee")
            dv = dv_blk + c[:, None] * g.to(tl.float32)[None, :]
            # The carry's share of ds, <v_i, G> - Gh, is a difference of two sums over every
            # later row that all but cancel where token i dominates a long stretch (its
            # outputs are ~v_i): in float32 its rounding reached 1e-4 at n = 4097.
            ds_carry = tl.sum(v.to(tl.float64) * g[None, :], axis=1) - gh
            ds = (
                tl.sum(v * dv_blk, axis=1)
                - tl.sum(p * h[:, None], axis=0)
                + c * ds_carry.to(tl.float32)
            )
            tl.store(dv_ptr + od_offs, dv.to(dv_ptr.dtype.element_ty), mask=tdmask)
            tl.store(ds_ptr + row_s + offs_t, ds.to(ds_ptr.dtype.element_ty), mask=tmask)
        r, g, gh = _merge_suffix(r, g, gh, r_blk, g_blk, h_blk)
    tl.store(fin_r_ptr + pid, r)
    tl.store(fin_g_ptr + pid * d + offs_d, g, mask=dmask)
    tl.store(fin_h_ptr + pid, gh)


@triton.jit
def bwd_carry_kernel(
    sum_r_ptr,
    sum_g_ptr,
    sum_h_ptr,
    init_r_ptr,
    init_g_ptr,
    init_h_ptr,
    car_r_ptr,
    car_g_ptr,
    car_h_ptr,
    d,
    n_seg,
    BLOCK_D: tl.constexpr,
):
    """Per row: the suffix carry into every segment, scanning the summaries right to left
    from the final-state term ``init_*[row]``."""
    row = tl.program_id(0).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < d
    r = tl.load(init_r_ptr + row)
    g = tl.load(init_g_ptr + row * d + offs_d, mask=dmask, other=0.0)
    gh = tl.load(init_h_ptr + row)
    for j in range(0, n_seg):
        k = row * n_seg + (n_seg - 1 - j)
        tl.store(car_r_ptr + k, r)
        tl.store(car_g_ptr + k * d + offs_d, g, mask=dmask)
        tl.store(car_h_ptr + k, gh)
        r2 = tl.load(sum_r_ptr + k)
        g2 = tl.load(sum_g_ptr + k * d + offs_d, mask=dmask, other=0.0)
        h2 = tl.load(sum_h_ptr + k)
        r, g, gh = _merge_suffix(r, g, gh, r2, g2, h2)
