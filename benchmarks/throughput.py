"""End-to-end training throughput: Aaren vs the Transformer backbone, tokens per second.

A model of the size ``AarenForecaster`` trains (d_model 128, 4 layers, 4 heads, an input
projection and a linear head) takes AdamW steps on random sequences; the table gives training
tokens per second (batch x context / time of one forward + backward + optimiser step, median
of the timed steps after warm-up) for ``backbone="aaren"`` and ``"transformer"`` at each
context length, and their ratio. Every step sees the same number of tokens
(``--tokens-per-step``), so the batch shrinks as the context grows.

Targets on GPU (issue 4): Aaren >= 2x the Transformer at context 2048 and >= 5x at 8192.

Running it
----------
::

    python benchmarks/throughput.py                      # GPU: contexts 512 2048 8192
    python benchmarks/throughput.py --device cpu         # CPU: context 512
    python benchmarks/throughput.py --quick              # tiny: checks that the script works

Only torch and ``aaren_ts.nn`` are needed (the GPU machine has no sktime).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from aaren_ts._checks import json_option  # noqa: E402
from aaren_ts.nn import make_backbone  # noqa: E402

D_MODEL, N_LAYERS, N_HEADS, N_INPUTS = 128, 4, 4, 8


class Model(nn.Module):
    """Input projection, backbone, per-step linear head: a forecaster's network shape."""

    def __init__(self, backbone: str) -> None:
        super().__init__()
        self.inp = nn.Linear(N_INPUTS, D_MODEL)
        self.backbone = make_backbone(backbone, D_MODEL, N_LAYERS, N_HEADS)
        self.head = nn.Linear(D_MODEL, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.backbone(self.inp(x))
        return self.head(y).squeeze(-1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tokens_per_second(
    backbone: str, context: int, tokens: int, device: torch.device, steps: int, warmup: int
) -> dict:
    torch.manual_seed(0)
    batch = max(1, tokens // context)
    model = Model(backbone).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, context, N_INPUTS, device=device)
    y = torch.randn(batch, context, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()

    try:
        for _ in range(warmup):
            step()
        _sync(device)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            _sync(device)
            times.append(time.perf_counter() - t0)
    except torch.OutOfMemoryError:
        return {"backbone": backbone, "context": context, "batch": batch, "tok_s": "oom"}
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    sec = statistics.median(times)
    return {
        "backbone": backbone,
        "context": context,
        "batch": batch,
        "step_ms": sec * 1e3,
        "tok_s": batch * context / sec,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    p.add_argument("--contexts", type=int, nargs="+", help="default GPU 512 2048 8192, CPU 512")
    p.add_argument("--tokens-per-step", type=int, help="default GPU 65536, CPU 8192")
    p.add_argument("--steps", type=int, default=10, help="timed steps (median kept)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--quick", action="store_true", help="contexts 32 64, 256 tokens, 2 steps")
    p.add_argument("--json", type=json_option(), help="also write the rows here")
    args = p.parse_args(argv)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    gpu = args.device == "cuda"
    if args.quick:
        args.contexts = args.contexts or [32, 64]
        args.tokens_per_step = args.tokens_per_step or 256
        args.steps, args.warmup = 2, 1
    args.contexts = args.contexts or ([512, 2048, 8192] if gpu else [512])
    args.tokens_per_step = args.tokens_per_step or (65536 if gpu else 8192)
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = []
    for context in args.contexts:
        pair = {}
        for backbone in ("aaren", "transformer"):
            r = tokens_per_second(
                backbone, context, args.tokens_per_step, device, args.steps, args.warmup
            )
            pair[backbone] = r
            rows.append(r)
            print(f"  {r}", flush=True)
        a, t = pair["aaren"]["tok_s"], pair["transformer"]["tok_s"]
        pair["aaren"]["ratio"] = a / t if isinstance(a, float) and isinstance(t, float) else None
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    print(f"\n# training throughput on {name} | torch {torch.__version__} | {now}")
    print(f"# command: {command}")
    print(
        f"# d_model {D_MODEL}, {N_LAYERS} layers, {N_HEADS} heads, float32, AdamW; "
        f"{args.tokens_per_step} tokens per step; median of {args.steps} steps"
    )
    print("\n| context | batch | aaren tok/s | transformer tok/s | aaren / transformer |")
    print("|---|---|---|---|---|")
    by_ctx: dict[int, dict] = {}
    for r in rows:
        by_ctx.setdefault(r["context"], {})[r["backbone"]] = r
    checks = []
    for ctx, pair in by_ctx.items():
        a, t = pair["aaren"], pair["transformer"]
        ratio = a.get("ratio")
        fmt = [f"{x:,.0f}" if isinstance(x, float) else str(x) for x in (a["tok_s"], t["tok_s"])]
        ratio_s = f"{ratio:.2f}x" if ratio else "-"
        print(f"| {ctx} | {a['batch']} | {fmt[0]} | {fmt[1]} | {ratio_s} |")
        need = {2048: 2.0, 8192: 5.0}.get(ctx)
        if device.type == "cuda" and need and ratio:
            ok = "PASS" if ratio >= need else "FAIL"
            checks.append(f"{ok}: context {ctx}: Aaren {ratio:.2f}x the Transformer (>= {need}x)")
    if checks:
        print("\n" + "\n".join(checks))
    if args.json:
        args.json.write_text(json.dumps({"command": command, "date": now, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
