"""Property-based checks (hypothesis) over lengths, batch shapes and score ranges."""

from __future__ import annotations

import torch
from helpers import numpy_reference, rel_err
from hypothesis import given, settings
from hypothesis import strategies as st

from aaren_ts.scan import aaren_attention, state_output


@st.composite
def scan_inputs(draw):
    batch_shape = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    n = draw(st.integers(1, 300))
    d = draw(st.integers(1, 6))
    log_scale = draw(st.floats(-2.0, 4.0))
    offset = draw(st.floats(-1e4, 1e4))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(*batch_shape, n, generator=g, dtype=torch.float64) * 10**log_scale
    scores = scores + offset
    values = torch.randn(*batch_shape, n, d, generator=g, dtype=torch.float64)
    split = draw(st.integers(0, n))
    return scores, values, split


@settings(max_examples=60, deadline=None)
@given(scan_inputs())
def test_chunked_matches_reference_and_streams(data):
    scores, values, split = data
    n, d = values.shape[-2:]
    ref = numpy_reference(scores.reshape(-1, n), values.reshape(-1, n, d)).reshape(values.shape)
    out, state = aaren_attention(scores, values, return_state=True)
    assert rel_err(out, ref) <= 1e-10
    assert rel_err(state_output(state), ref[..., -1, :]) <= 1e-10
    head, mid = aaren_attention(scores[..., :split], values[..., :split, :], return_state=True)
    tail, end = aaren_attention(scores[..., split:], values[..., split:, :], mid, return_state=True)
    assert rel_err(torch.cat([head, tail], -2), ref) <= 1e-10
    assert rel_err(state_output(end), ref[..., -1, :]) <= 1e-10


@settings(max_examples=40, deadline=None)
@given(scan_inputs())
def test_float32_chunked_within_1e5(data):
    scores, values, _ = data
    s32, v32 = scores.float(), values.float()
    ref = aaren_attention(s32.double(), v32.double(), backend="naive")
    assert rel_err(aaren_attention(s32, v32), ref) <= 1e-5
