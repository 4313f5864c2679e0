"""Checking and normalising the trajectories ``DecisionAaren.fit`` takes.

Three layouts are accepted, each checked whole before any training starts:

- a list of trajectories, each a dict (or an object with attributes, as Minari's
  ``EpisodeData``) with ``observations (T, obs_dim)``, ``actions (T, act_dim)`` and
  ``rewards (T,)``; Minari's ``T + 1`` observations (the final one included) are accepted;
- a D4RL-style dict of flat arrays with ``terminals`` and optionally ``timeouts``: an episode
  ends where either is true (a last, unfinished episode is kept);
- a single trajectory dict (a list of one).

Bad input raises a ``ValueError`` / ``TypeError`` naming the trajectory and the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..estimators._values import FLOAT32_MAX, check_real_dtype

FIELDS = ("observations", "actions", "rewards")


@dataclass(frozen=True)
class Trajectory:
    """One episode as float32 arrays: ``observations (T, obs_dim)``, ``actions (T, act_dim)``,
    ``rewards (T,)``."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray

    def __len__(self) -> int:
        return len(self.rewards)


def _field(item: Any, name: str, where: str) -> Any:
    if isinstance(item, Mapping):
        if name not in item:
            raise ValueError(f"{where} has no {name!r} (it needs {', '.join(FIELDS)})")
        return item[name]
    if not hasattr(item, name):
        raise TypeError(
            f"{where} must be a dict (or an episode object) with {', '.join(FIELDS)}; "
            f"got {type(item).__name__}"
        )
    return getattr(item, name)


def as_array(value: Any, name: str, where: str, ndim: int) -> np.ndarray:
    """``value`` as a finite float32 array of ``ndim`` dimensions (1-D accepted as 1 column)."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{where}: {name} must be a numeric array, got {type(value).__name__}")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{where}: {name} must be a numeric array ({err})") from None
    if array.dtype == bool:  # as every estimator: 0/1 only where someone decided so
        check_real_dtype(array.dtype, f"{where}: {name}")
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{where}: {name} must be numeric, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise TypeError(f"{where}: {name} must be real, got complex values")
    if ndim == 2 and array.ndim == 1:
        array = array[:, None]
    if array.ndim != ndim:
        shape = "(T,)" if ndim == 1 else "(T, dim)"
        raise ValueError(f"{where}: {name} must have shape {shape}, got {array.shape}")
    # checked before the float32 cast, which turns 1e39 into inf: say which it was
    if not np.isfinite(array).all():
        raise ValueError(f"{where}: {name} contains NaN or infinite values")
    if array.size and float(np.abs(array).max()) > FLOAT32_MAX:
        raise ValueError(
            f"{where}: {name} holds values beyond float32's range (3.4e38), which the "
            "network computes in; rescale them"
        )
    return array.astype(np.float32)


def end_flags(value: Any, name: str, where: str, shape: tuple[int, ...]) -> np.ndarray:
    """``terminals`` / ``timeouts`` as booleans: booleans, or numbers that are 0 or 1 (0.5,
    NaN or text is no answer to "did the episode end here")."""
    flags = np.asarray(value)
    if flags.shape != shape:
        raise ValueError(f"{where}: {name} must have shape {shape}, got {flags.shape}")
    if flags.dtype == bool:
        return flags
    if flags.dtype == object or not np.issubdtype(flags.dtype, np.number):
        raise TypeError(f"{where}: {name} must be booleans or 0/1, got dtype {flags.dtype}")
    bad = ~np.isin(flags, (0, 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where}: {name} must be booleans or 0/1, got {flags[i]!r} at row {i}")
    return flags.astype(bool)


def _one(item: Any, where: str) -> Trajectory:
    obs = as_array(_field(item, "observations", where), "observations", where, 2)
    actions = as_array(_field(item, "actions", where), "actions", where, 2)
    rewards = as_array(_field(item, "rewards", where), "rewards", where, 1)
    length = len(rewards)
    if length == 0:
        raise ValueError(f"{where} is empty (0 steps)")
    if len(obs) == length + 1:  # Minari keeps the observation after the last step
        obs = obs[:-1]
    if len(obs) != length or len(actions) != length:
        raise ValueError(
            f"{where}: observations, actions and rewards must have one row per step; got "
            f"{len(obs)}, {len(actions)} and {length} rows"
        )
    if obs.shape[1] == 0 or actions.shape[1] == 0:
        raise ValueError(f"{where}: observations and actions need at least one column")
    return Trajectory(obs, actions, rewards)


def _split_flat(data: Mapping) -> list[Trajectory]:
    where = "the flat data set"
    rewards = as_array(_field(data, "rewards", where), "rewards", where, 1)
    ends = np.zeros(len(rewards), dtype=bool)
    for key in ("terminals", "timeouts"):
        if key in data:
            ends |= end_flags(data[key], key, where, rewards.shape)
    obs = as_array(_field(data, "observations", where), "observations", where, 2)
    actions = as_array(_field(data, "actions", where), "actions", where, 2)
    if not len(obs) == len(actions) == len(rewards):
        raise ValueError(
            f"{where}: observations, actions and rewards must have one row per step; got "
            f"{len(obs)}, {len(actions)} and {len(rewards)} rows"
        )
    stops = np.flatnonzero(ends) + 1
    if not len(stops) or stops[-1] != len(rewards):
        stops = np.append(stops, len(rewards))
    starts = np.concatenate([[0], stops[:-1]])
    return [
        _one(
            {"observations": obs[a:b], "actions": actions[a:b], "rewards": rewards[a:b]},
            f"episode {i} of the flat data set",
        )
        for i, (a, b) in enumerate(zip(starts, stops, strict=True))
    ]


def check_trajectories(data: Any) -> list[Trajectory]:
    """The trajectories in ``data`` (see the module docstring), checked and as float32."""
    if isinstance(data, Mapping):
        if "terminals" in data or "timeouts" in data:
            trajectories = _split_flat(data)
        else:
            trajectories = [_one(data, "the trajectory")]
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        if len(data) == 0:
            raise ValueError("trajectories is empty: fit needs at least one trajectory")
        trajectories = [_one(item, f"trajectory {i}") for i, item in enumerate(data)]
    elif isinstance(data, np.ndarray):
        raise TypeError(
            "trajectories must be a list of dicts with observations, actions and rewards, or "
            "a dict of flat arrays with terminals; got a bare array"
        )
    else:
        raise TypeError(
            "trajectories must be a list of dicts with observations, actions and rewards, or "
            f"a dict of flat arrays with terminals; got {type(data).__name__}"
        )
    obs_dim, act_dim = trajectories[0].observations.shape[1], trajectories[0].actions.shape[1]
    for i, traj in enumerate(trajectories):
        if traj.observations.shape[1] != obs_dim or traj.actions.shape[1] != act_dim:
            raise ValueError(
                f"trajectory {i} has {traj.observations.shape[1]} observation and "
                f"{traj.actions.shape[1]} action columns; trajectory 0 has {obs_dim} and {act_dim}"
            )
    return trajectories


def returns_to_go(rewards: np.ndarray, total: float | None = None) -> np.ndarray:
    """``total - cumsum(rewards)`` shifted by one step: what is still to be earned at each step
    (``total`` defaults to the trajectory's own return, the hindsight target)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    earned_before = np.concatenate([[0.0], np.cumsum(rewards)[:-1]])
    start = rewards.sum() if total is None else float(total)
    return (start - earned_before).astype(np.float32)


def scale_actions(actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Logged actions mapped from ``[low, high]`` onto the head's ``[-1, 1]`` (float32)."""
    return (2 * (actions - low) / (high - low) - 1).astype(np.float32)
