"""Quickstart: Aaren attention is softmax attention of one query, computed as an RNN.

Takes a few seconds: 2.4 s of CPU time on one core, 5 s of wall-clock time on a busy
2-core machine (``time python examples/scan_quickstart.py``):

1. the parallel scan equals softmax attention over every prefix (checked against
   ``scaled_dot_product_attention``);
2. the same outputs come from feeding tokens one at a time through ``aaren_step``, with a
   state whose size never grows (printed after 1, 16, 256 and 2048 tokens);
3. an ``Aaren`` stack processes a history in parallel and then streams new steps with a state
   of fixed size, while a causal Transformer's KV cache grows with every step.

The evidence for O(1) memory per step is the state sizes: exact counts, the same on every
machine. The times printed beside them are wall-clock measurements of this run; they vary
with the machine and its load, and nothing here is inferred from them.

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


def timed(fn, *args):
    """``(result, seconds)`` of ``fn(*args)``, after one untimed warm-up call."""
    fn(*args)
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def main() -> None:
    torch.manual_seed(0)
    batch, heads, n, d_head = 2, 4, 2048, 32

    # 1. One learned query q attends over keys K and values V of every prefix.
    q = torch.randn(batch, heads, 1, d_head)
    keys = torch.randn(batch, heads, n, d_head)
    values = torch.randn(batch, heads, n, d_head)
    scores = (keys @ q.transpose(-1, -2)).squeeze(-1) / math.sqrt(d_head)
    outputs, t_scan = timed(aaren_attention, scores, values)
    sdpa, t_sdpa = timed(
        lambda: F.scaled_dot_product_attention(
            q.expand(-1, -1, n, -1), keys, values, is_causal=True
        )
    )
    err = (outputs - sdpa).abs().max().item()
    print(f"1. scan over {n} tokens (wall-clock {t_scan * 1e3:.1f} ms; causal SDPA "
          f"{t_sdpa * 1e3:.1f} ms)")  # fmt: skip
    print(f"   max |scan - softmax attention| = {err:.2e}")

    # 2. The same outputs, one token at a time, from a constant-size state.
    step_state, step_out, sizes = None, None, {}
    for k in range(n):
        step_out, step_state = aaren_step(step_state, scores[..., k], values[..., k, :])
        if k + 1 in (1, 16, 256, n):
            sizes[k + 1] = state_numel(step_state)
    err = (step_out - outputs[..., -1, :]).abs().max().item()
    print(f"2. {n} steps of aaren_step reproduce the last output: max error {err:.2e}")
    print(
        f"   state size after {', '.join(map(str, sizes))} tokens: "
        f"{', '.join(map(str, sizes.values()))} numbers (m, u, w per head)"
    )

    # 3. Layers: parallel over the history, then streaming, Aaren vs Transformer.
    d_model, length, steps = 64, 512, 100
    marks = (length, length + steps // 2, length + steps)
    history = torch.randn(batch, length, d_model)
    print(f"3. state size after a history of {length} tokens, then {steps // 2} and {steps} "
          "steps; wall-clock time per step:")  # fmt: skip
    for name in ("aaren", "transformer"):
        model = make_backbone(name, d_model, n_layers=2, n_heads=4).eval()
        with torch.no_grad():
            _, st = model(history)
            sizes = [state_numel(st)]
            t0 = time.perf_counter()
            for k in range(length + 1, length + steps + 1):
                _, st = model.step(torch.randn(batch, d_model), st)
                if k in marks:
                    sizes.append(state_numel(st))
            per_step = (time.perf_counter() - t0) / steps
        print(
            f"   {name:11s}: {', '.join(map(str, sizes))} numbers; {per_step * 1e3:.2f} ms per step"
        )


if __name__ == "__main__":
    main()
