"""A panel's update reads every series that receives new rows in one batched network call
(full history, Aaren backbone: the backbone's state is batch-first), and its predict reads
every stored forecast in array operations. Both must equal the series read one at a time:
each series is updated alone (a batch of one) on a copy, and the forecasts, intervals and
stream states are compared; series with different numbers of new rows, exogenous data and
channel-independent layouts included."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from estimator_inputs import TINY, tensor_leaves

from aaren_ts.estimators import AarenForecaster
from aaren_ts.estimators._stream_net import batched_state, split_state

KEYS = ["a", "b", "c", "d", "e"]


def _panel(start: int, stops: dict[str, int], columns=("y",)) -> pd.DataFrame:
    parts = {}
    for i, key in enumerate(KEYS):
        if key not in stops or stops[key] <= start:
            continue
        t = np.arange(start, stops[key], dtype=np.float64)
        data = {c: np.sin(t / (3 + i + j)) * (1 + i) + 0.1 * i for j, c in enumerate(columns)}
        parts[key] = pd.DataFrame(data, index=pd.RangeIndex(start, stops[key]))
    return pd.concat(parts)


def _x(start: int, stop: int) -> pd.DataFrame:
    return pd.concat(
        {
            key: pd.DataFrame({"x": np.cos(np.arange(start, stop) / 5.0 + i)},
                              index=pd.RangeIndex(start, stop))
            for i, key in enumerate(KEYS)
        }
    )  # fmt: skip


CASES = {
    "plain": ({}, ("y",), False),
    "two_channels": ({}, ("y", "z"), False),
    "channel_independent": ({"channel_independent": True}, ("y", "z"), False),
    "exogenous": ({}, ("y",), True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_batched_update_equals_updating_each_series_alone(case):
    params, columns, with_x = CASES[case]
    model = AarenForecaster(max_horizon=4, calibration_rate=0.05, **params, **TINY)
    model.fit(_panel(0, dict.fromkeys(KEYS, 40), columns), X=_x(0, 40) if with_x else None)
    # unequal numbers of new rows: groups of 1, 3 and 6 rows
    stops = {"a": 41, "b": 43, "c": 41, "d": 46, "e": 43}
    new = _panel(40, stops, columns)
    x_new = _x(40, 46) if with_x else None
    together = copy.deepcopy(model).update(new, X=x_new, update_params=False)
    alone = copy.deepcopy(model)
    for key in KEYS:
        one = new.loc[[key]]
        alone.update(one, X=x_new.loc[[key]] if with_x else None, update_params=False)
    # a second tick reads on from the states the first one left
    nxt = pd.concat([_panel(stop, {key: stop + 1}, columns) for key, stop in stops.items()])
    together.update(nxt, X=_x(40, 60) if with_x else None, update_params=False)
    for key in KEYS:
        one = nxt.loc[[key]]
        alone.update(one, X=_x(40, 60).loc[[key]] if with_x else None, update_params=False)
    x_future = _x(41, 60) if with_x else None
    got = together.predict_interval(fh=[1, 2, 4], X=x_future, coverage=0.8)
    expected = alone.predict_interval(fh=[1, 2, 4], X=x_future, coverage=0.8)
    pd.testing.assert_frame_equal(got, expected, atol=1e-6, rtol=0)
    for key in [(k,) for k in KEYS]:
        for name in ("forecast", "centre", "scale"):
            np.testing.assert_allclose(
                np.asarray(together.streams_[key][name]),
                np.asarray(alone.streams_[key][name]),
                atol=1e-6,
                rtol=0,
            )
        assert together.streams_[key]["last"] == alone.streams_[key]["last"]
        for a, b in zip(tensor_leaves(together.streams_[key]["state"]),
                        tensor_leaves(alone.streams_[key]["state"]), strict=True):  # fmt: skip
            np.testing.assert_allclose(a.double(), b.double(), atol=1e-5, rtol=1e-5)
        # the interval records stay per series (a record pools only over its own series)
        np.testing.assert_allclose(
            together.streams_[key]["tracker"].shifts, alone.streams_[key]["tracker"].shifts,
            atol=1e-6, rtol=0,
        )  # fmt: skip


def test_batched_state_round_trips():
    model = AarenForecaster(max_horizon=2, **TINY).fit(_panel(0, dict.fromkeys(KEYS, 30)))
    states = [model.streams_[(k,)]["state"] for k in KEYS]
    rows = [int(s.recent.shape[0]) for s in states]
    back = split_state(batched_state(states), rows)
    for original, restored in zip(states, back, strict=True):
        flat_a, flat_b = tensor_leaves(original), tensor_leaves(restored)
        assert len(flat_a) == len(flat_b) > 2
        for a, b in zip(flat_a, flat_b, strict=True):
            assert torch.equal(a, b)
