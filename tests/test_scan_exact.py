"""Every scan backend against independent references: the float64 masked-softmax oracle,
a NumPy prefix softmax, and ``scaled_dot_product_attention`` with an expanded query."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import numpy_reference, rel_err

from aaren_ts.scan import aaren_attention, init_state, select_backend
from aaren_ts.scan.chunked_grad import chunked_attention

FAST_BACKENDS = ["chunked", "dense", "recurrent"]


def random_inputs(rng, shape, d, scale, dtype=torch.float64, offset=0.0):
    scores = torch.randn(*shape, generator=rng, dtype=torch.float64) * scale + offset
    values = torch.randn(*shape, d, generator=rng, dtype=torch.float64)
    return scores.to(dtype), values.to(dtype)


def test_naive_oracle_matches_numpy_prefix_softmax(rng):
    scores, values = random_inputs(rng, (3, 70), 5, scale=3.0)
    out = aaren_attention(scores, values, backend="naive")
    assert rel_err(out, numpy_reference(scores, values)) <= 1e-12


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("n", [1, 2, 3, 63, 64, 65, 127, 200, 1000])
@pytest.mark.parametrize("scale", [0.1, 1.0, 30.0, 1e3, 1e4])
def test_float64_matches_oracle(rng, backend, n, scale):
    scores, values = random_inputs(rng, (2, 3, n), 4, scale)
    ref = aaren_attention(scores, values, backend="naive")
    out = aaren_attention(scores, values, backend=backend)
    assert out.dtype == torch.float64
    assert rel_err(out, ref) <= 1e-10


@pytest.mark.parametrize("n", [1, 17, 64, 129, 1024, 4096])
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_float32_chunked_matches_float64_oracle(rng, n, scale):
    scores, values = random_inputs(rng, (4, n), 8, scale, dtype=torch.float32)
    ref = aaren_attention(scores.double(), values.double(), backend="naive")
    out = aaren_attention(scores, values, backend="chunked")
    assert out.dtype == torch.float32
    assert rel_err(out, ref) <= 1e-5


@pytest.mark.parametrize("n", [17, 64, 128, 181])
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_float32_auto_on_a_few_long_rows_is_dense_and_matches_float64_oracle(rng, n, scale):
    # one short series read whole (4 heads, up to 181 tokens): "auto" takes the dense form
    # (in training, with its hand-written backward)
    scores, values = random_inputs(rng, (4, n), 8, scale, dtype=torch.float32)
    scores.requires_grad_()  # training: the shapes where "auto" differs from inference
    assert select_backend(scores, values) == "short"
    ref = aaren_attention(scores.double(), values.double(), backend="naive")
    assert rel_err(aaren_attention(scores, values), ref) <= 1e-5


def test_float32_recurrent_matches_float64_oracle(rng):
    scores, values = random_inputs(rng, (4, 300), 8, 30.0, dtype=torch.float32)
    ref = aaren_attention(scores.double(), values.double(), backend="naive")
    assert rel_err(aaren_attention(scores, values, backend="recurrent"), ref) <= 1e-5


@pytest.mark.parametrize("offset", [1e4, -1e4])
def test_float32_large_shared_offset_keeps_precision(rng, offset):
    # The case where an (L, o) state loses ~1e-4 in float32 (aaren_math.md section 4).
    scores, values = random_inputs(rng, (2, 1000), 4, 1.0, dtype=torch.float32, offset=offset)
    ref = aaren_attention(scores.double(), values.double(), backend="naive")
    assert rel_err(aaren_attention(scores, values), ref) <= 1e-5


@pytest.mark.parametrize("chunk_size", [2, 3, 4, 7])
@pytest.mark.parametrize("n", [1, 5, 16, 17, 50, 333])
def test_multilevel_chunking_exact(rng, chunk_size, n):
    """Tiny chunks force several recursion levels and tail chunks at every level."""
    scores, values = random_inputs(rng, (3, n), 2, 20.0)
    state = init_state(3, 2, torch.float64)
    out, _ = chunked_attention(scores, values, state, chunk_size=chunk_size)
    assert rel_err(out, numpy_reference(scores, values)) <= 1e-10


def test_score_jumps_inside_a_chunk_use_exact_fallback(rng):
    """Scores rising by thousands inside one chunk: every row's own max is far below the
    chunk max, which a single stabiliser would underflow to 0/0."""
    n = 64
    scores = torch.linspace(-5e3, 5e3, n, dtype=torch.float32).repeat(2, 1)
    scores[1] = scores[1].flip(0)
    values = torch.randn(2, n, 3, generator=rng)
    out = aaren_attention(scores, values, backend="chunked")
    assert torch.isfinite(out).all()
    assert rel_err(out, aaren_attention(scores.double(), values.double(), backend="naive")) <= 1e-5


@pytest.mark.parametrize("backend", ["naive", *FAST_BACKENDS])
def test_sdpa_with_expanded_query_is_a_second_oracle(rng, backend):
    b, h, n, dh = 2, 3, 150, 16
    q = torch.randn(b, h, 1, dh, generator=rng, dtype=torch.float64)
    k = torch.randn(b, h, n, dh, generator=rng, dtype=torch.float64)
    v = torch.randn(b, h, n, dh, generator=rng, dtype=torch.float64)
    expected = F.scaled_dot_product_attention(q.expand(b, h, n, dh), k, v, is_causal=True)
    scores = (k @ q.transpose(-1, -2)).squeeze(-1) / math.sqrt(dh)
    assert rel_err(aaren_attention(scores, v, backend=backend), expected) <= 1e-10


def test_batch_shapes_are_independent_rows(rng):
    scores, values = random_inputs(rng, (2, 3, 4, 40), 5, 3.0)
    out = aaren_attention(scores, values)
    flat = aaren_attention(scores.reshape(24, 40), values.reshape(24, 40, 5))
    assert torch.equal(out.reshape(24, 40, 5), flat)
    assert rel_err(out[1, 2, 3], numpy_reference(scores[1, 2, 3:4], values[1, 2, 3:4])[0]) <= 1e-10


def test_unbatched_and_empty_inputs(rng):
    scores, values = random_inputs(rng, (9,), 3, 1.0)
    out = aaren_attention(scores, values)
    assert out.shape == (9, 3)
    assert rel_err(out, numpy_reference(scores[None], values[None])[0]) <= 1e-10
    empty, state = aaren_attention(torch.zeros(2, 0), torch.zeros(2, 0, 3), return_state=True)
    assert empty.shape == (2, 0, 3)
    assert torch.equal(state.m, torch.full((2,), -math.inf)) and not state.u.any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_float32(rng, dtype):
    scores, values = random_inputs(rng, (2, 500), 8, 5.0, dtype=dtype)
    out, state = aaren_attention(scores, values, return_state=True)
    assert out.dtype == dtype
    assert state.w.dtype == torch.float32
    ref = aaren_attention(scores.double(), values.double(), backend="naive")
    # Only the final rounding to the half type remains.
    assert rel_err(out, ref) <= (1e-2 if dtype == torch.bfloat16 else 1e-3)
