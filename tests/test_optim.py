"""The shared optimiser: torch's fused Adam/AdamW (where torch has one for the device) gives
the per-parameter loop's weights (the CPU default) to float rounding, so asking for it changes
speed, not training; where torch refuses the fused kernel the multi-tensor path is taken."""

from __future__ import annotations

import copy

import pytest
import torch

from aaren_ts.estimators import _optim
from aaren_ts.estimators._optim import adam


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 32), torch.nn.LayerNorm(32), torch.nn.GELU(), torch.nn.Linear(32, 4)
    )


def _trained(net: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int = 40) -> list:
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(16, 8, generator=gen)
        optimizer.zero_grad()
        net(x).square().mean().backward()
        optimizer.step()
    return [p.detach().clone() for p in net.parameters()]


def _loop(params, weight_decay):
    if weight_decay is None:
        return torch.optim.Adam(params, lr=1e-2, foreach=False)
    return torch.optim.AdamW(params, lr=1e-2, weight_decay=weight_decay, foreach=False)


@pytest.mark.parametrize("weight_decay", [None, 1e-2])
def test_fused_path_gives_the_loops_weights_to_rounding(weight_decay):
    net = _net()
    ours_net, loop_net = copy.deepcopy(net), copy.deepcopy(net)
    ours = adam(ours_net.parameters(), lr=1e-2, weight_decay=weight_decay)
    assert ours.defaults["fused"] is True  # torch >= 2.4 has the CPU kernel (the CI's 2.13)
    assert type(ours) is (torch.optim.Adam if weight_decay is None else torch.optim.AdamW)
    if weight_decay is not None:
        assert ours.defaults["weight_decay"] == weight_decay
    got = _trained(ours_net, ours)
    want = _trained(loop_net, _loop(loop_net.parameters(), weight_decay))
    assert any(not torch.equal(a, b) for a, b in zip(got, net.parameters(), strict=True))
    for a, b in zip(got, want, strict=True):
        # the same update in another order: a few ulps apart after 40 steps, not a new method
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("weight_decay", [None, 1e-2])
def test_a_refused_fused_kernel_falls_back_to_the_multi_tensor_path(monkeypatch, weight_decay):
    """torch < 2.4 has no fused kernel for CPU tensors and says so when the optimiser is made;
    simulated here by refusing ``fused=True``. The fallback is the loop's weights bit for bit."""
    kinds = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}

    def refusing(kind):
        def make(params, *, fused=None, **options):
            if fused:
                raise RuntimeError("`fused=True` requires all the params to be ... cuda")
            return kind(params, **options)

        return make

    monkeypatch.setattr(_optim.torch.optim, "Adam", refusing(kinds["Adam"]))
    monkeypatch.setattr(_optim.torch.optim, "AdamW", refusing(kinds["AdamW"]))
    net = _net()
    ours_net, loop_net = copy.deepcopy(net), copy.deepcopy(net)
    ours = adam((p for p in ours_net.parameters()), lr=1e-2, weight_decay=weight_decay)
    assert ours.defaults["foreach"] is True and not ours.defaults["fused"]
    monkeypatch.undo()
    got = _trained(ours_net, ours)
    want = _trained(loop_net, _loop(loop_net.parameters(), weight_decay))
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)
