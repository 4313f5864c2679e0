"""Gradients of the fast paths against autograd through the naive oracle, and gradcheck."""

from __future__ import annotations

import pytest
import torch
from helpers import rel_err

from aaren_ts.scan import ScanState, aaren_attention, init_state, state_output
from aaren_ts.scan.chunked import chunked_attention


def grads(backend, scores, values, upstream, state=None):
    s = scores.clone().requires_grad_()
    v = values.clone().requires_grad_()
    out = aaren_attention(s, v, state, backend=backend)
    ds, dv = torch.autograd.grad(out, (s, v), upstream)
    return ds, dv


@pytest.mark.parametrize("backend", ["chunked", "recurrent"])
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


def test_gradcheck_recurrent_and_naive(rng):
    scores = torch.randn(2, 9, generator=rng, dtype=torch.float64).requires_grad_()
    values = torch.randn(2, 9, 3, generator=rng, dtype=torch.float64).requires_grad_()
    for backend in ("recurrent", "naive"):
        assert torch.autograd.gradcheck(
            lambda s, v, b=backend: aaren_attention(s, v, backend=b), (scores, values)
        )
