"""Running a fitted policy in Gymnasium's simulator (needs the ``rl`` extra).

``evaluate_policy`` plays ``episodes`` episodes side by side (one ``EpisodeStream`` with
``n_envs=episodes``), each environment seeded, and returns their returns. An episode that
ends keeps its row in the batch (fed its last observation, its rewards ignored) until all end.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .datasets import TASKS, _require_rl, make_env


def evaluate_policy(
    policy: Any,
    task: str,
    target_return: float,
    episodes: int = 10,
    seed: int = 0,
    max_steps: int | None = None,
) -> np.ndarray:
    """Returns of ``episodes`` episodes of ``policy`` on ``task`` (a key of ``TASKS`` or a
    Gymnasium id), conditioned on ``target_return``; environment ``i`` is reset with
    ``seed + i``."""
    _require_rl()
    env_id = TASKS.get(task, task)
    envs = [make_env(env_id) for _ in range(episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    low, high = envs[0].action_space.low, envs[0].action_space.high
    stream = policy.start_episode(target_return, n_envs=episodes)
    returns = np.zeros(episodes)
    running = np.ones(episodes, dtype=bool)
    steps = 0
    while running.any() and (max_steps is None or steps < max_steps):
        actions = np.clip(stream.act(obs), low, high)
        rewards = np.zeros(episodes)
        for i, env in enumerate(envs):
            if not running[i]:
                continue
            next_obs, reward, terminated, truncated, _ = env.step(actions[i])
            rewards[i] = reward
            obs[i] = next_obs
            if terminated or truncated:
                running[i] = False
        returns += rewards
        stream.observe(rewards)
        steps += 1
    for env in envs:
        env.close()
    return returns
