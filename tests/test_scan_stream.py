"""The streaming contract: split scans with a carried state, token steps, explicit states."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from helpers import numpy_reference, rel_err

from aaren_ts.scan import ScanState, aaren_attention, aaren_step, init_state, state_output


@pytest.mark.parametrize("backend", ["chunked", "dense", "recurrent", "naive"])
@pytest.mark.parametrize("splits", [[1], [63, 1], [64, 64], [7, 100, 3, 200], [300]])
def test_split_scan_equals_one_call(rng, backend, splits):
    n = sum(splits) + 10
    scores = torch.randn(2, 3, n, generator=rng, dtype=torch.float64) * 20
    values = torch.randn(2, 3, n, 4, generator=rng, dtype=torch.float64)
    full, full_state = aaren_attention(scores, values, return_state=True, backend=backend)
    outs, state, start = [], None, 0
    for size in [*splits, 10]:
        out, state = aaren_attention(
            scores[..., start : start + size],
            values[..., start : start + size, :],
            state,
            return_state=True,
            backend=backend,
        )
        outs.append(out)
        start += size
    assert rel_err(torch.cat(outs, dim=-2), full) <= 1e-10
    assert rel_err(state_output(state), state_output(full_state)) <= 1e-10


def test_backends_agree_on_final_state(rng):
    scores = torch.randn(4, 500, generator=rng, dtype=torch.float64) * 5
    values = torch.randn(4, 500, 3, generator=rng, dtype=torch.float64)
    states = [
        aaren_attention(scores, values, return_state=True, backend=b)[1]
        for b in ("naive", "recurrent", "chunked")
    ]
    for st in states[1:]:
        assert rel_err(state_output(st), state_output(states[0])) <= 1e-10
        # Same prefix, same log-normaliser m + log(u).
        lse = st.m + torch.log(st.u)
        assert torch.allclose(lse, torch.logsumexp(scores, -1), rtol=1e-12, atol=1e-12)


def test_float32_stream_contract_and_step_loop(rng):
    scores = torch.randn(3, 257, generator=rng) * 10
    values = torch.randn(3, 257, 6, generator=rng)
    full = aaren_attention(scores, values)
    state, outs = None, []
    for k in range(257):
        out, state = aaren_step(state, scores[:, k], values[:, k])
        outs.append(out)
    assert rel_err(torch.stack(outs, 1), full) <= 1e-5
    # and the state after the steps continues a chunked scan exactly
    more_s = torch.randn(3, 50, generator=rng)
    more_v = torch.randn(3, 50, 6, generator=rng)
    cont = aaren_attention(more_s, more_v, state)
    ref = numpy_reference(torch.cat([scores, more_s], 1), torch.cat([values, more_v], 1))
    assert rel_err(cont, ref[:, 257:]) <= 1e-5


def test_step_is_constant_size(rng):
    state = init_state(5, 8)
    sizes = {tuple(t.shape) for t in state}
    for _ in range(100):
        _, state = aaren_step(
            state, torch.randn(5, generator=rng), torch.randn(5, 8, generator=rng)
        )
    assert {tuple(t.shape) for t in state} == sizes


def test_empty_state_is_the_identity(rng):
    scores = torch.randn(2, 30, generator=rng, dtype=torch.float64)
    values = torch.randn(2, 30, 4, generator=rng, dtype=torch.float64)
    empty = init_state(2, 4, torch.float64)
    assert torch.equal(empty.m, torch.full((2,), -math.inf, dtype=torch.float64))
    assert torch.equal(aaren_attention(scores, values, empty), aaren_attention(scores, values))
    assert not state_output(empty).any()  # an empty prefix reads as 0, not NaN
    # A state written with another reference level but u = 0 is still empty.
    odd = ScanState(torch.full((2,), 50.0, dtype=torch.float64), empty.u, empty.w)
    assert torch.equal(aaren_attention(scores, values, odd), aaren_attention(scores, values))


def test_state_roundtrips_through_pickle_and_dtype(rng):
    scores = torch.randn(2, 40, generator=rng)
    values = torch.randn(2, 40, 3, generator=rng)
    _, state = aaren_attention(scores[:, :20], values[:, :20], return_state=True)
    restored = pickle.loads(pickle.dumps(state))
    assert isinstance(restored, ScanState)
    a = aaren_attention(scores[:, 20:], values[:, 20:], state)
    b = aaren_attention(scores[:, 20:], values[:, 20:], restored)
    assert torch.equal(a, b)
    # A float32 state continues a float64 stream (upcast), without error.
    c = aaren_attention(scores[:, 20:].double(), values[:, 20:].double(), state)
    assert c.dtype == torch.float64 and rel_err(c, a) <= 1e-5


def test_init_state_layout():
    st = init_state((2, 3), 4, torch.bfloat16)
    assert st.m.shape == (2, 3) and st.u.shape == (2, 3) and st.w.shape == (2, 3, 4)
    assert st.w.dtype == torch.float32  # half precision states accumulate in float32
    assert init_state(5, 2, torch.float64).u.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_absorb_is_combine_with_a_unit_leaf(rng, dtype):
    """The step's one-token combine gives the general operator's numbers, bit for bit, on
    empty and filled prefixes, and the same gradients."""
    from aaren_ts.scan.state import absorb, combine

    m = torch.randn(5, 3, generator=rng, dtype=dtype) * 10
    m[0] = -math.inf  # an empty prefix
    u = torch.rand(5, 3, generator=rng, dtype=dtype) + 0.5
    u[0] = 0.0
    w = torch.randn(5, 3, 4, generator=rng, dtype=dtype)
    w[0] = 0.0
    score = (torch.randn(5, 3, generator=rng, dtype=dtype) * 10).requires_grad_()
    value = torch.randn(5, 3, 4, generator=rng, dtype=dtype).requires_grad_()
    fast = absorb(ScanState(m, u, w), score, value)
    leaf = ScanState(score, torch.ones_like(score), value)
    general = combine(ScanState(m, u, w), leaf)
    for a, b in zip(fast, general, strict=True):
        assert torch.equal(a, b)
    grads = [torch.autograd.grad(state_output(s).sum(), (score, value)) for s in (fast, general)]
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fitting_step_is_aaren_step(rng, dtype):
    """A stream layer's unchecked step gives aaren_step's numbers bit for bit (empty and
    filled prefixes, a non-canonical empty one included), and declines anything aaren_step
    would check, cast or reject."""
    from aaren_ts.scan.recurrent import fitting_step

    m = torch.randn(4, 2, generator=rng, dtype=dtype) * 5
    m[0] = -math.inf
    m[1] = 7.0  # an empty prefix written with a finite level
    u = torch.rand(4, 2, generator=rng, dtype=dtype) + 0.5
    u[:2] = 0.0
    w = torch.randn(4, 2, 3, generator=rng, dtype=dtype)
    w[:2] = 0.0
    state = ScanState(m, u, w)
    score = torch.randn(4, 2, generator=rng, dtype=dtype) * 5
    value = torch.randn(4, 2, 3, generator=rng, dtype=dtype)
    out, new = fitting_step(state, score, value)
    ref_out, ref_new = aaren_step(state, score, value)
    assert torch.equal(out, ref_out)
    for a, b in zip(new, ref_new, strict=True):
        assert torch.equal(a, b)
    other = torch.float64 if dtype == torch.float32 else torch.float32
    assert fitting_step(state, score.to(other), value.to(other)) is None  # a cast is needed
    assert fitting_step(state, score[:2], value[:2]) is None  # shapes differ
    assert fitting_step(tuple(state), score, value) is None  # not a ScanState
    assert fitting_step(state, score.half(), value.half()) is None


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
def test_absorbing_a_few_tokens_at_once_is_absorbing_them_one_by_one(rng, n):
    """``absorb_tokens`` (a few tokens as one block, a policy's act) gives ``absorb`` token
    by token: outputs and final state, float64, on empty and filled prefixes, with -inf
    scores, an all -inf row, a NaN score (its prefix and later ones NaN, earlier ones
    untouched) and scores 1e4 apart; the outputs also match an independent NumPy softmax
    over the prefix's tokens and the new ones."""
    from aaren_ts.scan.state import absorb, absorb_tokens, canonical

    rows, d = 6, 3
    prior_s = torch.randn(rows, 2, generator=rng, dtype=torch.float64) * 5
    prior_v = torch.randn(rows, 2, d, generator=rng, dtype=torch.float64)
    state = init_state(rows, d, torch.float64)
    for i in range(2):
        state = absorb(canonical(state), prior_s[:, i], prior_v[:, i])
    empty = init_state(rows, d, torch.float64)
    state = ScanState(*(torch.cat([e[:1], t[1:]]) for e, t in zip(empty, state, strict=True)))
    scores = torch.randn(rows, n, generator=rng, dtype=torch.float64) * 5
    values = torch.randn(rows, n, d, generator=rng, dtype=torch.float64)
    scores[1, 0] = -math.inf
    scores[2] = -math.inf
    scores[3, n // 2] = math.nan
    scores[4, -1] += 1e4
    outs, one_by_one = [], state
    for i in range(n):
        one_by_one = absorb(canonical(one_by_one), scores[:, i], values[:, i])
        outs.append(state_output(one_by_one))
    got, final = absorb_tokens(canonical(state), scores, values)
    torch.testing.assert_close(got, torch.stack(outs, 1), rtol=1e-12, atol=1e-12, equal_nan=True)
    for a, b in zip(final, one_by_one, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, equal_nan=True)
    assert torch.isnan(got[3, n // 2 :]).all() and not torch.isnan(got[3, : n // 2]).any()
    # row 2's new tokens all at -inf weigh nothing: every output is its prefix's
    assert torch.equal(got[2], state_output(state)[2].expand(n, d))
    # rows 0, 1, 4, 5 against NumPy: row 0 from an empty prefix, the others after two tokens
    for row in (0, 1, 4, 5):
        s = scores[row] if row == 0 else torch.cat([prior_s[row], scores[row]])
        v = values[row] if row == 0 else torch.cat([prior_v[row], values[row]])
        ref = torch.as_tensor(numpy_reference(s[None], v[None]))[0, -n:]
        assert rel_err(got[row], ref) <= 1e-10
