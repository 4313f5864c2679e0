"""Quickstart: Aaren attention is softmax attention of one query, computed as an RNN.

Runs in a few seconds on a CPU:

1. the parallel scan equals softmax attention over every prefix (checked against
   ``scaled_dot_product_attention``);
2. the same outputs come from feeding tokens one at a time through ``aaren_step``, with a
   state whose size never grows;
3. an ``Aaren`` stack processes a history in parallel and then streams new steps in O(1),
   while a causal Transformer's KV cache grows with every step.

Run: ``python examples/scan_quickstart.py``
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from aaren_ts.nn import make_backbone, map_state
from aaren_ts.scan import aaren_attention, aaren_step


def state_numel(state) -> int:
    sizes = []
    map_state(lambda t: sizes.append(t.numel()) or t, state)
    return sum(sizes)


def main() -> None:
    torch.manual_seed(0)
    batch, heads, n, d_head = 2, 4, 2048, 32

    # 1. One learned query q attends over keys K and values V of every prefix.
    q = torch.randn(batch, heads, 1, d_head)
    keys = torch.randn(batch, heads, n, d_head)
    values = torch.randn(batch, heads, n, d_head)
    scores = (keys @ q.transpose(-1, -2)).squeeze(-1) / math.sqrt(d_head)
    t0 = time.perf_counter()
    outputs = aaren_attention(scores, values)
    t_scan = time.perf_counter() - t0
    t0 = time.perf_counter()
    sdpa = F.scaled_dot_product_attention(q.expand(-1, -1, n, -1), keys, values, is_causal=True)
    t_sdpa = time.perf_counter() - t0
    err = (outputs - sdpa).abs().max().item()
    print(f"1. scan over {n} tokens: {t_scan * 1e3:.1f} ms (causal SDPA {t_sdpa * 1e3:.1f} ms)")
    print(f"   max |scan - softmax attention| = {err:.2e}")

    # 2. The same outputs, one token at a time, from a constant-size state.
    step_state, step_out = None, None
    for k in range(n):
        step_out, step_state = aaren_step(step_state, scores[..., k], values[..., k, :])
    err = (step_out - outputs[..., -1, :]).abs().max().item()
    print(f"2. {n} O(1) steps reproduce the last output: max error {err:.2e}; state holds")
    print(f"   {state_numel(step_state)} numbers whatever the length (m, u, w per head)")

    # 3. Layers: parallel over the history, then streaming, Aaren vs Transformer.
    d_model = 64
    history = torch.randn(batch, 512, d_model)
    for name in ("aaren", "transformer"):
        model = make_backbone(name, d_model, n_layers=2, n_heads=4).eval()
        with torch.no_grad():
            _, st = model(history)
            size_before = state_numel(st)
            t0 = time.perf_counter()
            for _ in range(100):
                _, st = model.step(torch.randn(batch, d_model), st)
            per_step = (time.perf_counter() - t0) / 100
        print(
            f"3. {name:11s}: state {size_before:>7d} -> {state_numel(st):>7d} numbers after "
            f"100 more steps, {per_step * 1e3:.2f} ms per step"
        )


if __name__ == "__main__":
    main()
