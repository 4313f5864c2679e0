"""Each training objective is the documented one: the loss a fit reports for its first batch
(taken at the initial weights, one batch per epoch, a learning rate too small to move the
weights measurably) equals the documented quantity computed independently from the fitted
estimator's public outputs.

- panel estimators: the loss at each series' own last step (cross-entropy of
  ``predict_proba``, squared error of ``predict``), with series of different lengths so
  that reading any other step shows;
- point process: the negative log-likelihood per event of the class Notes, survival term
  included (``score``), which is not what the events' terms alone give.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from estimator_inputs import events as _events

from aaren_ts.estimators import AarenClassifier, AarenPointProcess, AarenRegressor

# initial weights, no dropout or decay, one batch per epoch
FROZEN = {
    "d_model": 8,
    "n_layers": 1,
    "n_heads": 2,
    "max_epochs": 1,
    "lr": 1e-12,
    "random_state": 0,
}


def _ragged_panel(n: int = 8) -> pd.DataFrame:
    """Series of lengths 6..13 with a trend, so that every step's output differs."""
    rng = np.random.default_rng(1)
    frames = []
    for i in range(n):
        length = 6 + i
        t = np.arange(length, dtype=float)
        values = np.sin(t / (2 + i)) + 0.1 * t * (i % 3) + 0.05 * rng.standard_normal(length)
        index = pd.MultiIndex.from_product([[i], range(length)], names=["instance", "time"])
        frames.append(pd.DataFrame({"x": values}, index=index))
    return pd.concat(frames)


def _fit(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.fit(X, y)


def test_classifier_trains_on_each_series_last_step():
    X, y = _ragged_panel(), np.array(["a", "b", "c", "a", "b", "c", "a", "b"])
    # one network: its loss against its own probabilities (an ensemble averages several)
    clf = AarenClassifier(dropout=0.0, weight_decay=0.0, batch_size=64, n_networks=1, **FROZEN)
    clf = _fit(clf, X, y)
    proba = clf.predict_proba(X)
    rows = np.searchsorted(clf.classes_, y)
    expected = -np.mean(np.log(proba[np.arange(len(y)), rows]))
    assert clf.loss_history_[0] == pytest.approx(expected, rel=1e-5)


def test_regressor_trains_on_each_series_last_step():
    X, y = _ragged_panel(), np.linspace(-1.0, 2.0, 8)
    reg = _fit(AarenRegressor(dropout=0.0, weight_decay=0.0, batch_size=64, **FROZEN), X, y)
    # the regressor standardises its target: the loss is in those units
    pred = reg.predict(X)
    scale = np.std(y) if np.std(y) > 0 else 1.0
    expected = np.mean(((pred - y) / scale) ** 2)
    assert reg.loss_history_[0] == pytest.approx(expected, rel=1e-4)


def test_point_process_trains_on_the_full_likelihood_with_survival():
    seqs = _events()
    tpp = AarenPointProcess(batch_size=64, validation_size=0.0, **FROZEN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tpp.fit(seqs)
    # the documented objective: minus the mean log-likelihood per event, survival included
    assert tpp.loss_history_[0] == pytest.approx(-tpp.score(seqs), rel=1e-5)
    # and the survival term matters: without it the value is measurably different
    terms = tpp.score_events(seqs)
    events_only = -sum(t.sum() + m.sum() for t, m, _ in terms) / sum(len(t) for t, _, _ in terms)
    assert abs(events_only - tpp.loss_history_[0]) > 1e-3
