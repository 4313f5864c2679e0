"""``n_threads``: how many torch threads an estimator's calls use, restored after each call."""

from __future__ import annotations

import multiprocessing
import sys
import types

import numpy as np
import pandas as pd
import pytest
import torch

from aaren_ts.datasets import make_hawkes
from aaren_ts.estimators import (
    AarenClassifier,
    AarenForecaster,
    AarenPointProcess,
    AarenRegressor,
    _panel_base,
    _threads,
)
from aaren_ts.estimators import forecaster as forecaster_module
from aaren_ts.estimators._threads import in_parallel_worker, resolve_threads, torch_threads


@pytest.fixture
def two_threads():
    """torch at 2 threads for the test (a user's own setting), restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def record_threads(monkeypatch, module, name):
    """Wrap ``module.name`` so that each call records torch's thread count inside it."""
    seen = []
    original = getattr(module, name)

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, recording)
    return seen


def test_automatic_count_is_one_for_small_networks_and_workers(monkeypatch):
    assert resolve_threads(None, 32) == 1
    assert resolve_threads(None, _threads.SMALL_WIDTH) == 1
    assert resolve_threads(None, _threads.SMALL_WIDTH * 2) is None  # torch's setting
    assert resolve_threads(-1, 8) is None
    assert resolve_threads(np.int64(3), 8) == 3
    monkeypatch.setattr(_threads, "in_parallel_worker", lambda: True)
    assert resolve_threads(None, 4096) == 1  # a worker shares the cores with the others


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_bad_count_names_the_parameter(bad):
    with pytest.raises(ValueError, match="n_threads"):
        resolve_threads(bad, 32)


class _Recorded(Exception):
    """Ends a fit once its thread count is recorded: running a fit on 3 threads beside the
    other test worker costs seconds of oversubscribed spinning and tests nothing more."""


def test_forecaster_fit_and_predict_use_the_count_and_restore_torchs(monkeypatch, two_threads):
    seen = record_threads(monkeypatch, forecaster_module, "train_network")
    y = pd.Series(np.sin(np.arange(80) / 4.0))
    f = AarenForecaster(max_epochs=1, d_model=8, n_heads=2, max_horizon=2, random_state=0)
    f.fit(y)  # one full fit at the default count
    assert seen == [1] and torch.get_num_threads() == 2

    def stop(*args, **kwargs):
        raise _Recorded

    monkeypatch.setattr(forecaster_module, "train_network", stop)
    inside = record_threads(monkeypatch, forecaster_module, "train_network")
    for n_threads in (-1, 3):  # torch's own setting, then an explicit count
        g = AarenForecaster(max_epochs=1, d_model=8, n_heads=2, max_horizon=2, n_threads=n_threads)
        with pytest.raises(_Recorded):
            g.fit(y)
        assert torch.get_num_threads() == 2  # restored, here after an error
    assert inside == [2, 3]
    # predict and update run under the fitted estimator's setting (the network records it)
    f.n_threads = 3
    steps = record_threads(monkeypatch, type(f.network_), "forward")
    f.update(pd.Series([0.5], index=[80]), update_params=False)
    f.predict(fh=[1, 2])
    assert steps and set(steps) == {3} and torch.get_num_threads() == 2


def test_panel_estimators_and_point_process_use_the_count(monkeypatch, two_threads):
    fits = record_threads(monkeypatch, _panel_base, "train_network")
    outputs = record_threads(monkeypatch, _panel_base, "predict_outputs")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 1, 10))
    for est, y in [
        (AarenClassifier(max_epochs=1, d_model=8, n_heads=2), np.array([0, 1] * 6)),
        (AarenRegressor(max_epochs=1, d_model=8, n_heads=2, n_threads=2), rng.normal(size=12)),
    ]:
        est.fit(X, y).predict(X)
        expected = 1 if est.n_threads is None else est.n_threads
        assert fits[-1] == expected and outputs[-1] == expected
        assert torch.get_num_threads() == 2
    tpp = AarenPointProcess(max_epochs=1, d_model=8, n_heads=2, random_state=0)
    events = make_hawkes(n_sequences=4, t_end=10, random_state=0)
    inside = record_threads(monkeypatch, tpp, "_train")
    tpp.fit(events)
    assert inside == [1] and torch.get_num_threads() == 2


def test_a_bad_count_fails_at_fit_and_leaves_the_estimator_as_it_was(two_threads):
    y = pd.Series(np.sin(np.arange(60) / 4.0))
    f = AarenForecaster(max_epochs=1, d_model=8, n_heads=2, max_horizon=2, random_state=0)
    before = f.fit(y).predict(fh=[1, 2])
    f.n_threads = 0  # set_params would reset the fitted state first; fit must not need to
    with pytest.raises(ValueError, match="n_threads"):
        f.fit(y)
    with pytest.raises(ValueError, match="n_threads"):
        f.predict(fh=[1, 2])
    f.n_threads = None
    pd.testing.assert_series_equal(f.predict(fh=[1, 2]), before)
    assert torch.get_num_threads() == 2


def test_torch_threads_restores_after_an_error(two_threads):
    with pytest.raises(RuntimeError), torch_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == 2


def _worker_flag(_):
    return in_parallel_worker()


def test_parallel_workers_are_recognised(monkeypatch):
    assert not in_parallel_worker()
    # a daemonic pool process (joblib's loky and multiprocessing pools are daemonic)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.map(_worker_flag, [0]) == [True]
    # a dask worker (threads inside this process, so no cluster start-up cost)
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=1, dashboard_address=":0") as client:
        assert client.submit(in_parallel_worker).result() is True
    assert not in_parallel_worker()
    # a ray worker, as ray's runtime context reports it (starting ray takes ~10 s)
    fake_ray = types.SimpleNamespace(
        WORKER_MODE=1,
        is_initialized=lambda: True,
        get_runtime_context=lambda: types.SimpleNamespace(worker=types.SimpleNamespace(mode=1)),
    )
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    assert in_parallel_worker()
    fake_ray.get_runtime_context = lambda: types.SimpleNamespace(
        worker=types.SimpleNamespace(mode=0)  # the driver
    )
    assert not in_parallel_worker()
