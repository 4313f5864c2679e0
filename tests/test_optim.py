"""The shared optimiser: torch's multi-tensor Adam/AdamW gives the same weights as its
per-parameter loop (the CPU default), so asking for it changes speed, not training."""

from __future__ import annotations

import copy

import pytest
import torch

from aaren_ts.estimators._optim import adam


def _trained(net: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int = 40) -> list:
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(16, 8, generator=gen)
        optimizer.zero_grad()
        net(x).square().mean().backward()
        optimizer.step()
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("weight_decay", [None, 1e-2])
def test_multi_tensor_path_gives_the_loops_weights_bit_for_bit(weight_decay):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 32), torch.nn.LayerNorm(32), torch.nn.GELU(), torch.nn.Linear(32, 4)
    )
    ours_net, loop_net = copy.deepcopy(net), copy.deepcopy(net)
    ours = adam(ours_net.parameters(), lr=1e-2, weight_decay=weight_decay)
    assert ours.defaults["foreach"] is True
    if weight_decay is None:
        assert type(ours) is torch.optim.Adam
        loop = torch.optim.Adam(loop_net.parameters(), lr=1e-2, foreach=False)
    else:
        assert type(ours) is torch.optim.AdamW
        assert ours.defaults["weight_decay"] == weight_decay
        loop = torch.optim.AdamW(
            loop_net.parameters(), lr=1e-2, weight_decay=weight_decay, foreach=False
        )
    got, want = _trained(ours_net, ours), _trained(loop_net, loop)
    assert any(not torch.equal(a, b) for a, b in zip(got, net.parameters(), strict=True))
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)
