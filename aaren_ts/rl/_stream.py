"""``EpisodeStream``: a fitted ``DecisionAaren`` acting in one episode (or several at once).

``act(observation)`` then ``observe(reward)``, once per environment step. With
``context_length=None`` the backbone continues from its explicit state: Aaren and the GRU in
O(1) time and memory per step, a Transformer with a KV cache that grows. With
``context_length=K`` each action re-reads the last ``K`` steps, as a Decision Transformer does.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..estimators._threads import estimator_threads
from ..nn import map_state
from ._trajectories import as_array, scale_actions

if TYPE_CHECKING:  # pragma: no cover
    from .policy import DecisionAaren


def target_returns(target_return: Any, batch: int) -> np.ndarray:
    """``target_return`` as ``(batch,)`` float64: one number for all episodes, or one each."""
    if np.ndim(target_return) == 0:
        if isinstance(target_return, (bool, np.bool_)) or not isinstance(
            target_return, (int, float, np.integer, np.floating)
        ):
            raise TypeError(f"target_return must be a number, got {type(target_return).__name__}")
        if not np.isfinite(target_return):
            raise ValueError(f"target_return must be finite, got {target_return}")
        return np.full(batch, float(target_return))
    target = as_array(target_return, "target_return", "start_episode", 1)
    if target.shape != (batch,):
        raise ValueError(
            f"target_return must be a number or have shape ({batch},), got {target.shape}"
        )
    return target.astype(np.float64)


class EpisodeStream:
    """Acts for a fitted policy; made by ``DecisionAaren.start_episode``.

    Attributes
    ----------
    steps : int
        Actions taken so far.
    returns_to_go : ndarray
        What is still to earn (the target minus the rewards observed).
    """

    def __init__(self, policy: DecisionAaren, target_return: Any, n_envs: int | None) -> None:
        if n_envs is not None and (
            isinstance(n_envs, bool) or not isinstance(n_envs, (int, np.integer)) or n_envs < 1
        ):
            raise ValueError(f"n_envs must be None or a positive int, got {n_envs!r}")
        self._policy = policy
        self._batched = n_envs is not None
        self._n = int(n_envs) if n_envs is not None else 1
        self.returns_to_go = target_returns(target_return, self._n)
        self.steps = 0
        self._net = policy.network_
        self._device = policy._device
        self._state = None
        self._pending: torch.Tensor | None = None  # the action taken, fed with the next act
        self._awaiting_reward = False
        k = policy.context_length
        self._window = None if k is None else deque(maxlen=k)  # (rtg, obs, action) per step

    def _as_rows(self, value: Any, what: str, width: int) -> np.ndarray:
        array = as_array(value, what, "EpisodeStream", 2 if self._batched else 1)
        if not self._batched:
            array = array[None]
        if array.shape != (self._n, width):
            want = f"({self._n}, {width})" if self._batched else f"({width},)"
            raise ValueError(f"{what} must have shape {want}, got {np.shape(value)}")
        return array

    def act(self, observation: Any) -> np.ndarray:
        """The action for ``observation`` (``(obs_dim,)``, or ``(n_envs, obs_dim)``)."""
        if self._awaiting_reward:
            raise RuntimeError(
                "call observe(reward) after each act(observation), before the next act"
            )
        policy = self._policy
        obs = self._as_rows(observation, "observation", len(policy.obs_mean_))
        obs = (obs - policy.obs_mean_) / policy.obs_std_
        rtg = (self.returns_to_go / policy.return_scale_).astype(np.float32)
        state = entry = None
        with estimator_threads(policy), torch.inference_mode():
            obs_t = torch.as_tensor(obs, device=self._device)
            rtg_t = torch.as_tensor(rtg, device=self._device)
            if self._window is None:
                step = torch.full((self._n,), self.steps, device=self._device)
                tokens = self._net.tokens_for_step(rtg_t, obs_t, step, self._pending)
                scaled, state = self._net.continue_from(tokens, self._state)
            else:
                scaled, entry = self._act_in_window(rtg_t, obs_t)
        # checked (an overflow inside the network names itself) before the stream moves on
        action = policy._unscale(scaled)
        if entry is None:
            self._state = state
        else:
            self._window.append(entry)
        self._pending = scaled
        self._awaiting_reward = True
        return action if self._batched else action[0]

    def _act_in_window(
        self, rtg: torch.Tensor, obs: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The action from the last ``context_length`` steps and this one, and this step's
        window entry (appended by ``act`` once the action is known to be finite)."""
        width = len(self._policy.action_low_)  # a_t is unknown yet; observe() sets it
        entry = [rtg, obs, torch.zeros(self._n, width, device=self._device)]
        window = [*self._window, entry][-self._window.maxlen :]
        k = len(window)
        rtgs = torch.stack([w[0] for w in window], 1)
        observations = torch.stack([w[1] for w in window], 1)
        actions = torch.stack([w[2] for w in window], 1)
        times = torch.arange(self.steps - k + 1, self.steps + 1, device=self._device)
        pred, _ = self._net(rtgs, observations, actions, times[None].expand(self._n, -1))
        return pred[:, -1], entry

    def observe(self, reward: Any, action: Any = None) -> None:
        """Record the ``reward`` of the last action (a number, or ``(n_envs,)``).

        ``action``: the action actually taken, when it differs from the one ``act`` returned
        (exploration noise, clipping, a replayed log); by default the returned one.
        """
        if not self._awaiting_reward:
            raise RuntimeError("observe(reward) follows act(observation); call act first")
        reward = as_array(np.atleast_1d(reward) if not self._batched else reward,
                          "reward", "EpisodeStream", 1)  # fmt: skip
        if reward.shape != (self._n,):
            want = f"({self._n},)" if self._batched else "a number"
            raise ValueError(f"reward must be {want}, got shape {np.shape(reward)}")
        if action is not None:
            policy = self._policy
            taken = self._as_rows(action, "action", len(policy.action_low_))
            scaled = scale_actions(taken, policy.action_low_, policy.action_high_)
            self._pending = torch.as_tensor(scaled, device=self._device)
        if self._window is not None:
            self._window[-1][2] = self._pending
        self.returns_to_go = self.returns_to_go - reward
        self.steps += 1
        self._awaiting_reward = False

    @property
    def state_nbytes(self) -> int:
        """Bytes held for the history: the backbone state, or the window's tensors."""
        total = 0

        def count(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        if self._window is not None:
            for entry in self._window:
                for t in entry:
                    count(t)
        elif self._state is not None:
            map_state(count, self._state)
        return total
