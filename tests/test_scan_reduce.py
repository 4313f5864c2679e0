"""``aaren_reduce`` (the many-to-one form) against the float64 masked-softmax oracle and a
NumPy prefix softmax: the last output, the final state and their gradients."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import numpy_reference, rel_err

from aaren_ts.scan import ScanState, aaren_attention, aaren_reduce, init_state, state_output


def inputs(rng, shape, n, d, scale=1.0, offset=0.0, dtype=torch.float64):
    scores = torch.randn(*shape, n, generator=rng, dtype=torch.float64) * scale + offset
    values = torch.randn(*shape, n, d, generator=rng, dtype=torch.float64)
    return scores.to(dtype), values.to(dtype)


def oracle(scores, values, state=None):
    """The naive backend's last output and final state (float64)."""
    out, final = aaren_attention(
        scores.double(), values.double(), state, return_state=True, backend="naive"
    )
    return out[..., -1, :], final


@pytest.mark.parametrize("n", [1, 2, 7, 64, 300])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_last_output_and_state_equal_the_oracle(rng, n, scale):
    scores, values = inputs(rng, (3, 2), n, 5, scale)
    got = aaren_reduce(scores, values)
    want_out, want_state = oracle(scores, values)
    assert rel_err(state_output(got), want_out) <= 1e-12
    # the same state, up to its (free) reference level: compare at the oracle's level
    assert torch.equal(got.m, want_state.m)
    assert rel_err(got.u, want_state.u) <= 1e-12
    assert rel_err(got.w, want_state.w) <= 1e-12
    # and a third reference that shares no code: NumPy's prefix softmax
    ref = numpy_reference(scores.reshape(-1, n), values.reshape(-1, n, 5))[:, -1]
    assert rel_err(state_output(got).reshape(-1, 5), ref) <= 1e-12


def test_a_carried_state_continues_like_one_call(rng):
    scores, values = inputs(rng, (4,), 40, 3, scale=5.0)
    _, carried = aaren_attention(scores[:, :25], values[:, :25], return_state=True)
    got = aaren_reduce(scores[:, 25:], values[:, 25:], carried)
    want_out, want_state = oracle(scores, values)
    assert rel_err(state_output(got), want_out) <= 1e-12
    for a, b in zip(got[1:], want_state[1:], strict=True):
        assert rel_err(a, b) <= 1e-12


def test_float32_matches_the_float64_oracle_even_far_from_zero(rng):
    scores, values = inputs(rng, (64,), 96, 8, scale=4.0, offset=1e4, dtype=torch.float32)
    got = aaren_reduce(scores, values)
    assert got.w.dtype == torch.float32
    # the float32 inputs are the reference's inputs: only the arithmetic differs
    assert rel_err(state_output(got), oracle(scores, values)[0]) <= 1e-5


def test_half_inputs_accumulate_in_float32(rng):
    scores, values = inputs(rng, (8,), 20, 4, dtype=torch.bfloat16)
    got = aaren_reduce(scores, values)
    assert got.u.dtype == torch.float32 and got.w.dtype == torch.float32
    assert rel_err(state_output(got), oracle(scores, values)[0]) <= 1e-5


def test_gradients_equal_autograd_through_the_oracle(rng):
    scores, values = inputs(rng, (3,), 11, 4, scale=3.0)
    _, carried = aaren_attention(scores[:, :4], values[:, :4], return_state=True)
    u0 = carried.u.clone().requires_grad_()
    w0 = carried.w.clone().requires_grad_()
    s = scores[:, 4:].clone().requires_grad_()
    v = values[:, 4:].clone().requires_grad_()
    weight = torch.randn(3, 4, generator=rng, dtype=torch.float64)

    def loss(fn):
        state = fn(s, v, ScanState(carried.m, u0, w0))
        return (state_output(state) * weight).sum() + state.u.sum() * 0.1

    got = torch.autograd.grad(loss(aaren_reduce), (s, v, u0, w0))
    want = torch.autograd.grad(loss(lambda *a: oracle(*a)[1]), (s, v, u0, w0))
    for g, w in zip(got, want, strict=True):
        assert rel_err(g, w, scale=1e-3) <= 1e-10


def test_gradcheck_and_gradgradcheck(rng):
    scores, values = inputs(rng, (2,), 6, 3, scale=2.0)
    scores.requires_grad_()
    values.requires_grad_()

    def fn(s, v):
        return state_output(aaren_reduce(s, v))

    assert torch.autograd.gradcheck(fn, (scores, values))
    assert torch.autograd.gradgradcheck(fn, (scores, values))


def test_edge_rows_follow_the_scans_rules(rng):
    scores, values = inputs(rng, (4,), 6, 2)
    scores[0] = -math.inf  # no token visible: output 0, empty state
    scores[1, 3] = math.nan  # NaN in: NaN out
    scores[2, :3] = -math.inf  # masked tokens carry no weight
    got = aaren_reduce(scores, values)
    out = state_output(got)
    assert torch.equal(out[0], torch.zeros(2)) and got.u[0] == 0
    assert torch.isnan(out[1]).all()
    assert rel_err(out[2:], oracle(scores[2:], values[2:])[0]) <= 1e-12
    assert rel_err(out[2], oracle(scores[2:3, 3:], values[2:3, 3:])[0][0]) <= 1e-12


def test_an_empty_block_returns_the_state_and_shapes_broadcast_as_the_scan(rng):
    state = init_state((2,), 3, torch.float64)
    nothing = torch.zeros(2, 0, 3, dtype=torch.float64)
    empty = aaren_reduce(nothing[..., 0], nothing, state)
    assert all(torch.equal(a, b) for a, b in zip(empty, state, strict=True))
    scores, values = inputs(rng, (), 9, 3)  # unbatched: (N,), (N, D)
    assert state_output(aaren_reduce(scores, values)).shape == (3,)


def test_bad_inputs_are_named():
    with pytest.raises(TypeError, match=r"scores must be a torch\.Tensor"):
        aaren_reduce([1.0, 2.0], torch.zeros(2, 3))
    with pytest.raises(ValueError, match="0-dimensional"):
        aaren_reduce(torch.tensor(1.0), torch.zeros(1))
    with pytest.raises(ValueError, match="must equal values shape"):
        aaren_reduce(torch.zeros(2, 5), torch.zeros(2, 4, 3))
    with pytest.raises(TypeError, match="floating-point"):
        aaren_reduce(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5, 3))
    with pytest.raises(TypeError, match="state must be a ScanState"):
        aaren_reduce(torch.zeros(2, 5), torch.zeros(2, 5, 3), state=torch.zeros(2))
