"""Concurrency: prediction methods called from 8 threads at once on one fitted estimator give
exactly the serial results, with different arguments in flight at the same time (so that
shared state, e.g. a stored forecasting horizon or module flags, would show up)."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from aaren_ts.datasets import make_hawkes
from aaren_ts.estimators import (
    AarenClassifier,
    AarenForecaster,
    AarenPointProcess,
    AarenRegressor,
)

TINY = {"d_model": 8, "n_layers": 1, "n_heads": 2, "max_epochs": 1, "random_state": 0}
THREADS, CALLS_PER_THREAD = 8, 6


def _as_array(out) -> np.ndarray:
    if isinstance(out, tuple):  # the point process's (times, marks)
        return np.concatenate([np.asarray(o, dtype=np.float64) for o in out])
    if isinstance(out, (pd.DataFrame, pd.Series)):
        return out.to_numpy(dtype=np.float64)
    return np.asarray(out, dtype=np.float64)


def _panel(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((6, 2, 10 + seed))


def _calls():
    """name -> (fitted estimator, list of argument-free calls with different arguments)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = np.arange(60.0)
        y = pd.DataFrame({"a": np.sin(t / 5), "b": np.cos(t / 3)})
        fc = AarenForecaster(max_horizon=4, validation_size=0.2, **TINY).fit(y)
        X = _panel(0)
        clf = AarenClassifier(**TINY).fit(X, np.array(["a", "b", "c"] * 2))
        reg = AarenRegressor(**TINY).fit(X, np.arange(6.0))
        events = make_hawkes(n_sequences=6, t_end=15.0, random_state=0)
        tpp = AarenPointProcess(**TINY).fit(events)
    return {
        "forecaster": [
            lambda: fc.predict(fh=[1, 2, 3, 4]),
            lambda: fc.predict(fh=[2]),
            lambda: fc.predict_interval(fh=[1, 3], coverage=0.8),
            lambda: fc.predict_interval(fh=[4], coverage=[0.5, 0.9]),
            lambda: fc.predict_quantiles(fh=[1, 2], alpha=[0.1, 0.5]),
        ],
        "classifier": [lambda s=s: clf.predict_proba(_panel(s)) for s in range(4)],
        "regressor": [lambda s=s: reg.predict(_panel(s)) for s in range(4)],
        "point_process": [
            lambda: tpp.predict(events),
            lambda: tpp.predict(events[:2]),
            lambda: tpp.predict_proba(events[3:]),
            lambda: tpp.score_samples(events),
        ],
    }


@pytest.fixture(scope="module")
def calls():
    return _calls()


@pytest.mark.parametrize("name", ["forecaster", "classifier", "regressor", "point_process"])
def test_threaded_predictions_equal_serial_ones(calls, name):
    jobs = calls[name]
    serial = [_as_array(job()) for job in jobs]

    def worker(thread: int) -> list[tuple[int, np.ndarray]]:
        out = []
        for k in range(CALLS_PER_THREAD):
            i = (thread + k) % len(jobs)  # every call kind in flight in several threads
            out.append((i, _as_array(jobs[i]())))
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            results = [r for rs in pool.map(worker, range(THREADS)) for r in rs]
    assert len(results) == THREADS * CALLS_PER_THREAD
    for i, got in results:
        np.testing.assert_array_equal(got, serial[i])
    # serial calls after the threaded ones still agree (nothing was left changed)
    for job, expected in zip(jobs, serial, strict=True):
        np.testing.assert_array_equal(_as_array(job()), expected)
