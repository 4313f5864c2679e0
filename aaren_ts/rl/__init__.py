"""Offline reinforcement learning with return-conditioned sequence policies (the paper's
fourth setting): ``DecisionAaren`` in the Decision Transformer layout, and D4RL-style data
sets generated locally (``aaren_ts.rl.datasets``, which needs the ``rl`` extra).

Only torch and numpy are needed to import this package and fit a policy; Gymnasium and
stable-baselines3 only to make data sets and to evaluate in a simulator.
"""

from ._stream import EpisodeStream
from .policy import DecisionAaren

__all__ = ["DecisionAaren", "EpisodeStream"]
