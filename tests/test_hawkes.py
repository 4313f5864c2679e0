"""HawkesPointProcess: parameter recovery on simulated data, its log-likelihood against a
direct computation, predictions against simulation, and the shared conventions."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from scipy import integrate

from aaren_ts.datasets import make_hawkes
from aaren_ts.estimators import HawkesPointProcess

TRUTH = {"baseline": [0.3, 0.5], "adjacency": [[0.4, 0.2], [0.1, 0.3]], "decay": 2.0}


@pytest.fixture(scope="module")
def data():
    return make_hawkes(n_sequences=30, t_end=200.0, random_state=0, **TRUTH)


@pytest.fixture(scope="module")
def fitted(data):
    return HawkesPointProcess().fit(data)


def _intensity(t, s, mu, alpha, beta):
    """lambda_k(t) summed directly over the events before t."""
    past = s.times < t
    kern = beta * np.exp(-beta * (t - s.times[past]))
    return mu + alpha[:, s.marks[past]] @ kern


def _direct_loglik(s, mu, alpha, beta):
    """sum log lambda_{k_i}(t_i) - integral of sum_k lambda_k over [t_start, t_end], the
    integral by quadrature between consecutive events."""
    logs = sum(
        np.log(_intensity(t, s, mu, alpha, beta)[k]) for t, k in zip(s.times, s.marks, strict=True)
    )
    edges = np.concatenate([[s.t_start], s.times, [s.t_end]])
    integral = sum(
        integrate.quad(lambda t: _intensity(t, s, mu, alpha, beta).sum(), a, b)[0]
        for a, b in itertools.pairwise(edges)
        if b > a
    )
    return logs - integral


def test_recovers_the_simulated_parameters(fitted):
    np.testing.assert_allclose(fitted.baseline_, TRUTH["baseline"], atol=0.08)
    np.testing.assert_allclose(fitted.adjacency_, TRUTH["adjacency"], atol=0.1)
    assert fitted.decay_ == pytest.approx(TRUTH["decay"], rel=0.25)


def test_score_is_the_exponential_hawkes_log_likelihood(fitted, data):
    mu, alpha, beta = fitted.baseline_, fitted.adjacency_, fitted.decay_
    seqs = [s._replace(times=s.times[:40], marks=s.marks[:40]) for s in data[:3]]
    direct = [_direct_loglik(s, mu, alpha, beta) for s in seqs]
    np.testing.assert_allclose(fitted.score_samples(seqs), direct, rtol=1e-7)
    assert fitted.score(seqs) == pytest.approx(sum(direct) / 120)
    assert fitted.score(seqs, normalize="time") == pytest.approx(
        sum(direct) / sum(s.t_end - s.t_start for s in seqs)
    )
    # EasyTPP: events 2..N given the first, integral over [t_1, t_N]
    for s in seqs:
        window = s._replace(t_start=s.times[0], t_end=s.times[-1])
        first = np.log(_intensity(s.times[0], s, mu, alpha, beta)[s.marks[0]])
        easy = _direct_loglik(window, mu, alpha, beta) - first
        assert fitted.score_samples([s], convention="easytpp")[0] == pytest.approx(easy)


def test_true_parameters_score_near_the_fit(fitted, data):
    truth = HawkesPointProcess.from_params(**TRUTH)
    assert truth.score(data) <= fitted.score(data) + 1e-9  # the fit maximises it
    assert truth.score(data) > fitted.score(data) - 0.01


def test_predictions_match_simulation(fitted, data):
    history = data[0]._replace(t_end=data[0].times[-1])
    mean_time, _ = fitted.predict([history])
    probs = fitted.predict_proba([history])[0]
    assert probs.sum() == pytest.approx(1.0)
    runs = fitted.sample(2000, t_end=history.t_end + 15.0, history=history, random_state=1)
    first = np.array([s.times[0] for s in runs if len(s.times)])
    first_mark = np.array([s.marks[0] for s in runs if len(s.times)])
    assert len(first) == 2000  # no event in 15 time units: probability < e^-12
    se = first.std() / np.sqrt(len(first))
    assert abs(first.mean() - mean_time[0]) < 4 * se
    np.testing.assert_allclose(np.bincount(first_mark) / len(first_mark), probs, atol=0.035)


def test_every_prefix_predictions_and_bad_input(fitted, data):
    seq = data[1]
    times, marks = fitted.predict([seq], every_prefix=True)[0]
    assert times.shape == marks.shape == (len(seq.times) + 1,)
    assert np.all(times[1:] > seq.times)
    before = pickle.dumps(fitted)
    with pytest.raises(ValueError, match="outside the fitted range"):
        fitted.score([([0.5, 1.0], [0, 2])])
    with pytest.raises(ValueError, match="non-decreasing"):
        fitted.predict([([1.0, 0.5], [0, 1])])
    assert pickle.dumps(fitted) == before
    with pytest.raises(ValueError, match="not fitted"):
        HawkesPointProcess().score(data)
    assert HawkesPointProcess().clone().get_params() == HawkesPointProcess().get_params()


def test_save_is_atomic_and_checked_like_the_neural_estimators(fitted, data, tmp_path):
    from sktime.base import load

    import aaren_ts

    path = tmp_path / "hawkes"
    fitted.save(path)
    for loaded in (aaren_ts.load(tmp_path / "hawkes.zip"), load(str(path))):
        assert loaded.score(data) == fitted.score(data)
        np.testing.assert_array_equal(loaded.adjacency_, fitted.adjacency_)
    (tmp_path / "cut.zip").write_bytes((tmp_path / "hawkes.zip").read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cut\.zip.*truncated"):
        aaren_ts.load(tmp_path / "cut.zip")
