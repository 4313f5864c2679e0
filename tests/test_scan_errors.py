"""Bad input to the scan API gets a clear error that names the problem."""

from __future__ import annotations

import pytest
import torch

from aaren_ts.scan import ScanState, aaren_attention, aaren_step, init_state
from aaren_ts.scan.chunked_grad import chunked_attention


@pytest.mark.parametrize(
    ("scores", "values", "error", "match"),
    [
        ([1.0, 2.0], torch.randn(2, 3), TypeError, "scores must be a torch.Tensor"),
        (torch.randn(2), [[1.0]], TypeError, "values must be a torch.Tensor"),
        (torch.arange(4), torch.randn(4, 2), TypeError, "floating-point"),
        (torch.randn(4), torch.arange(8).view(4, 2), TypeError, "floating-point"),
        (torch.randn(2, 5), torch.randn(2, 4, 3), ValueError, r"shape \(2, 5\)"),
        (torch.randn(2, 5), torch.randn(2, 5), ValueError, "one more dimension"),
        (torch.tensor(1.0), torch.randn(3), ValueError, "0-dimensional"),
    ],
)
def test_bad_inputs(scores, values, error, match):
    with pytest.raises(error, match=match):
        aaren_attention(scores, values)


def test_bad_backend_and_state():
    s, v = torch.randn(2, 5), torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        aaren_attention(s, v, backend="fast")
    with pytest.raises(TypeError, match="backend must be a string"):
        aaren_attention(s, v, backend=None)
    with pytest.raises(ValueError, match="state shapes"):
        aaren_attention(s, v, init_state(3, 3))
    with pytest.raises(ValueError, match="state shapes"):
        aaren_attention(s, v, init_state(2, 4))
    with pytest.raises(TypeError, match="ScanState"):
        aaren_attention(s, v, torch.zeros(2))
    with pytest.raises(TypeError, match="three tensors"):
        aaren_attention(s, v, ScanState(0.0, 1.0, 2.0))


def test_bad_step_inputs():
    with pytest.raises(ValueError, match="score shape"):
        aaren_step(None, torch.randn(3), torch.randn(2, 4))
    with pytest.raises(TypeError, match="floating-point"):
        aaren_step(None, torch.ones(2, dtype=torch.long), torch.randn(2, 4))


def test_chunk_size_must_shrink_the_sequence():
    with pytest.raises(ValueError, match="chunk_size must be at least 2"):
        chunked_attention(torch.randn(1, 4), torch.randn(1, 4, 2), init_state(1, 2), chunk_size=1)
