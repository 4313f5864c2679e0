"""Numerical safety: extreme scores, very long sequences, -inf masking, NaN propagation."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import rel_err

from aaren_ts.scan import aaren_attention, aaren_step


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_scores_stay_finite(rng, dtype):
    n = 5000
    scores = (torch.rand(3, n, generator=rng, dtype=torch.float64) * 2 - 1) * 1e4
    scores[0] = torch.linspace(-1e4, 1e4, n)  # every token a new max
    scores[1] = torch.linspace(1e4, -1e4, n)  # the first token dominates forever
    values = torch.randn(3, n, 4, generator=rng, dtype=torch.float64)
    s, v = scores.to(dtype).requires_grad_(), values.to(dtype).requires_grad_()
    out = aaren_attention(s, v)
    assert torch.isfinite(out).all()
    ds, dv = torch.autograd.grad(out.sum(), (s, v))
    assert torch.isfinite(ds).all() and torch.isfinite(dv).all()
    # The oracle sees the same (rounded) inputs in float64.
    ref = aaren_attention(
        s.detach()[:, :2000].double(), v.detach()[:, :2000].double(), backend="naive"
    )
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert rel_err(out[:, :2000], ref) <= tol


def test_all_scores_below_exp_underflow(rng):
    """The paper's m_0 = 0 gives 0/0 here; the -inf start does not."""
    scores = -1e3 + torch.randn(2, 300, generator=rng)
    values = torch.randn(2, 300, 3, generator=rng)
    out = aaren_attention(scores, values)
    ref = aaren_attention(scores.double(), values.double(), backend="naive")
    assert torch.isfinite(out).all() and rel_err(out, ref) <= 1e-5


def test_million_token_sequence(rng):
    n = 1_000_000
    scores = (torch.rand(1, n, generator=rng) * 2 - 1) * 1e4
    scores[0, n // 2 :] = torch.randn(n - n // 2, generator=rng)  # then a flat region
    values = torch.randn(1, n, 2, generator=rng)
    out = aaren_attention(scores, values)
    assert torch.isfinite(out).all()
    # Spot-check rows against a float64 softmax over their whole prefix.
    for k in [0, 1, 999, 123_457, n // 2 + 10, n - 1]:
        p = torch.softmax(scores[0, : k + 1].double(), 0)
        expected = p @ values[0, : k + 1].double()
        assert rel_err(out[0, k], expected) <= 1e-5, k


def test_minus_inf_scores_are_masked_tokens(rng):
    scores = torch.randn(2, 100, generator=rng, dtype=torch.float64)
    values = torch.randn(2, 100, 3, generator=rng, dtype=torch.float64)
    masked = scores.clone()
    masked[:, 10:20] = -math.inf
    masked[:, 70:] = -math.inf
    for backend in ("chunked", "dense", "recurrent", "naive"):
        out = aaren_attention(masked, values, backend=backend)
        keep = torch.ones(100, dtype=torch.bool)
        keep[10:20] = False
        keep[70:] = False
        for k in (15, 40, 99):
            idx = keep[: k + 1].nonzero().squeeze(-1)
            expected = torch.softmax(scores[:, idx], -1).unsqueeze(1) @ values[:, idx]
            assert rel_err(out[:, k], expected[:, 0]) <= 1e-10, (backend, k)


@pytest.mark.parametrize("backend", ["chunked", "dense", "recurrent", "naive"])
def test_prefix_of_only_minus_inf_outputs_zero(backend):
    scores = torch.full((1, 80), -math.inf)
    scores[0, 70] = 0.0
    values = torch.ones(1, 80, 2)
    out = aaren_attention(scores, values, backend=backend)
    assert not out[0, :70].any()  # empty prefix: 0, as SDPA gives a fully masked row
    assert torch.equal(out[0, 70:], torch.ones(10, 2))


@pytest.mark.parametrize("backend", ["chunked", "dense", "recurrent"])
@pytest.mark.parametrize("where", ["score", "value"])
def test_nan_propagates_causally(rng, backend, where):
    n, bad = 200, 90
    scores = torch.randn(2, n, generator=rng)
    values = torch.randn(2, n, 3, generator=rng)
    if where == "score":
        scores[0, bad] = math.nan
    else:
        values[0, bad, :] = math.nan
    out = aaren_attention(scores, values, backend=backend)
    clean = aaren_attention(scores[:, :bad], values[:, :bad], backend=backend)
    # Nothing before the NaN is touched (the chunk holding it may take the exact token-loop
    # route, so equal up to rounding, not bit for bit).
    assert torch.isfinite(out[:, :bad]).all()
    assert rel_err(out[:, :bad], clean) <= 1e-6
    assert torch.isnan(out[0, bad:]).all()  # everything from it on is NaN: no silent repair
    assert torch.isfinite(out[1]).all()  # other rows unaffected


def test_nan_in_step_propagates():
    out, state = aaren_step(None, torch.tensor([math.nan]), torch.ones(1, 2))
    assert torch.isnan(out).all()
    out, _ = aaren_step(state, torch.tensor([0.0]), torch.ones(1, 2))
    assert torch.isnan(out).all()
