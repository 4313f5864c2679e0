"""Offline RL (issue 18): normalised return of Aaren, a Decision Transformer (K = 20) and a GRU
on the locally made D4RL-style sets, and the per-step cost of acting against episode length.

Returns: for each data set present, each model is fitted with ``--seeds`` seeds and each fit
plays ``--episodes`` episodes (seeded environments, batched in one stream), conditioned on the
best episode return in its data set (a choice fixed before any evaluation, not tuned). The
table gives D4RL's normalised score (0 = random, 100 = D4RL's expert reference) as mean +- std
over the seeds of each seed's mean, with the behaviour policy (the stopped SAC run, sampling
as it did when it logged the medium set) and a uniform random policy beside.

Latency: one stream, ``--latency-steps`` steps of random observations; the median ``act`` +
``observe`` time and the bytes held for the history at steps 1, 10, 100 and 1,000.

Running it
----------
::

    python -m aaren_ts.rl.datasets hopper halfcheetah walker2d   # the data sets, once (~1.5 h)
    python benchmarks/rl.py --json benchmarks/results/rl_cpu.json
    python benchmarks/rl.py --quick                        # minutes: checks that it works
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _run_record import run_header  # noqa: E402

from aaren_ts.rl import DecisionAaren  # noqa: E402
from aaren_ts.rl.datasets import load_dataset, normalized_return  # noqa: E402
from aaren_ts.rl.evaluate import evaluate_policy  # noqa: E402

DATASETS = ("hopper-medium", "hopper-medium-replay", "halfcheetah-medium",
            "halfcheetah-medium-replay", "walker2d-medium", "walker2d-medium-replay")  # fmt: skip
# label -> DecisionAaren settings (the paper's comparison: Aaren vs the DT's K = 20 window)
MODELS = {
    "Aaren": {"backbone": "aaren", "context_length": None},
    "Transformer (K=20)": {"backbone": "transformer", "context_length": 20},
    "GRU": {"backbone": "gru", "context_length": None},
}
LATENCY_MODELS = {
    **MODELS,
    "Transformer (full cache)": {"backbone": "transformer", "context_length": None},
}
LATENCY_AT = (1, 10, 100, 1000)


def _returns(name: str, root, seeds, episodes: int, fit_kwargs: dict) -> dict:
    data = load_dataset(name, root=root)
    info = data["info"]
    task = info["task"]
    target = info["dataset_return_max"]
    row = {
        "target_return": target,
        "behaviour": float(normalized_return(task, info["behaviour_return"])),
        "random": float(normalized_return(task, info["random_return"])),
        "transitions": info["transitions"],
        "episodes_in_data": info["episodes"],
        "models": {},
    }
    for label, settings in MODELS.items():
        per_seed, fit_seconds = [], []
        for seed in seeds:
            started = time.perf_counter()
            policy = DecisionAaren(**settings, **fit_kwargs, random_state=seed).fit(data)
            fit_seconds.append(time.perf_counter() - started)
            returns = evaluate_policy(policy, task, target, episodes=episodes, seed=1000 * seed)
            per_seed.append(float(np.mean(normalized_return(task, returns))))
            print(f"  {name} {label} seed {seed}: {per_seed[-1]:.1f} "
                  f"(fit {fit_seconds[-1]:.0f} s)", flush=True)  # fmt: skip
        row["models"][label] = {
            "per_seed": per_seed,
            "mean": float(np.mean(per_seed)),
            "std": float(np.std(per_seed)),
            "fit_seconds": float(np.mean(fit_seconds)),
        }
    return row


def toy_trajectories(rng: np.random.Generator) -> list[dict]:
    """Four random 50-step trajectories (11-dim observations, 3-dim actions): what the
    latency tables fit their policies on (one update: the cost of acting, not the skill)."""
    return [
        {
            "observations": rng.normal(size=(50, 11)),
            "actions": np.tanh(rng.normal(size=(50, 3))),
            "rewards": rng.uniform(size=50),
        }
        for _ in range(4)
    ]


def _latency(steps: int, fit_kwargs: dict) -> dict:
    rng = np.random.default_rng(0)
    toy = toy_trajectories(rng)
    out = {}
    for label, settings in LATENCY_MODELS.items():
        policy = DecisionAaren(**settings, d_model=fit_kwargs.get("d_model", 64), max_updates=1,
                               random_state=0).fit(toy)  # fmt: skip
        warm = policy.start_episode(100.0)  # first calls pay one-off costs: not per step
        for _ in range(20):
            warm.act(rng.normal(size=11))
            warm.observe(0.1)
        stream = policy.start_episode(100.0)
        seconds, nbytes = [], []
        obs = rng.normal(size=(steps, 11))
        for t in range(steps):
            started = time.perf_counter()
            stream.act(obs[t])
            stream.observe(0.1)
            seconds.append(time.perf_counter() - started)
            nbytes.append(stream.state_nbytes)
        at = {}
        for step in LATENCY_AT:
            if step <= steps:
                window = seconds[max(0, step - 5) : step + 5]
                at[step] = {"ms": 1e3 * float(np.median(window)), "bytes": nbytes[step - 1]}
        out[label] = at
    return out


def _print_latency(latency: dict, max_step: int) -> None:
    steps = [s for s in LATENCY_AT if s <= max_step]
    print("\nper-step act + observe: ms (bytes held for the history) at episode step\n")
    print("| model | " + " | ".join(str(s) for s in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for label, at in latency.items():
        cells = [f"{at[s]['ms']:.2f} ({at[s]['bytes']:,})" for s in steps]
        print(f"| {label} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=None, help="default: all present")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--max-updates", type=int, default=None, help="default: the policy's")
    parser.add_argument("--latency-steps", type=int, default=1000)
    parser.add_argument("--skip-returns", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    quick = "a tiny generated set, 1 seed, 20 updates, 2 episodes, 30 steps"
    parser.add_argument("--quick", action="store_true", help=quick)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    fit_kwargs = {} if args.max_updates is None else {"max_updates": args.max_updates}
    root, names, seeds = None, args.datasets, args.seeds
    if args.quick:
        from aaren_ts.rl.datasets import generate

        root = Path(tempfile.mkdtemp(prefix="aaren_rl_"))
        generate("hopper", root=root, max_sac_steps=1000, eval_every=1000,
                 medium_transitions=300, verbose=False)  # fmt: skip
        names, seeds, args.episodes, args.latency_steps = ["hopper-medium"], [0], 2, 30
        fit_kwargs = {"max_updates": 20, "d_model": 16}
    if names is None:
        names = []
        for name in DATASETS:
            try:
                load_dataset(name)
                names.append(name)
            except FileNotFoundError:
                print(f"(skipping {name}: not generated)")
    record = run_header("rl.py", argv, args.threads,
                        ["torch", "numpy", "gymnasium", "mujoco", "stable-baselines3"])  # fmt: skip
    record.update(seeds=seeds, episodes=args.episodes, fit=fit_kwargs, returns={}, latency={})
    if not args.skip_returns:
        for name in names:
            record["returns"][name] = _returns(name, root, seeds, args.episodes, fit_kwargs)
        print(f"\nD4RL-normalised return, mean +- std over {len(seeds)} seeds "
              f"({args.episodes} episodes each)\n")  # fmt: skip
        print("| data set | random | behaviour | " + " | ".join(MODELS) + " |")
        print("|---|---|---|" + "---|" * len(MODELS))
        for name, row in record["returns"].items():
            cells = [f"{m['mean']:.1f} +- {m['std']:.1f}" for m in row["models"].values()]
            print(f"| {name} | {row['random']:.1f} | {row['behaviour']:.1f} | "
                  + " | ".join(cells) + " |")  # fmt: skip
    if not args.skip_latency:
        record["latency"] = _latency(args.latency_steps, fit_kwargs)
        _print_latency(record["latency"], args.latency_steps)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
