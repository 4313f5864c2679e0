"""D4RL-style offline data sets made locally: Gymnasium's MuJoCo tasks, SAC behaviour policies.

D4RL's servers are unreachable from many machines (and D4RL needs the old ``mujoco-py``), so
this module regenerates its "medium" and "medium-replay" recipes with pip packages
(``gymnasium[mujoco]``, ``stable-baselines3``; the ``rl`` extra):

1. train SAC (stable-baselines3's defaults, ``learning_starts=10_000``) on the task, evaluating
   the deterministic policy every ``eval_every`` steps, and stop once it reaches
   ``target_fraction`` (a third) of D4RL's expert reference return, or at ``max_sac_steps``;
2. ``<task>-medium-replay``: that run's replay buffer, every transition it collected;
3. ``<task>-medium``: ``medium_transitions`` steps of the stopped policy, sampling its
   stochastic actions as D4RL did.

Everything is seeded and single-threaded, so one seed gives the same bytes on one machine. The
files are plain ``.npz`` arrays (``allow_pickle=False`` on loading: no code comes from a data
file) with a JSON record beside them: their SHA-256, the returns of a uniform random policy and
of the behaviour policy (for normalisation), the SAC steps, the versions used. One command
regenerates a task's two sets::

    python -m aaren_ts.rl.datasets hopper --seed 0

The budget is modest on purpose (D4RL's sets hold 1M transitions; these 100k by default), so a
2-core machine builds a task in well under an hour. Returns are not comparable one-to-one with
D4RL's v2 tasks (Gymnasium's v5 models differ slightly); ``D4RL_REFERENCE`` quotes D4RL's
random and expert returns, which ``normalized_return`` uses, for context.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from ..datasets._files import cache_dir

#: short task name -> Gymnasium environment id
TASKS = {"halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5", "walker2d": "Walker2d-v5"}
#: D4RL's reference returns (``d4rl.infos``: random and expert scores of the v2 tasks)
D4RL_REFERENCE = {
    "halfcheetah": {"random": -280.178953, "expert": 12135.0},
    "hopper": {"random": -20.272305, "expert": 3234.3},
    "walker2d": {"random": 1.629008, "expert": 4592.3},
}
KINDS = ("medium", "medium-replay")
ARRAYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def _require_rl() -> None:
    try:
        import gymnasium  # noqa: F401
        import stable_baselines3  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "generating offline RL data needs the 'rl' extra: pip install 'aaren-ts[rl]' "
            f"(gymnasium[mujoco], stable-baselines3); missing: {err.name}"
        ) from err


def make_env(env_id: str):
    """``gymnasium.make(env_id)`` without MuJoCo's compile-time notice about Gymnasium's own
    model files (``settotalmass`` is deprecated), which MuJoCo would print and append to a
    ``MUJOCO_LOG.TXT`` in the working folder; any other MuJoCo warning becomes a Python
    ``RuntimeWarning``. MuJoCo's handler is restored afterwards."""
    import gymnasium as gym

    try:
        import mujoco
    except ImportError:  # not a MuJoCo task's environment: nothing to quieten
        return gym.make(env_id)

    def handler(message: str) -> None:
        if "settotalmass" not in message:
            warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)

    before = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(handler)
    try:
        return gym.make(env_id)
    finally:
        mujoco.set_mju_user_warning(before)


def rl_data_dir() -> Path:
    """Where generated sets live: ``$AAREN_TS_CACHE/rl`` (default ``~/.cache/aaren_ts/rl``)."""
    return cache_dir() / "rl"


def _split_name(name: str) -> tuple[str, str]:
    if not isinstance(name, str):
        raise TypeError(f"data set name must be a str, got {type(name).__name__}")
    task, _, kind = name.partition("-")
    if task not in TASKS or kind not in KINDS:
        names = [f"{t}-{k}" for t in TASKS for k in KINDS]
        raise ValueError(f"unknown offline RL data set {name!r}; known: {names}")
    return task, kind


def normalized_return(task: str, episode_return: float | np.ndarray) -> float | np.ndarray:
    """D4RL's normalised score: 0 for the random policy, 100 for its expert reference."""
    ref = D4RL_REFERENCE[task]
    return 100.0 * (np.asarray(episode_return) - ref["random"]) / (ref["expert"] - ref["random"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_dataset(name: str, root: str | os.PathLike | None = None) -> dict:
    """Load ``"<task>-medium"`` or ``"<task>-medium-replay"`` as D4RL-style flat arrays.

    Returns a dict with ``observations (N, obs_dim)``, ``actions (N, act_dim)``,
    ``rewards (N,)``, ``terminals (N,)``, ``timeouts (N,)`` (an episode ends where either is
    true) and ``info`` (the JSON record: returns for normalisation, SAC steps, versions). The
    file's SHA-256 is checked against the record. Raises ``FileNotFoundError`` naming the
    command that makes the set when it is not there.
    """
    task, _ = _split_name(name)
    folder = Path(root) if root is not None else rl_data_dir()
    data_path, info_path = folder / f"{name}.npz", folder / f"{name}.json"
    if not data_path.is_file() or not info_path.is_file():
        raise FileNotFoundError(
            f"offline RL data set {name!r} is not in {folder}; make it with: "
            f"python -m aaren_ts.rl.datasets {task} (needs the 'rl' extra)"
        )
    info = json.loads(info_path.read_text())
    digest = _sha256(data_path)
    if digest != info.get("sha256"):
        raise ValueError(
            f"{data_path} does not match its record (sha256 {digest[:12]}..., expected "
            f"{str(info.get('sha256'))[:12]}...); regenerate it with: "
            f"python -m aaren_ts.rl.datasets {task}"
        )
    with np.load(data_path, allow_pickle=False) as arrays:
        data = {key: arrays[key] for key in ARRAYS}
    data["info"] = info
    return data


def _episode_returns(rewards: np.ndarray, ends: np.ndarray) -> list[float]:
    returns, total = [], 0.0
    for r, end in zip(rewards, ends, strict=True):
        total += float(r)
        if end:
            returns.append(total)
            total = 0.0
    return returns


def _mean_return(env_id: str, seed: int, episodes: int, policy_for) -> float:
    """Mean return of ``episodes`` episodes (environment ``i`` reset with ``seed + i``);
    ``policy_for(env)`` gives the ``observation -> action`` function to play with."""
    env = make_env(env_id)
    choose = policy_for(env)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, r, terminated, truncated, _ = env.step(choose(obs))
            total += float(r)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def _random_return(env_id: str, seed: int, episodes: int = 10) -> float:
    def uniform(env):
        env.action_space.seed(seed)
        return lambda obs: env.action_space.sample()

    return _mean_return(env_id, seed, episodes, uniform)


def _evaluate(model, env_id: str, seed: int, episodes: int) -> float:
    def deterministic(env):
        return lambda obs: model.predict(obs, deterministic=True)[0]

    return _mean_return(env_id, seed, episodes, deterministic)


def _rollouts(model, env_id: str, seed: int, transitions: int) -> dict:
    """``transitions`` steps of ``model``'s stochastic policy, in whole episodes at the end."""
    env = make_env(env_id)
    rows = {key: [] for key in ARRAYS}
    episode = 0
    obs, _ = env.reset(seed=seed)
    while True:
        action, _ = model.predict(obs, deterministic=False)
        next_obs, r, terminated, truncated, _ = env.step(action)
        for key, value in zip(ARRAYS, (obs, action, r, terminated, truncated), strict=True):
            rows[key].append(value)
        obs = next_obs
        if terminated or truncated:
            episode += 1
            if len(rows["rewards"]) >= transitions:
                break
            obs, _ = env.reset(seed=seed + episode)
    env.close()
    return _as_arrays(rows)


def _as_arrays(rows: dict) -> dict:
    return {
        "observations": np.asarray(rows["observations"], dtype=np.float32),
        "actions": np.asarray(rows["actions"], dtype=np.float32),
        "rewards": np.asarray(rows["rewards"], dtype=np.float32),
        "terminals": np.asarray(rows["terminals"], dtype=bool),
        "timeouts": np.asarray(rows["timeouts"], dtype=bool),
    }


def _replay(model, steps: int) -> dict:
    """The first ``steps`` transitions of SB3's replay buffer, episode ends marked."""
    buffer = model.replay_buffer
    n = min(steps, buffer.size())
    timeouts = buffer.timeouts[:n, 0].astype(bool)
    ends = buffer.dones[:n, 0].astype(bool)  # terminated or truncated, as SB3 stores it
    rows = {
        "observations": buffer.observations[:n, 0],
        "actions": buffer.actions[:n, 0],
        "rewards": buffer.rewards[:n, 0],
        "terminals": ends & ~timeouts,
        "timeouts": timeouts,
    }
    out = {key: np.asarray(value) for key, value in rows.items()}
    out["timeouts"][-1] = out["timeouts"][-1] or not out["terminals"][-1]  # cut episode
    return _as_arrays(out)


def _save(folder: Path, name: str, data: dict, info: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data_path = folder / f"{name}.npz"
    tmp = folder / f".{name}.tmp.npz"
    np.savez_compressed(tmp, **data)
    tmp.replace(data_path)
    ends = data["terminals"] | data["timeouts"]
    returns = _episode_returns(data["rewards"], ends)
    record = dict(info, name=name, sha256=_sha256(data_path), transitions=len(data["rewards"]))
    record.update(episodes=len(returns), dataset_return_mean=float(np.mean(returns)))
    record.update(dataset_return_max=float(np.max(returns)))
    (folder / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")


def generate(
    task: str,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    target_fraction: float = 1 / 3,
    max_sac_steps: int = 150_000,
    eval_every: int = 10_000,
    medium_transitions: int = 100_000,
    verbose: bool = True,
) -> dict:
    """Train the behaviour policy of ``task`` and write its medium and medium-replay sets.

    Returns the JSON record (also written beside each ``.npz``). See the module docstring.
    """
    _require_rl()
    import gymnasium
    import stable_baselines3
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    env_id = TASKS[task]
    target = target_fraction * D4RL_REFERENCE[task]["expert"]
    folder = Path(root) if root is not None else rl_data_dir()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    started = time.perf_counter()
    log = print if verbose else (lambda *a, **k: None)
    evaluations: list[tuple[int, float]] = []

    class StopAtTarget(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every:
                return True
            ret = _evaluate(self.model, env_id, seed + 10_000, episodes=5)
            evaluations.append((self.num_timesteps, ret))
            log(f"{task}: {self.num_timesteps} SAC steps, return {ret:.0f} (target {target:.0f})")
            return ret < target

    env = make_env(env_id)
    model = SAC("MlpPolicy", env, seed=seed, learning_starts=10_000, device="cpu", verbose=0)
    model.learn(total_timesteps=max_sac_steps, callback=StopAtTarget())
    sac_steps = model.num_timesteps
    info = {
        "task": task,
        "env_id": env_id,
        "seed": seed,
        "sac_steps": sac_steps,
        "target_return": target,
        "evaluations": evaluations,
        "behaviour_return_deterministic": evaluations[-1][1] if evaluations else None,
        "random_return": _random_return(env_id, seed + 20_000),
        "d4rl_reference": D4RL_REFERENCE[task],
        "versions": {
            "gymnasium": gymnasium.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
    }
    medium = _rollouts(model, env_id, seed + 30_000, medium_transitions)
    # the behaviour policy's return: the stopped SAC run sampling its actions, as it logged
    # the medium set (both sets' records carry it, for normalisation)
    info["behaviour_return"] = float(
        np.mean(_episode_returns(medium["rewards"], medium["terminals"] | medium["timeouts"]))
    )
    replay = _replay(model, sac_steps)
    _save(folder, f"{task}-medium-replay", replay, dict(info, kind="medium-replay"))
    medium_info = dict(info, kind="medium")
    _save(folder, f"{task}-medium", medium, medium_info)
    minutes = (time.perf_counter() - started) / 60
    log(f"{task}: wrote {task}-medium and {task}-medium-replay to {folder} in {minutes:.1f} min")
    return medium_info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m aaren_ts.rl.datasets",
        description="Generate a task's D4RL-style medium and medium-replay sets locally.",
    )
    parser.add_argument("tasks", nargs="+", choices=sorted(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None, help="output folder (default: the cache)")
    parser.add_argument("--max-sac-steps", type=int, default=150_000)
    parser.add_argument("--medium-transitions", type=int, default=100_000)
    args = parser.parse_args(argv)
    for task in args.tasks:
        generate(
            task,
            seed=args.seed,
            root=args.root,
            max_sac_steps=args.max_sac_steps,
            medium_transitions=args.medium_transitions,
        )


if __name__ == "__main__":  # pragma: no cover
    main()
