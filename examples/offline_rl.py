"""Offline RL: learn a Hopper policy from logged data, then act with O(1) cost per step.

``DecisionAaren`` reads an episode as (return-to-go, observation, action) tokens, as the
Decision Transformer does, and is trained to imitate each logged action given the return
that followed it. Asked for a high return, it imitates the behaviour that earned one. Aaren
reads the whole episode so far and carries an O(1) state; a Decision Transformer re-reads its
last K = 20 steps for every action.

The data set is ``hopper-medium-replay``: the replay buffer of a SAC run stopped at about a
third of expert return, made locally with Gymnasium's MuJoCo Hopper (``python -m
aaren_ts.rl.datasets hopper``, about 15 minutes; ``--quick`` makes a tiny one instead).

Prints each policy's return (D4RL-normalised: 0 = random, 100 = expert) beside the random
and behaviour policies, and writes ``examples/offline_rl.png`` (``--plot PATH`` elsewhere):
time per action and the memory held for the history against the episode step, for Aaren,
a Transformer with a full-history KV cache and one re-reading a 20-step window.

Needs the ``rl`` extra (``pip install -e ".[rl,plot]"``). Run from the repository root::

    python examples/offline_rl.py            # about 5 minutes on one CPU core
    python examples/offline_rl.py --quick    # a tiny data set and short fits: checks it works
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from aaren_ts._checks import plot_option
from aaren_ts.rl import DecisionAaren

PLOT = Path(__file__).with_suffix(".png")


def _data(quick: bool) -> dict:
    from aaren_ts.rl.datasets import generate, load_dataset

    if quick:  # 1,500 SAC steps: a real but tiny pipeline
        root = Path(tempfile.mkdtemp(prefix="aaren_rl_"))
        generate("hopper", root=root, max_sac_steps=1500, eval_every=1500,
                 medium_transitions=300, verbose=False)  # fmt: skip
        return load_dataset("hopper-medium-replay", root=root)
    try:
        return load_dataset("hopper-medium-replay")
    except FileNotFoundError as err:
        sys.exit(f"{err}\n(or run this example with --quick)")


def _cost_per_action(policy: DecisionAaren, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Milliseconds per act + observe, and the bytes the stream holds for its history, over
    one ``steps``-step stream of random observations."""
    rng = np.random.default_rng(0)
    warm = policy.start_episode(1000.0)  # the first calls pay one-off costs, not per step
    for _ in range(5):
        warm.act(rng.normal(size=len(policy.obs_mean_)))
        warm.observe(1.0)
    stream = policy.start_episode(1000.0)
    ms, nbytes = np.empty(steps), np.empty(steps)
    for t in range(steps):
        started = time.perf_counter()
        stream.act(rng.normal(size=len(policy.obs_mean_)))
        stream.observe(1.0)
        ms[t] = 1e3 * (time.perf_counter() - started)
        nbytes[t] = stream.state_nbytes
    return ms, nbytes


def main(argv: list[str] | None = None):
    """Run the example (``argv`` default: the command line); returns the figure it wrote."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, 30 updates, 2 episodes")
    parser.add_argument("--plot", dest="out", type=plot_option(), default=PLOT,
                        help="where to write the PNG")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from aaren_ts.rl.datasets import normalized_return
    from aaren_ts.rl.evaluate import evaluate_policy

    data = _data(args.quick)
    info = data["info"]
    updates, episodes, steps = (30, 2, 100) if args.quick else (2000, 10, 1000)
    print(f"hopper-medium-replay: {info['transitions']:,} steps in {info['episodes']} episodes")
    print(f"random policy: {normalized_return('hopper', info['random_return']):.1f}")
    print(f"behaviour policy: {normalized_return('hopper', info['behaviour_return']):.1f}")
    target = info["dataset_return_max"]
    policies = {}
    for label, settings in (
        ("Aaren (full history)", {"backbone": "aaren"}),
        ("Transformer (K=20)", {"backbone": "transformer", "context_length": 20}),
    ):
        policy = DecisionAaren(**settings, max_updates=updates, random_state=0)
        policies[label] = policy.fit(data)
        returns = evaluate_policy(policy, "hopper", target, episodes=episodes, seed=100)
        score = normalized_return("hopper", returns)
        print(f"{label}: {score.mean():.1f} +- {score.std():.1f} over {episodes} episodes "
              f"(asked for {target:.0f})")  # fmt: skip
    full_cache = DecisionAaren(backbone="transformer", max_updates=1, random_state=0).fit(data)
    costs = {
        "Aaren (O(1) state)": _cost_per_action(policies["Aaren (full history)"], steps),
        "Transformer (full KV cache)": _cost_per_action(full_cache, steps),
        "Transformer (K=20 window)": _cost_per_action(policies["Transformer (K=20)"], steps),
    }
    for label, (ms, _) in costs.items():
        print(f"{label}: {np.median(ms[:10]):.2f} ms per action at the start, "
              f"{np.median(ms[-10:]):.2f} ms at step {steps}")  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    size = max(1, steps // 20)  # the median of each bin: timings on a shared CPU have spikes
    for label, (ms, nbytes) in costs.items():
        bins = ms[: len(ms) // size * size].reshape(-1, size)
        left.plot((np.arange(len(bins)) + 0.5) * size, np.median(bins, axis=1), label=label)
        right.plot(np.arange(1, steps + 1), nbytes, label=label)
    left.set(xlabel="episode step", ylabel=f"ms per action (median of {size} steps)",
             title="Time per action (1 CPU thread)")  # fmt: skip
    left.set_ylim(bottom=0)
    right.set(xlabel="episode step", ylabel="bytes held for the history", yscale="log",
              title="Memory per episode")  # fmt: skip
    right.legend()
    fig.savefig(args.out, dpi=110)
    print(f"plot saved to {args.out}")
    return fig


if __name__ == "__main__":
    main()
