"""Gradients of the fast paths against autograd through the naive oracle, and gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import rel_err

from aaren_ts.scan import ScanState, aaren_attention, init_state, select_backend, state_output
from aaren_ts.scan.chunked_grad import chunked_attention


def grads(backend, scores, values, upstream, state=None):
    s = scores.clone().requires_grad_()
    v = values.clone().requires_grad_()
    out = aaren_attention(s, v, state, backend=backend)
    ds, dv = torch.autograd.grad(out, (s, v), upstream)
    return ds, dv


@pytest.mark.parametrize("backend", ["chunked", "dense", "short", "recurrent"])
@pytest.mark.parametrize("n", [1, 2, 65, 300])
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_gradients_match_naive_float64(rng, backend, n, scale):
    scores = torch.randn(3, n, generator=rng, dtype=torch.float64) * scale
    values = torch.randn(3, n, 4, generator=rng, dtype=torch.float64)
    upstream = torch.randn(3, n, 4, generator=rng, dtype=torch.float64)
    ds_ref, dv_ref = grads("naive", scores, values, upstream)
    ds, dv = grads(backend, scores, values, upstream)
    # ds_i = sum_k p_ki <do_k, v_i - o_k>: its natural size is |do| * |v| ~ 1, even where a
    # saturated softmax makes it vanish.
    assert rel_err(dv, dv_ref) <= 1e-10
    assert rel_err(ds, ds_ref, scale=1.0) <= 1e-10
    assert torch.isfinite(ds).all() and torch.isfinite(dv).all()


def test_float32_chunked_gradients_match_float64(rng):
    scores = torch.randn(4, 2048, generator=rng) * 10
    values = torch.randn(4, 2048, 8, generator=rng)
    upstream = torch.randn(4, 2048, 8, generator=rng)
    ds_ref, dv_ref = grads("naive", scores.double(), values.double(), upstream.double())
    ds, dv = grads("chunked", scores, values, upstream)
    assert rel_err(dv, dv_ref) <= 1e-4
    assert rel_err(ds, ds_ref) <= 1e-4


def test_gradients_through_carried_state(rng):
    """The state returned by one call carries gradient into the next."""
    scores = torch.randn(2, 100, generator=rng, dtype=torch.float64).requires_grad_()
    values = torch.randn(2, 100, 3, generator=rng, dtype=torch.float64).requires_grad_()
    out_a, state = aaren_attention(scores[:, :40], values[:, :40], return_state=True)
    out_b = aaren_attention(scores[:, 40:], values[:, 40:], state)
    loss = torch.cat([out_a, out_b], 1).square().sum()
    ds, dv = torch.autograd.grad(loss, (scores, values))
    ds_ref, dv_ref = torch.autograd.grad(
        aaren_attention(scores, values, backend="naive").square().sum(), (scores, values)
    )
    assert rel_err(ds, ds_ref) <= 1e-10
    assert rel_err(dv, dv_ref) <= 1e-10


@pytest.mark.parametrize("chunk_size", [2, 3, 8])
def test_gradcheck_chunked_multilevel(rng, chunk_size):
    scores = (torch.randn(2, 19, generator=rng, dtype=torch.float64) * 3).requires_grad_()
    values = torch.randn(2, 19, 3, generator=rng, dtype=torch.float64).requires_grad_()
    m0 = torch.tensor([0.5, -1.0], dtype=torch.float64)
    u0 = torch.tensor([1.5, 2.0], dtype=torch.float64, requires_grad=True)
    w0 = torch.randn(2, 3, generator=rng, dtype=torch.float64).requires_grad_()

    def fn(s, v, u, w):
        # u and w alone depend on the (detached) reference level m; the prefix output and its
        # log-normaliser m + log(u) do not, and are what a later call sees of the state.
        out, final = chunked_attention(s, v, ScanState(m0, u, w), chunk_size=chunk_size)
        return out, state_output(final), final.m + torch.log(final.u)

    assert torch.autograd.gradcheck(fn, (scores, values, u0, w0))


def test_gradcheck_fallback_path(rng):
    """Large score jumps route chunks through the exact token loop; its gradient is exact."""
    scores = torch.tensor(
        [[-300.0, -250.0, 100.0, 101.0, -400.0, 99.0, 500.0]], dtype=torch.float64
    )
    scores.requires_grad_()
    values = torch.randn(1, 7, 2, generator=rng, dtype=torch.float64).requires_grad_()
    state = init_state(1, 2, torch.float64)
    assert torch.autograd.gradcheck(
        lambda s, v: chunked_attention(s, v, state, chunk_size=4)[0], (scores, values)
    )


def test_gradcheck_recurrent_naive_and_dense(rng):
    scores = torch.randn(2, 9, generator=rng, dtype=torch.float64).requires_grad_()
    values = torch.randn(2, 9, 3, generator=rng, dtype=torch.float64).requires_grad_()
    for backend in ("recurrent", "naive", "dense"):
        assert torch.autograd.gradcheck(
            lambda s, v, b=backend: aaren_attention(s, v, backend=b), (scores, values)
        )


@pytest.mark.parametrize("backend", ["dense", "chunked"])
def test_state_gradients_match_the_token_loop(rng, backend):
    """The carried prefix (u0, w0, and the level m0 a recency shift moves) gets the token
    loop's gradients; the dense form is autograd all the way: gradients of gradients too."""
    scores = torch.randn(2, 6, generator=rng, dtype=torch.float64).requires_grad_()
    values = torch.randn(2, 6, 3, generator=rng, dtype=torch.float64).requires_grad_()
    m0 = torch.randn(2, dtype=torch.float64).requires_grad_()
    u0 = (torch.rand(2, generator=rng, dtype=torch.float64) + 0.5).requires_grad_()
    w0 = torch.randn(2, 3, generator=rng, dtype=torch.float64).requires_grad_()

    def run(backend, *args):
        s, v, m, u, w = args
        out, final = aaren_attention(s, v, ScanState(m, u, w), return_state=True, backend=backend)
        return out.square().sum() + (final.w / final.u.unsqueeze(-1)).sum()

    inputs = (scores, values, m0, u0, w0)
    ref = torch.autograd.grad(run("recurrent", *inputs), inputs)
    got = torch.autograd.grad(run(backend, *inputs), inputs)
    for g, r in zip(got, ref, strict=True):
        assert rel_err(g, r) <= 1e-10
    if backend == "dense":
        assert torch.autograd.gradgradcheck(lambda *a: run("dense", *a), inputs)


def test_recency_rate_gradient_reaches_through_a_carried_state(rng):
    """Training across chunks: the recency term moves the carried prefix's level, so the
    rate's gradient must flow through it; every backend agrees with the token loop."""
    from aaren_ts.nn import AarenAttention

    torch.manual_seed(0)
    layer = AarenAttention(8, 2, recency=True).double()
    with torch.no_grad():
        layer.recency_rate.fill_(0.3)
    x = torch.randn(3, 40, 8, generator=rng, dtype=torch.float64)
    grads = {}
    for backend in ("recurrent", "chunked", "dense"):
        layer.scan_backend = backend
        _, state = layer(x[:, :25])  # a first chunk; its state carried, as in training
        state = type(state)(type(state.scan)(*(t.detach() for t in state.scan)), state.time)
        out, _ = layer(x[:, 25:], state)
        (grads[backend],) = torch.autograd.grad(out.square().sum(), layer.recency_rate)
    assert grads["recurrent"].abs().min() > 0
    for backend in ("chunked", "dense"):
        assert rel_err(grads[backend], grads["recurrent"]) <= 1e-10, backend


def _auto(rows: int, n: int, grad: bool) -> str:
    scores = torch.zeros(rows, n, requires_grad=grad)
    return select_backend(scores, torch.zeros(rows, n, 4))


@pytest.mark.parametrize(
    ("rows", "n", "training", "inference"),
    [
        # in training the dense block takes its hand-written backward ("short")
        (8, 12, "short", "dense"),
        (1024, 4, "short", "dense"),
        (4096, 12, "chunked", "chunked"),
        (1, 2048, "chunked", "chunked"),
        (128, 32, "chunked", "chunked"),  # > 16 tokens on many rows: the products dominate
        (512, 16, "short", "chunked"),  # no backward to pay for: the chunked scan wins
        # a few rows of a longer sequence (one short series read whole): dense in training
        (4, 128, "short", "chunked"),
        (1, 256, "short", "chunked"),
        (4, 181, "short", "chunked"),
        (32, 64, "short", "chunked"),
        (4, 256, "chunked", "chunked"),
        (4, 64, "short", "dense"),
    ],
)
def test_auto_picks_dense_for_small_inputs_and_chunked_for_large(rows, n, training, inference):
    assert _auto(rows, n, grad=True) == training
    assert _auto(rows, n, grad=False) == inference
    with torch.no_grad():  # gradients off: inference, whatever the inputs require
        assert _auto(rows, n, grad=True) == inference


def test_chunked_uses_the_suffix_scan_backward(rng):
    s = torch.randn(2, 50, generator=rng).requires_grad_()
    v = torch.randn(2, 50, 3, generator=rng)
    out = aaren_attention(s, v, backend="chunked")
    names = _graph_names(out)
    assert any(n.startswith("ChunkedAttentionBackward") for n in names)
    assert not any(n.startswith("Cumsum") for n in names)  # no autograd through the scan
    # nothing to differentiate: no graph at all
    assert aaren_attention(s.detach(), v, backend="chunked").grad_fn is None


@pytest.mark.parametrize("offset", [0.0, 1e4, -1e4])
def test_float32_gradients_keep_precision_at_large_scores(rng, offset):
    """L ~ 1e4 rounded in float32 would cost ~1e-3; the backward keeps it in float64."""
    scores = torch.randn(3, 3000, generator=rng) * 30 + offset
    values = torch.randn(3, 3000, 8, generator=rng)
    upstream = torch.randn(3, 3000, 8, generator=rng)
    ds_ref, dv_ref = grads("naive", scores.double(), values.double(), upstream.double())
    ds, dv = grads("chunked", scores, values, upstream)
    assert rel_err(dv, dv_ref) <= 1e-4
    assert rel_err(ds, ds_ref, scale=1.0) <= 1e-4


def test_gradients_with_masked_tokens_are_finite_and_exact(rng):
    scores = torch.randn(2, 200, generator=rng, dtype=torch.float64)
    scores[:, :30] = -math.inf  # an empty prefix first
    scores[0, 100:150] = -math.inf
    values = torch.randn(2, 200, 3, generator=rng, dtype=torch.float64)
    upstream = torch.randn(2, 200, 3, generator=rng, dtype=torch.float64)
    # The softmax oracle's own gradient is NaN at -inf scores; the token loop's is 0 there.
    ds_ref, dv_ref = grads("recurrent", scores, values, upstream)
    ds, dv = grads("chunked", scores, values, upstream)
    assert torch.isfinite(ds).all() and torch.isfinite(dv).all()
    assert not ds[0, 100:150].any()
    assert rel_err(dv, dv_ref) <= 1e-10
    assert rel_err(ds, ds_ref, scale=1.0) <= 1e-10


def test_double_backward_is_refused_not_wrong(rng):
    s = torch.randn(2, 30, generator=rng, dtype=torch.float64).requires_grad_()
    v = torch.randn(2, 30, 3, generator=rng, dtype=torch.float64).requires_grad_()
    out = aaren_attention(s, v, backend="chunked")
    (ds,) = torch.autograd.grad(out.sum(), s, create_graph=True)
    with pytest.raises(RuntimeError):
        ds.sum().backward()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_short_form_equals_the_oracle_and_refuses_double_backward(rng, dtype):
    """The hand-written backward's outputs, final state and gradients (through both) equal
    the float64 oracle's, masked (-inf) tokens and saturated softmaxes included; where it
    does not apply (a carried prefix, NaN values, a row starting empty) the dense block's
    autograd runs; gradients of gradients are refused, not wrong."""
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    scores = torch.randn(5, 12, generator=rng, dtype=torch.float64) * 20
    scores[1, 4] = -math.inf  # a masked token
    scores[2] = scores[2] * 300  # saturated prefixes
    values = torch.randn(5, 12, 3, generator=rng, dtype=torch.float64)
    upstream = torch.randn(5, 12, 3, generator=rng, dtype=torch.float64)

    def run(backend, s, v):
        s, v = s.clone().requires_grad_(), v.clone().requires_grad_()
        out, final = aaren_attention(s, v, return_state=True, backend=backend)
        loss = (out * upstream.to(out.dtype)).sum() + (final.w / final.u.unsqueeze(-1)).sum()
        return (out, final, *torch.autograd.grad(loss, (s, v)))

    ref = run("naive", scores, values)
    got = run("short", scores.to(dtype), values.to(dtype))
    assert rel_err(got[0], ref[0]) <= tol
    assert rel_err(got[1].w / got[1].u.unsqueeze(-1), ref[1].w / ref[1].u.unsqueeze(-1)) <= tol
    assert rel_err(got[2], ref[2], scale=1.0) <= tol and rel_err(got[3], ref[3]) <= tol
    s = scores.clone().requires_grad_()
    out = aaren_attention(s, values, backend="short")
    assert "_FreshPrefixSoftmaxBackward" in _graph_names(out)
    (ds,) = torch.autograd.grad(out.sum(), s, create_graph=True)
    with pytest.raises(RuntimeError):
        ds.sum().backward()
    # outside its case: the dense block (autograd), the same numbers
    state = ScanState(torch.zeros(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64),
                      torch.ones(5, 3, dtype=torch.float64))  # fmt: skip
    bad = values.clone()
    bad[0, 5] = math.nan
    empty = scores.clone()
    empty[3, 0] = -math.inf
    for args in [(scores, values, state), (scores, bad, None), (empty, values, None)]:
        s = args[0].clone().requires_grad_()
        out = aaren_attention(s, args[1], args[2], backend="short")
        assert "_FreshPrefixSoftmaxBackward" not in _graph_names(out)
        dense = aaren_attention(args[0], args[1], args[2], backend="dense")
        torch.testing.assert_close(out, dense, equal_nan=True)


def _graph_names(tensor: torch.Tensor) -> set[str]:
    names, todo = set(), [tensor.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is not None:
            names.add(type(fn).__name__)
            todo.extend(f for f, _ in fn.next_functions)
    return names
