"""``StepGraph``: the captured streaming step gives the eager step's results, state stays
explicit, and it falls back to eager stepping where it cannot capture."""

from __future__ import annotations

import pytest
import torch
from helpers import rel_err

from aaren_ts.nn import BACKBONES, StepGraph, make_backbone, map_state


def _stream(stepper_or_model, xs, state):
    ys = []
    for x_t in xs:
        y, state = stepper_or_model.step(x_t, state)
        ys.append(y)
    return torch.stack(ys), state


@pytest.mark.parametrize("name", BACKBONES)
def test_eager_fallback_on_cpu_equals_model_step(name):
    torch.manual_seed(0)
    model = make_backbone(name, 16, n_layers=2, n_heads=4).eval()
    stepper = StepGraph(model, batch=3)
    assert not stepper.captured and stepper.reason == "no CUDA device"
    xs = torch.randn(12, 3, 16)
    with torch.no_grad():
        got, _ = _stream(stepper, xs, stepper.init_state())
        ref, _ = _stream(model, xs, model.init_state(3))
    assert torch.equal(got, ref)


def test_bad_arguments():
    model = make_backbone("aaren", 8, n_layers=1, n_heads=2)
    with pytest.raises(TypeError, match="Backbone"):
        StepGraph(torch.nn.Linear(2, 2), batch=1)
    with pytest.raises(ValueError, match="batch"):
        StepGraph(model, batch=0)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["aaren", "gru"])
def test_cuda_graph_replays_equal_eager_steps(name):
    torch.manual_seed(1)
    model = make_backbone(name, 32, n_layers=2, n_heads=4).cuda().eval()
    stepper = StepGraph(model, batch=5)
    assert stepper.captured, stepper.reason
    prefix = torch.randn(5, 40, 32, device="cuda")
    xs = torch.randn(30, 5, 32, device="cuda")
    with torch.no_grad():
        _, prefill = model(prefix)  # a state from the parallel pass is copied in
        kept = map_state(torch.clone, prefill)
        got, state = _stream(stepper, xs, prefill)
        ref, ref_state = _stream(model, xs, kept)
        # the parallel pass over everything agrees too
        full, _ = model(torch.cat([prefix, xs.transpose(0, 1)], 1))
    assert rel_err(got, ref) <= 1e-5
    assert rel_err(got.transpose(0, 1), full[:, 40:]) <= 1e-4
    leaves, ref_leaves = [], []
    map_state(leaves.append, state)
    map_state(ref_leaves.append, ref_state)
    assert len(leaves) == len(ref_leaves)
    for a, b in zip(leaves, ref_leaves, strict=True):  # the returned state is the real state
        assert rel_err(a.double(), b.double(), scale=1.0) <= 1e-5
    with torch.no_grad():  # a wrong batch is refused clearly
        with pytest.raises(ValueError, match="captured batch"):
            stepper.step(torch.randn(4, 32, device="cuda"), state)


@pytest.mark.gpu
def test_cuda_transformer_kv_cache_is_stepped_eagerly():
    model = make_backbone("transformer", 32, n_layers=2, n_heads=4).cuda().eval()
    stepper = StepGraph(model, batch=2)
    assert not stepper.captured and "KV cache" in stepper.reason
    with torch.no_grad():
        y, _ = stepper.step(torch.randn(2, 32, device="cuda"), stepper.init_state())
    assert y.shape == (2, 32)
