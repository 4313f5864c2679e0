"""Selection runs for ``DecisionAaren``'s defaults (issue 18), kept apart from the benchmark.

Each run fits one policy with training seed 10 (``--seeds``: others, never the benchmark's
0-2) and plays 10 episodes in environments seeded 500-509; ``benchmarks/rl.py`` uses training
seeds 0-2 and environments 0-2009 in steps of 1,000, so nothing chosen here was chosen on the
benchmark's episodes. Prints the
D4RL-normalised return (mean +- std over the episodes) and the last training loss.

Running it
----------
::

    python benchmarks/rl_select.py halfcheetah-medium '{"n_heads": 1}' '{"n_heads": 4}'
    python benchmarks/rl_select.py hopper-medium '{"backbone": "transformer", "context_length": 20}'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aaren_ts.rl import DecisionAaren
from aaren_ts.rl.datasets import load_dataset, normalized_return
from aaren_ts.rl.evaluate import evaluate_policy

TRAINING_SEED, ENV_SEED = 10, 500


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("settings", nargs="+", type=json.loads, help="DecisionAaren kwargs")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--root", default=None, help="data folder (default: the cache)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[TRAINING_SEED],
                        help="training seeds, one fit each (not 0-2: the benchmark's)")  # fmt: skip
    args = parser.parse_args(argv)
    if set(args.seeds) & {0, 1, 2}:
        parser.error("--seeds 0-2 are the benchmark's training seeds")
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    data = load_dataset(args.dataset, root=args.root)
    info = data["info"]
    for settings, seed in ((s, seed) for s in args.settings for seed in args.seeds):
        started = time.perf_counter()
        policy = DecisionAaren(random_state=seed, **settings).fit(data)
        seconds = time.perf_counter() - started
        returns = evaluate_policy(policy, info["task"], info["dataset_return_max"],
                                  episodes=args.episodes, seed=ENV_SEED)  # fmt: skip
        score = normalized_return(info["task"], returns)
        print(f"{args.dataset} {json.dumps(settings)} seed {seed} fit {seconds:.0f}s score "
              f"{score.mean():.1f} +- {score.std():.1f} loss {policy.loss_curve_[-1]:.4f}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
