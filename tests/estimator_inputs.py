"""Small valid inputs for the four estimators, shared by the reliability tests (bad input,
atomicity): a cheap configuration, sine frames with a range index, a random panel, labels
and targets for it, a short simulated two-mark Hawkes panel of events; and the tensors of a
nested stream state, to compare states leaf by leaf."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from aaren_ts.datasets import make_hawkes

# one epoch of the smallest network: these tests are about checks and state, not accuracy
TINY = {"d_model": 8, "n_layers": 1, "n_heads": 2, "max_epochs": 1, "random_state": 0}

LABELS = np.array(["a", "b"] * 4)  # for panel(): 8 instances
TARGETS = np.linspace(0.0, 1.0, 8)


def y_frame(n: int = 40, start: int = 0, columns=("a",)) -> pd.DataFrame:
    """Sines of different periods, one per column, at rows ``start .. start + n``."""
    t = np.arange(start, start + n, dtype=np.float64)
    data = {c: np.sin(t / (3 + i)) for i, c in enumerate(columns)}
    return pd.DataFrame(data, index=pd.RangeIndex(start, start + n))


def x_frame(n: int = 40, start: int = 0) -> pd.DataFrame:
    """One exogenous column aligned with ``y_frame(n, start)``."""
    index = pd.RangeIndex(start, start + n)
    return pd.DataFrame({"x": np.cos(np.arange(start, start + n) / 5.0)}, index=index)


def panel(n: int = 8, channels: int = 2, length: int = 12, bad=None) -> np.ndarray:
    """A numpy3D panel of standard normals; ``bad`` (if given) replaces one value."""
    X = np.random.default_rng(0).standard_normal((n, channels, length))
    if bad is not None:
        X[0, 0, 3] = bad
    return X


def events():
    """Four event sequences of a two-mark Hawkes process on [0, 20]."""
    return make_hawkes(n_sequences=4, t_end=20.0, baseline=(0.3, 0.3),
                       adjacency=((0.3, 0.1), (0.1, 0.3)), random_state=0)  # fmt: skip


def tensor_leaves(state) -> list[torch.Tensor]:
    """The tensors of a (nested tuple / NamedTuple) stream state, in order."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, (tuple, list)):
        return [leaf for part in state for leaf in tensor_leaves(part)]
    return []
