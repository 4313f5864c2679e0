"""Point-process numerics at the edges: zero-length windows, single-event sequences and
times near 1e300 give finite results or named errors, never a NaN or -inf returned as a
score or a forecast."""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pytest
from estimator_inputs import TINY
from estimator_inputs import events as _events

from aaren_ts.estimators import AarenPointProcess, HawkesPointProcess


@pytest.fixture(scope="module")
def fitted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "aaren": AarenPointProcess(**TINY).fit(_events()),
            "hawkes": HawkesPointProcess(decay=1.0).fit(_events()),
        }


# beyond float32 (what the network reads): from 0 to the first event, or to t_end
OVERFLOWING = {
    "times-near-1e300": [([1e300, 1.5e300], [0, 1])],
    "window-to-1e300": [([1.0, 2.0], [0, 1], 0.0, 1e300)],
    "times-near-float64-max": [([1.7e308], [0])],
}
EDGES = {
    "single-event": [([1.0], [0])],
    "single-event-window": [([1.0], [1], 0.0, 1.0)],
    "zero-length-window": [([5.0], [0], 5.0, 5.0)],
    "ties": [([1.0, 1.0, 1.0], [0, 1, 0])],
    "window-to-1e30": [([1.0, 2.0], [0, 1], 0.0, 1e30)],  # long, but within float32
}
METHODS = ["score", "score_samples", "predict", "predict_proba", "fit"]


def _call(model, method, data):
    model = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(model, method)(data)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("data", OVERFLOWING.values(), ids=OVERFLOWING.keys())
def test_aaren_refuses_gaps_beyond_float32_by_name(fitted, method, data):
    with pytest.raises(ValueError, match=r"sequence 0: a gap of .* beyond what the network reads"):
        _call(fitted["aaren"], method, data)


@pytest.mark.parametrize("method", ["score", "score_samples", "predict", "predict_proba"])
@pytest.mark.parametrize("which", ["aaren", "hawkes"])
@pytest.mark.parametrize("data", EDGES.values(), ids=EDGES.keys())
def test_edge_sequences_score_and_forecast_finitely(fitted, which, method, data):
    out = _call(fitted[which], method, data)
    values = np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in np.atleast_1d(out)])
    assert values.size and np.isfinite(values).all()


@pytest.mark.parametrize("data", OVERFLOWING.values(), ids=OVERFLOWING.keys())
def test_hawkes_is_finite_on_huge_times(fitted, data):
    """The Hawkes anchor computes in float64 from gaps: huge times stay finite."""
    assert np.isfinite(_call(fitted["hawkes"], "score", data))


def test_hawkes_fit_on_windows_of_zero_length_is_a_named_error():
    model = HawkesPointProcess(decay=1.0)
    with pytest.raises(ValueError, match=r"windows add up to 0.0 time units"):
        model.fit([([5.0], [0], 5.0, 5.0), ([2.0], [1], 2.0, 2.0)])
    assert not getattr(model, "_is_fitted", False)


def test_single_event_sequences_train(fitted):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AarenPointProcess(**TINY).fit([([1.0], [0]), ([0.5], [1]), ([2.0], [0])])
    assert np.isfinite(model.score([([1.0], [0])]))


def test_a_failed_call_leaves_the_fitted_model_unchanged(fitted):
    model = copy.deepcopy(fitted["aaren"])
    before = pickle.dumps(model)
    for method in ("fit", "update"):
        with pytest.raises(ValueError, match=r"beyond what the network reads"):
            getattr(model, method)(OVERFLOWING["times-near-1e300"])
    assert pickle.dumps(model) == before


def test_streams_refuse_overflowing_gaps_and_keep_their_state(fitted):
    stream = fitted["aaren"].start_stream(0.0).update([1.0, 2.0], [0, 1])
    ll, forecast = stream.log_likelihood(), stream.predict()
    with pytest.raises(ValueError, match=r"beyond what the network reads"):
        stream.update([1e300], [0])
    with pytest.raises(ValueError, match=r"beyond what the network reads"):
        stream.log_likelihood(t_end=1e300)
    assert stream.log_likelihood() == ll and stream.predict() == forecast


def test_a_non_finite_score_is_an_error_not_a_result(fitted, monkeypatch):
    """Whatever the cause, a log-likelihood that comes out -inf or NaN is refused by name
    (here the terms are made -inf directly: no finite input reaches it today)."""
    model = copy.deepcopy(fitted["aaren"])
    terms = model._terms

    def underflowing(seqs):
        return [(t, m, -np.inf) for t, m, _ in terms(seqs)]

    monkeypatch.setattr(model, "_terms", underflowing)
    for method in ("score", "score_samples", "score_events"):
        with pytest.raises(ValueError, match=r"the log-likelihood of sequence\(s\) \[0\] is not"):
            getattr(model, method)([([1.0, 2.0], [0, 1])])
