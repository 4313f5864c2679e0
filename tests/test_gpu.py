"""The same contracts on CUDA tensors (marked ``gpu``; skipped only where no CUDA device exists).

Run on a GPU machine with ``python -m pytest -m gpu tests/test_gpu.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import numpy_reference, rel_err

from aaren_ts.nn import BACKBONES, make_backbone
from aaren_ts.scan import aaren_attention, aaren_step, select_backend

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


@pytest.mark.parametrize("n", [1, 17, 1000, 4097])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_cuda_chunked_matches_float64_oracle(n, scale):
    g = torch.Generator().manual_seed(n)
    scores = (torch.randn(4, n, generator=g) * scale).to(CUDA)
    values = torch.randn(4, n, 8, generator=g).to(CUDA)
    out = aaren_attention(scores, values, backend="chunked")
    assert out.device.type == "cuda"
    ref = aaren_attention(scores.double().cpu(), values.double().cpu(), backend="naive")
    assert rel_err(out, ref) <= 1e-5
    out64 = aaren_attention(scores.double(), values.double(), backend="chunked")
    assert rel_err(out64, ref) <= 1e-10


def test_cuda_auto_backend_is_exact_and_on_device():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 3, 300, generator=g).to(CUDA)
    values = torch.randn(2, 3, 300, 16, generator=g).to(CUDA)
    assert select_backend(scores, values) in ("chunked", "triton")
    out = aaren_attention(scores, values)
    ref = numpy_reference(scores.reshape(6, 300), values.reshape(6, 300, 16))
    assert rel_err(out.reshape(6, 300, 16), ref) <= 1e-5


def test_cuda_gradients_match_cpu_float64():
    g = torch.Generator().manual_seed(1)
    s64 = torch.randn(3, 700, generator=g, dtype=torch.float64) * 10
    v64 = torch.randn(3, 700, 4, generator=g, dtype=torch.float64)
    up = torch.randn(3, 700, 4, generator=g, dtype=torch.float64)
    s_cpu, v_cpu = s64.clone().requires_grad_(), v64.clone().requires_grad_()
    ref = torch.autograd.grad(aaren_attention(s_cpu, v_cpu, backend="naive"), (s_cpu, v_cpu), up)
    s, v = s64.float().to(CUDA).requires_grad_(), v64.float().to(CUDA).requires_grad_()
    got = torch.autograd.grad(aaren_attention(s, v), (s, v), up.float().to(CUDA))
    assert rel_err(got[1], ref[1]) <= 1e-4
    assert rel_err(got[0], ref[0], scale=1.0) <= 1e-4


def test_cuda_sdpa_oracle_and_stream_contract():
    g = torch.Generator().manual_seed(2)
    b, h, n, dh = 2, 4, 513, 32
    q = torch.randn(b, h, 1, dh, generator=g).to(CUDA)
    k = torch.randn(b, h, n, dh, generator=g).to(CUDA)
    v = torch.randn(b, h, n, dh, generator=g).to(CUDA)
    expected = F.scaled_dot_product_attention(q.expand(b, h, n, dh), k, v, is_causal=True)
    scores = (k @ q.transpose(-1, -2)).squeeze(-1) / math.sqrt(dh)
    full = aaren_attention(scores, v)
    assert rel_err(full, expected) <= 1e-4  # SDPA itself may use TF32/fused kernels
    a, state = aaren_attention(scores[..., :200], v[..., :200, :], return_state=True)
    rest = aaren_attention(scores[..., 200:], v[..., 200:, :], state)
    assert rel_err(torch.cat([a, rest], -2), full) <= 1e-5
    out, st = None, None
    for t in range(20):
        out, st = aaren_step(st, scores[..., t], v[..., t, :])
    assert rel_err(out, full[..., 19, :]) <= 1e-5


@pytest.mark.parametrize("name", BACKBONES)
def test_cuda_backbone_contracts(name):
    torch.manual_seed(0)
    model = make_backbone(name, 32, n_layers=2, n_heads=4).to(CUDA).eval()
    x = torch.randn(3, 50, 32, device=CUDA)
    with torch.no_grad():
        y, _ = model(x)
        state, ys = None, []
        for t in range(50):
            y_t, state = model.step(x[:, t], state)
            ys.append(y_t)
        y1, st = model(x[:, :20])
        y2, _ = model(x[:, 20:], st)
    assert rel_err(torch.stack(ys, 1), y) <= 1e-4
    assert rel_err(torch.cat([y1, y2], 1), y) <= 1e-4
