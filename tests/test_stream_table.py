"""The stream table: a full-history forecaster keeps every series' stream stacked, and a
plain update reads it in array operations (``_table_update``). It must equal the general
path (sktime's checks, one stream dict per series: forced here by disabling the table path)
for every index type, ragged ticks and channel layouts, and equal one pass over the whole
history; anything it does not handle must reach the general path and its named errors,
leaving the forecaster unchanged; and the table must save, load and copy like the dicts."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from estimator_inputs import TINY, tensor_leaves

from aaren_ts.estimators import AarenForecaster
from aaren_ts.estimators import forecaster as forecaster_module
from aaren_ts.estimators._stream_table import StreamTable

KEYS = ["a", "b", "c"]
N_FIT = 40


def _times(kind: str, start: int, stop: int) -> pd.Index:
    if kind == "int":
        return pd.Index(np.arange(start, stop, dtype=np.int64))
    if kind == "period":
        return pd.period_range("2020-01", periods=stop, freq="M")[start:]
    if kind == "hourly_tz":
        return pd.date_range("2024-03-30", periods=stop, freq="h", tz="Europe/Berlin")[start:]
    if kind == "daily_dst":  # a calendar offset across a DST change
        return pd.date_range("2024-03-01", periods=stop, freq="D", tz="Europe/Berlin")[start:]
    raise ValueError(kind)


def _series(i: int, start: int, stop: int, columns) -> np.ndarray:
    t = np.arange(start, stop, dtype=np.float64)
    return np.stack([np.sin(t / (3 + i + j)) * (1 + i) + 0.1 * i for j in range(len(columns))], 1)


def _panel(kind: str, stops: dict, start: int = 0, columns=("y",), levels: int = 1):
    parts = {}
    for i, key in enumerate(KEYS):
        stop = stops.get(key, start)
        if stop <= start:
            continue
        parts[key] = pd.DataFrame(
            _series(i, start, stop, columns), index=_times(kind, start, stop), columns=columns
        )
    frame = pd.concat(parts)
    if levels == 2:  # a hierarchy: (region, store, time)
        frame = pd.concat({"north": frame})
    return frame


def _general_path(monkeypatch) -> None:
    monkeypatch.setattr(forecaster_module, "plain_table_update", lambda *a, **k: None)


def _count_table_ticks(monkeypatch) -> list:
    taken = []
    real = forecaster_module.plain_table_update

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(forecaster_module, "plain_table_update", spy)
    return taken


def _assert_same_streams(a: AarenForecaster, b: AarenForecaster, atol: float = 1e-6) -> None:
    assert list(a.streams_) == list(b.streams_)
    for key in a.streams_:
        sa, sb = a.streams_[key], b.streams_[key]
        assert sa["last"] == sb["last"]
        for name in ("forecast", "centre", "scale"):
            np.testing.assert_allclose(np.asarray(sa[name]), np.asarray(sb[name]), atol=atol)
        for x, y in zip(tensor_leaves(sa["state"]), tensor_leaves(sb["state"]), strict=True):
            np.testing.assert_allclose(x.double(), y.double(), atol=1e-5, rtol=1e-5)
        ta, tb = sa["tracker"], sb["tracker"]
        assert int(ta.count) == int(tb.count)
        for x, y in zip((ta.forecasts, ta.centre, ta.scale, ta.shifts),
                        (tb.forecasts, tb.centre, tb.scale, tb.shifts), strict=True):  # fmt: skip
            np.testing.assert_allclose(x.double(), y.double(), atol=atol)
        assert sa["tail"][0].equals(sb["tail"][0])
        np.testing.assert_array_equal(sa["tail"][1], sb["tail"][1])


CASES = {
    "int": ("int", ("y",), {}, 1),
    "period": ("period", ("y",), {}, 1),
    "hourly_tz": ("hourly_tz", ("y",), {}, 1),
    "daily_dst": ("daily_dst", ("y",), {}, 1),
    "channel_independent": ("int", ("y", "z"), {"channel_independent": True}, 1),
    "two_channels": ("int", ("y", "z"), {}, 1),
    "hierarchy": ("period", ("y",), {}, 2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_table_ticks_equal_the_general_path(case, monkeypatch):
    kind, columns, params, levels = CASES[case]
    model = AarenForecaster(max_horizon=4, calibration_rate=0.05, **params, **TINY)
    model.fit(_panel(kind, dict.fromkeys(KEYS, N_FIT), columns=columns, levels=levels))
    assert isinstance(model.streams_, StreamTable)
    # ticks: all series one row; ragged (1, 3 and no rows); a series behind the others
    ticks = [
        {"a": 41, "b": 41, "c": 41},
        {"a": 42, "b": 44},
        {"a": 43, "b": 45, "c": 42},
    ]
    fast, general = copy.deepcopy(model), copy.deepcopy(model)
    starts = dict.fromkeys(KEYS, N_FIT)
    frames = []
    for stops in ticks:
        parts = [_panel(kind, {k: stop}, start=starts[k], columns=columns, levels=levels)
                 for k, stop in stops.items() if stop > starts[k]]  # fmt: skip
        frames.append(pd.concat(parts))
        starts.update(stops)
    taken = _count_table_ticks(monkeypatch)
    for frame in frames:
        fast.update(frame, update_params=False)
    assert taken == [True] * len(frames)  # the table path read every tick
    _general_path(monkeypatch)
    for frame in frames:
        general.update(frame, update_params=False)
    _assert_same_streams(fast, general)
    assert fast.cutoff.equals(general.cutoff)
    pd.testing.assert_frame_equal(
        fast.predict_interval(fh=[1, 2, 4], coverage=0.8),
        general.predict_interval(fh=[1, 2, 4], coverage=0.8),
        atol=1e-6,
        rtol=0,
    )


def test_a_single_series_streamed_through_the_table_equals_one_pass(monkeypatch):
    y = pd.Series(_series(0, 0, 90, ("y",))[:, 0], index=pd.RangeIndex(90), name="y")
    streamed = AarenForecaster(max_horizon=6, **TINY).fit(y.iloc[:50])
    one_pass = copy.deepcopy(streamed)
    taken = _count_table_ticks(monkeypatch)
    for t in range(50, 90, 4):
        streamed.update(y.iloc[t : t + 4], update_params=False)
    assert all(taken) and len(taken) == 10
    # one pass: every row read from the empty state by the same network
    scaled = one_pass._scaled(y.to_frame(), one_pass.scaling_[None])
    read = one_pass._encode(scaled, None, None, y.index[-1])
    np.testing.assert_allclose(streamed.streams_[None]["forecast"], read["forecast"], atol=2e-5)
    np.testing.assert_allclose(streamed.streams_[None]["centre"], read["centre"], atol=1e-6)


def _fitted() -> AarenForecaster:
    model = AarenForecaster(max_horizon=3, **TINY)
    return model.fit(_panel("period", dict.fromkeys(KEYS, N_FIT)))


@pytest.mark.parametrize(
    "frame, error, pattern",
    [
        (lambda: _panel("period", {"a": 42}, start=N_FIT + 1), ValueError, "continue the series"),
        (
            lambda: _panel("period", {"a": 41}, start=N_FIT).rename(index={"a": "zz"}, level=0),
            ValueError,
            "not seen in fit",
        ),
        (lambda: _panel("period", {"a": 40}, start=N_FIT - 1) + 1.0, ValueError, "differs"),
        (lambda: _panel("int", {"a": 41}, start=N_FIT), TypeError, "PeriodIndex"),
    ],
    ids=["gap", "unknown_series", "resent_row_differs", "other_index_type"],
)
def test_what_the_table_path_does_not_take_gets_the_general_named_error(frame, error, pattern):
    model = _fitted()
    before = pickle.dumps(model)
    with pytest.raises(error, match=pattern):
        model.update(frame(), update_params=False)
    assert pickle.dumps(model) == before


def test_resent_rows_go_through_the_general_path_and_the_table_comes_back(monkeypatch):
    model = _fitted()
    taken = _count_table_ticks(monkeypatch)
    again = _panel("period", dict.fromkeys(KEYS, N_FIT + 2), start=N_FIT - 3)  # sktime's way
    model.update(again, update_params=False)
    assert taken == [False]
    assert isinstance(model.streams_, StreamTable)
    assert [model.streams_[(k,)]["last"] for k in KEYS] == [_times("period", 0, 42)[-1]] * 3
    model.update(_panel("period", dict.fromkeys(KEYS, N_FIT + 3), start=N_FIT + 2),
                 update_params=False)  # fmt: skip
    assert taken == [False, True]


def test_a_table_saves_loads_and_copies(tmp_path):
    model = _fitted()
    tick = _panel("period", dict.fromkeys(KEYS, N_FIT + 1), start=N_FIT)
    expected = copy.deepcopy(model).update(tick, update_params=False).predict(fh=[1, 2, 3])
    model.save(tmp_path / "model")
    loaded = AarenForecaster.load_from_path(tmp_path / "model.zip")
    assert isinstance(loaded.streams_, StreamTable)
    for other in (loaded, copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        got = other.update(tick, update_params=False).predict(fh=[1, 2, 3])
        pd.testing.assert_frame_equal(got, expected, atol=0, rtol=0)


def test_the_table_view_round_trips():
    model = _fitted()
    table = model.streams_
    again = StreamTable.from_streams(
        {k: table[k] for k in table}, table.clock, model.scaling_, model.constant_columns_
    )
    for name in ("counts", "centre", "scale", "last", "tail", "tail_length", "mean", "std"):
        np.testing.assert_array_equal(getattr(again, name), getattr(table, name))
    assert torch.equal(again.forecast, table.forecast)
    for a, b in zip(tensor_leaves(again.state), tensor_leaves(table.state), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(again.tracker[:3], table.tracker[:3], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("levels", [1, 2])
def test_a_panel_forecast_index_is_the_one_from_arrays_builds(levels):
    """The table's forecast index reuses the series levels factorised once; it must be the
    index ``pd.MultiIndex.from_arrays`` gives for (series key..., time), level for level."""
    model = AarenForecaster(max_horizon=3, **TINY)
    model.fit(_panel("hourly_tz", dict.fromkeys(KEYS, N_FIT), levels=levels))
    got = model.predict(fh=[1, 2, 3]).index
    labels = _times("hourly_tz", N_FIT, N_FIT + 3)
    keys = [k for k in model.streams_ for _ in range(3)]
    arrays = [np.array(level, dtype=object) for level in zip(*keys, strict=True)]
    expected = pd.MultiIndex.from_arrays([*arrays, labels[np.tile(np.arange(3), len(KEYS))]])
    pd.testing.assert_index_equal(got, expected, exact=True)
    for i in range(got.nlevels):
        pd.testing.assert_index_equal(got.levels[i], expected.levels[i], exact=True)
        assert got.levels[i].dtype == expected.levels[i].dtype
        assert getattr(got.levels[i], "freq", None) == getattr(expected.levels[i], "freq", None)
    first = got[: len(labels)].droplevel(list(range(got.nlevels - 1)))
    assert first.freq == expected[: len(labels)].droplevel(list(range(got.nlevels - 1))).freq


def test_a_ragged_panel_streamed_through_the_table_equals_one_pass_per_series(monkeypatch):
    full = _panel("int", {"a": 70, "b": 64, "c": 58})
    model = AarenForecaster(max_horizon=4, **TINY).fit(_panel("int", dict.fromkeys(KEYS, N_FIT)))
    taken = _count_table_ticks(monkeypatch)
    starts = dict.fromkeys(KEYS, N_FIT)
    for step in (1, 3, 2, 5, 1, 30):  # unequal rows per series, series ending early
        stops = {k: min(starts[k] + step * (i + 1), len(full.loc[k])) for i, k in enumerate(KEYS)}
        parts = [full.loc[[k]].iloc[starts[k] : stops[k]] for k in KEYS if stops[k] > starts[k]]
        if parts:
            model.update(pd.concat(parts), update_params=False)
        starts = stops
    assert taken and all(taken)
    for k in KEYS:
        y = full.loc[k]
        scaled = model._scaled(y, model.scaling_[(k,)])
        read = model._encode(scaled, None, None, y.index[-1])
        stream = model.streams_[(k,)]
        assert stream["last"] == y.index[-1]
        np.testing.assert_allclose(stream["forecast"], read["forecast"], atol=2e-5)
        np.testing.assert_allclose(stream["scale"], read["scale"], atol=1e-6)
