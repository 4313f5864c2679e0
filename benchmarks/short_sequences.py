"""Short sequences: which exact scan form is cheapest, and an Aaren block against a Transformer's.

Two tables, one thread by default:

1. **Scan forms.** ``aaren_attention`` forward and forward + backward with ``backend="dense"``
   (one masked ``(N, N)`` softmax block per row), ``"short"`` (the same block with its
   hand-written backward; forward + backward only) and ``"chunked"`` (the chunked scan), for
   rows x tokens on a grid, with what ``"auto"`` picks in training. The crossover it shows is where
   ``aaren_ts.scan.dense``'s bounds come from.
2. **Blocks.** One ``AarenBlock`` and one ``TransformerBlock`` (d_model 128, 4 heads, the
   feed-forward included) forward + backward at 12, 96, 512 and 2,048 tokens, the same number
   of tokens per call (the batch shrinks as the sequence grows), and their ratio.

3. **Attention's share.** At one shape (default: the windowed forecaster's ETTh1 batches,
   224 rows x 12 tokens, ``d_model`` 32, 4 heads), each block and its attention sublayer
   (the pre-norm included) forward + backward. The Transformer block's attention share ``f``
   bounds what a cheaper attention can do to a block's time: at a ratio ``r`` of the two
   attentions a block costs ``1 - f (1 - r)`` of the Transformer's.

4. **The windowed forecaster's training step.** One optimiser step of the windowed
   forecasting network at ETTh1's shape (32 windows x 7 channels, context 96, patch tokens
   of 16 values every 8 steps, ``d_model`` 32, 2 layers, H = 96, 5 quantiles):
   ``window_forecast``, the pinball loss, backward and AdamW, with the Aaren backbone, the
   Transformer backbone and none (the backbone skipped: what the two share, the patching,
   the embedding, the head, the window's linear path, the loss and the optimiser). The
   step ratio is what a windowed fit's time per epoch can show; the backbone-only ratio
   ``(aaren - shared) / (transformer - shared)`` is its floor with no shared cost at all.

Medians of ``--repeats`` timed calls after two warm-up calls. Tables 1-3 need only torch
and ``aaren_ts.nn``; table 4 imports the forecaster's network (``aaren_ts.estimators``).

Running it
----------
::

    python benchmarks/short_sequences.py --threads 1
    python benchmarks/short_sequences.py --quick      # tiny: checks that the script works
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from aaren_ts._checks import json_option, positive_int_option  # noqa: E402
from aaren_ts.nn.aaren import AarenBlock  # noqa: E402
from aaren_ts.nn.transformer import KVCache, TransformerBlock  # noqa: E402
from aaren_ts.scan import aaren_attention, select_backend  # noqa: E402
from benchmarks._run_record import run_header  # noqa: E402

D_HEAD, D_MODEL, N_HEADS = 32, 128, 4


def median_ms(call: Callable[[], None], repeats: int) -> float:
    return medians_in_turn({"call": call}, repeats)["call"]


def medians_in_turn(calls: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median milliseconds of each call after two warm-up rounds, the calls timed in turn
    (round robin), so that a change of load hits them alike."""
    for _ in range(2):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def scan_row(rows: int, n: int, repeats: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(rows, n, generator=gen).requires_grad_()
    values = torch.randn(rows, n, D_HEAD, generator=gen).requires_grad_()
    upstream = torch.randn(rows, n, D_HEAD, generator=gen)
    row = {"rows": rows, "n": n, "auto": select_backend(scores, values)}
    for backend in ("dense", "chunked"):

        def forward(b: str = backend) -> None:
            with torch.no_grad():
                aaren_attention(scores, values, backend=b)

        def both(b: str = backend) -> None:
            aaren_attention(scores, values, backend=b).backward(upstream)

        row[f"{backend}_fwd_ms"] = median_ms(forward, repeats)
        row[f"{backend}_fwdbwd_ms"] = median_ms(both, repeats)
    # the dense block with its hand-written backward (its forward is the dense one)
    row["short_fwdbwd_ms"] = median_ms(
        lambda: aaren_attention(scores, values, backend="short").backward(upstream), repeats
    )
    row["dense_over_chunked"] = row["dense_fwdbwd_ms"] / row["chunked_fwdbwd_ms"]
    return row


def block_row(n: int, tokens: int, repeats: int) -> dict:
    torch.manual_seed(0)
    batch = max(1, tokens // n)
    x = torch.randn(batch, n, D_MODEL, requires_grad=True)
    aaren = AarenBlock(D_MODEL, N_HEADS)
    transformer = TransformerBlock(D_MODEL, N_HEADS, None, 0.0)
    empty = torch.zeros(batch, N_HEADS, 0, D_MODEL // N_HEADS)
    cache = KVCache(empty, empty)

    def run_aaren() -> None:
        aaren(x)[0].sum().backward()

    def run_transformer() -> None:
        transformer(x, cache)[0].sum().backward()

    a, t = median_ms(run_aaren, repeats), median_ms(run_transformer, repeats)
    return {"n": n, "batch": batch, "aaren_ms": a, "transformer_ms": t, "ratio": a / t}


def share_row(rows: int, n: int, d_model: int, heads: int, repeats: int) -> dict:
    """Forward + backward of each block and of its attention sublayer at one shape."""
    torch.manual_seed(0)
    x = torch.randn(rows, n, d_model, requires_grad=True)
    aaren = AarenBlock(d_model, heads)
    transformer = TransformerBlock(d_model, heads, None, 0.0)
    empty = torch.zeros(rows, heads, 0, d_model // heads)
    cache = KVCache(empty, empty)
    calls = {
        "aaren_block": lambda: aaren(x)[0].sum().backward(),
        "aaren_attention": lambda: aaren.attn(aaren.norm_attn(x))[0].sum().backward(),
        "transformer_block": lambda: transformer(x, cache)[0].sum().backward(),
        "transformer_attention": (
            lambda: transformer.attn(transformer.norm_attn(x), cache)[0].sum().backward()
        ),
    }
    row = {"rows": rows, "n": n, "d_model": d_model, "heads": heads}
    row.update({f"{name}_ms": ms for name, ms in medians_in_turn(calls, repeats).items()})
    row["transformer_share"] = row["transformer_attention_ms"] / row["transformer_block_ms"]
    row["attention_ratio"] = row["aaren_attention_ms"] / row["transformer_attention_ms"]
    row["block_ratio"] = row["aaren_block_ms"] / row["transformer_block_ms"]
    # an attention at half the Transformer's: its value and output projections against
    # the query, key, value and output ones, the matmul floor of this attention
    row["block_ratio_at_half"] = 1 - row["transformer_share"] / 2
    return row


def window_step_row(d_model: int, heads: int, repeats: int) -> dict:
    """One training step of the windowed forecaster's network per backbone, and without one."""
    from aaren_ts.estimators._forecast_net import ForecastNet, pinball_loss, window_forecast
    from aaren_ts.estimators._optim import adam

    class NoBackbone(torch.nn.Module):  # the tokens straight to the head
        def forward(self, x, state=None, *, last_only=False):
            return (x[:, -1] if last_only else x), None

    quantiles, horizon, context = [0.025, 0.1, 0.5, 0.9, 0.975], 96, 96
    gen = torch.Generator().manual_seed(0)
    window = torch.randn(32, context, 7, generator=gen)
    target = torch.randn(32, horizon, 7, generator=gen)
    calls = {}
    for name in ("aaren", "transformer", "shared"):
        torch.manual_seed(0)
        net = ForecastNet(
            16, 1, horizon, quantiles, backbone="aaren" if name == "shared" else name,
            d_model=d_model, n_layers=2, n_heads=heads, context_length=context,
        ).train()  # fmt: skip
        if name == "shared":
            net.backbone = NoBackbone()
        optimizer = adam(net.parameters(), lr=1e-3)

        def step(net=net, optimizer=optimizer) -> None:
            forecast, centre, scale = window_forecast(net, window, 16, True, stride=8)
            forecast = forecast * scale.unsqueeze(-1) + centre.unsqueeze(-1)
            loss = pinball_loss(forecast, target, net.quantiles)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        calls[name] = step
    row = {f"{k}_ms": v for k, v in medians_in_turn(calls, repeats).items()}
    a, t, shared = row["aaren_ms"], row["transformer_ms"], row["shared_ms"]
    row.update(
        d_model=d_model,
        heads=heads,
        step_ratio=a / t,
        backbone_ratio=(a - shared) / (t - shared),
        shared_share=shared / t,
    )
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=positive_int_option(), default=1)
    parser.add_argument("--repeats", type=positive_int_option(), default=7)
    parser.add_argument("--rows", type=int, nargs="+", default=[4, 16, 128, 1024, 8192])
    parser.add_argument("--n", type=int, nargs="+", default=[4, 12, 32, 64, 128])
    parser.add_argument("--block-n", type=int, nargs="+", default=[12, 96, 512, 2048])
    parser.add_argument("--block-tokens", type=positive_int_option(), default=16384)
    parser.add_argument(
        "--share-shape",
        type=positive_int_option(),
        nargs=4,
        default=[224, 12, 32, 4],
        metavar=("ROWS", "N", "D_MODEL", "HEADS"),
    )
    parser.add_argument("--quick", action="store_true", help="a tiny grid, 2 repeats")
    parser.add_argument("--json", type=json_option("--json"), default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.n, args.block_n, args.block_tokens, args.repeats = [8], [4, 12], [12], 96, 2
        args.share_shape = [8, 12, 16, 4]
    torch.set_num_threads(args.threads)

    scans = [scan_row(r, n, args.repeats) for r in args.rows for n in args.n]
    print("| rows | N | auto (training) | dense fwd ms | chunked fwd ms | dense fwd+bwd ms | "
          "short fwd+bwd ms | chunked fwd+bwd ms | dense / chunked (fwd+bwd) |")  # fmt: skip
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in scans:
        print(
            f"| {r['rows']} | {r['n']} | {r['auto']} | {r['dense_fwd_ms']:.2f} | "
            f"{r['chunked_fwd_ms']:.2f} | {r['dense_fwdbwd_ms']:.2f} | "
            f"{r['short_fwdbwd_ms']:.2f} | {r['chunked_fwdbwd_ms']:.2f} | "
            f"{r['dense_over_chunked']:.2f} |"
        )
    blocks = [block_row(n, args.block_tokens, args.repeats) for n in args.block_n]
    print(f"\nBlocks, forward + backward, {args.block_tokens} tokens per call:\n")
    print("| tokens | batch | Aaren block ms | Transformer block ms | Aaren / Transformer |")
    print("|---:|---:|---:|---:|---:|")
    for b in blocks:
        print(
            f"| {b['n']} | {b['batch']} | {b['aaren_ms']:.1f} | {b['transformer_ms']:.1f} | "
            f"{b['ratio']:.2f} |"
        )
    share = share_row(*args.share_shape, args.repeats)
    print(
        f"\nAttention's share, forward + backward, {share['rows']} rows x {share['n']} tokens, "
        f"d_model {share['d_model']}, {share['heads']} heads:\n"
    )
    print("| block | whole block ms | attention sublayer ms | attention share |")
    print("|---|---:|---:|---:|")
    for name in ("aaren", "transformer"):
        block, attention = share[f"{name}_block_ms"], share[f"{name}_attention_ms"]
        print(f"| {name} | {block:.2f} | {attention:.2f} | {attention / block:.2f} |")
    print(
        f"\nAaren / Transformer: attention {share['attention_ratio']:.2f}, block "
        f"{share['block_ratio']:.2f}; with Aaren's attention at half the Transformer's, a block "
        f"would be at {share['block_ratio_at_half']:.2f}"
    )
    step = window_step_row(args.share_shape[2], args.share_shape[3], args.repeats)
    print(
        f"\nThe windowed forecaster's training step (ETTh1's shape, d_model {step['d_model']}, "
        f"{step['heads']} heads), one optimiser step:\n"
    )
    print("| backbone | step ms |")
    print("|---|---:|")
    for name in ("aaren", "transformer", "shared"):
        label = "none (the shared part)" if name == "shared" else name
        print(f"| {label} | {step[f'{name}_ms']:.2f} |")
    print(
        f"\nAaren / Transformer: step {step['step_ratio']:.2f}, backbones alone "
        f"{step['backbone_ratio']:.2f}; the shared part is {step['shared_share']:.2f} of the "
        "Transformer's step"
    )
    result = {
        **run_header("short_sequences.py", argv, args.threads, ["torch"]),
        "scan": scans,
        "blocks": blocks,
        "share": share,
        "window_step": step,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
