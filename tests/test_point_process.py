"""AarenPointProcess: the likelihood against numerical integration, sampling against the
closed-form distribution, padding, streaming and the input formats against one parallel
pass, learning a known Hawkes process, bad input and skbase conventions."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import integrate, optimize
from skbase.base import BaseObject

from aaren_ts.datasets import as_event_sequences, make_hawkes
from aaren_ts.estimators import AarenPointProcess, HawkesPointProcess
from aaren_ts.estimators._tpp_net import Decoded

SMALL = {"d_model": 8, "n_layers": 1, "n_heads": 2, "n_components": 3, "random_state": 0}


@pytest.fixture(scope="module")
def data():
    return make_hawkes(
        n_sequences=12,
        t_end=40.0,
        baseline=[0.3, 0.2],
        adjacency=[[0.3, 0.2], [0.2, 0.3]],
        decay=1.5,
        random_state=3,
    )


@pytest.fixture(scope="module")
def fitted(data):
    return AarenPointProcess(max_epochs=3, **SMALL).fit(data)


@pytest.fixture(scope="module", params=["aaren", "aaren-recency", "transformer", "gru"])
def fitted_backbone(request, data):
    backbone, _, recency = request.param.partition("-")
    model = AarenPointProcess(backbone=backbone, recency=bool(recency), max_epochs=1, **SMALL)
    return model.fit(data)


def _decoded(model, seq) -> Decoded:
    return model._decoded([seq])[0]


def test_density_integrates_to_one_and_survival_is_its_tail(fitted, data):
    dec = _decoded(fitted, data[0])
    for row in (0, 5):
        d = Decoded(*(p[row] for p in dec))

        def pdf(u, d=d):  # density of tau at e^u, times e^u (integrating over log tau)
            t = torch.tensor(np.exp(u), dtype=torch.float64)
            return float(d.log_density(t).exp()) * np.exp(u)

        total, _ = integrate.quad(pdf, -40, 40, limit=400)
        assert total == pytest.approx(1.0, abs=1e-6)
        for tau in (0.05, 0.7, 3.0):
            head, _ = integrate.quad(pdf, -40, np.log(tau), limit=400)
            surv = float(d.log_survival(torch.tensor(tau, dtype=torch.float64)).exp())
            assert surv == pytest.approx(1.0 - head, abs=1e-6)
        mean, _ = integrate.quad(lambda u, d=d: pdf(u, d) * np.exp(u), -40, 40, limit=400)
        assert float(d.mean()) == pytest.approx(mean, rel=1e-5)
        assert float(d.mark_log_probs.exp().sum()) == pytest.approx(1.0, abs=1e-6)
        # the joint over (tau, mark) sums over the marks to the marginal density
        tau = torch.tensor([0.3, 2.0])
        joint = [sum(d.event_log_likelihood(tau, torch.tensor([k, k]))) for k in range(2)]
        torch.testing.assert_close(torch.logsumexp(torch.stack(joint), 0), d.log_density(tau))


def _log_tau_density(d: Decoded):
    """The density of ``log tau`` at ``u`` (numpy in, numpy out)."""

    def density(u):
        t = torch.as_tensor(np.exp(u), dtype=torch.float64)
        return d.log_density(t).exp().numpy() * np.exp(u)

    return density


def _wide_component(d: Decoded) -> Decoded:
    """``d`` with one component made very wide (scale 4 in log units): its uncapped mean
    ``exp(loc + 8)`` dominates the mixture's mean."""
    scale = d.scale.clone()
    scale[..., 0, 0] = 4.0
    return Decoded(d.log_weights, d.loc, scale, d.mark_log_probs)


@pytest.mark.parametrize("wide", [False, True], ids=["fitted", "wide_component"])
def test_point_summaries_match_numerical_integration(fitted, data, wide):
    """The capped mean, the median and the log-scale mode of the next gap against the
    density integrated and searched numerically."""
    dec = _decoded(fitted, data[0])
    cap = 4.0
    for row in (0, 5):
        d = Decoded(*(p[row] for p in dec))
        d = _wide_component(d) if wide else d
        density = _log_tau_density(d)

        def capped(u, density=density):
            return density(u) * np.minimum(np.exp(u), cap)

        expected, _ = integrate.quad(capped, -60, 60, limit=800, points=[np.log(cap)])
        assert float(d.capped_mean(cap)) == pytest.approx(expected, rel=1e-6)
        assert float(d.capped_mean(cap)) <= cap
        if wide:  # the uncapped mean is the wide component's, far beyond the data
            assert float(d.mean()) > 50 * float(d.capped_mean(cap))

        def below(q, density=density):
            return integrate.quad(density, -60, np.log(q), limit=800)[0] - 0.5

        median = optimize.brentq(below, 1e-12, 1e12, xtol=1e-14)
        assert float(d.quantile(0.5)) == pytest.approx(median, rel=1e-6)
        grid = np.linspace(-30.0, 30.0, 600_001)
        peak = np.exp(grid[np.argmax(density(grid))])
        assert float(d.mode()) == pytest.approx(peak, rel=1e-3)  # the grid's resolution


def test_predict_kinds_are_the_decoded_summaries(fitted, data):
    seqs = data[:3]
    gaps = [np.diff(s.times, prepend=s.t_start) for s in data]
    ends = [s.t_end - s.times[-1] for s in data]
    assert fitted.max_gap_ == pytest.approx(max(max(g.max() for g in gaps), max(ends)))
    decoded = fitted._decoded(seqs)
    summaries = {
        "mean": lambda d: d.capped_mean(fitted.max_gap_),
        "median": lambda d: d.quantile(0.5),
        "mode": lambda d: d.mode(),
    }
    for kind, summary in summaries.items():
        times, _ = fitted.predict(seqs, kind=kind)
        pairs = zip(seqs, decoded, strict=True)
        expected = [s.times[-1] + float(summary(d)[-1]) for s, d in pairs]
        np.testing.assert_allclose(times, expected, rtol=1e-12)
        prefix_times, _ = fitted.predict([seqs[0]], every_prefix=True, kind=kind)[0]
        stream = fitted.start_stream(seqs[0].t_start)
        stream.update(seqs[0].times, seqs[0].marks)
        assert stream.predict(kind=kind)[0] == pytest.approx(prefix_times[-1], rel=1e-5)
    assert (fitted.predict(seqs, kind="median")[0] > [s.times[-1] for s in seqs]).all()
    before = pickle.dumps(fitted)
    with pytest.raises(ValueError, match="kind must be one of"):
        fitted.predict(seqs, kind="average")
    with pytest.raises(ValueError, match="kind must be one of"):
        fitted.start_stream().predict(kind="average")
    assert pickle.dumps(fitted) == before


def test_sequence_log_likelihood_is_the_sum_of_its_terms(fitted, data):
    # window = event terms + survival of (t_N, t_end]; easytpp = events 2..N, no survival
    seq = data[1]
    ((time_ll, mark_ll, surv),) = fitted.score_events([seq])
    dec = _decoded(fitted, seq)
    last = Decoded(*(p[-1] for p in dec))
    gap = torch.tensor(seq.t_end - seq.times[-1], dtype=torch.float64)
    assert surv == pytest.approx(float(last.log_survival(gap)), abs=1e-5)
    assert surv < 0
    window = fitted.score_samples([seq])[0]
    assert window == pytest.approx(time_ll.sum() + mark_ll.sum() + surv, abs=1e-6)
    easy = fitted.score_samples([seq], convention="easytpp")[0]
    assert easy == pytest.approx(time_ll[1:].sum() + mark_ll[1:].sum(), abs=1e-6)
    # per event: total over every event; per time unit: total over the windows
    total = fitted.score_samples(data).sum()
    assert fitted.score(data) == pytest.approx(total / sum(len(s.times) for s in data))
    duration = sum(s.t_end - s.t_start for s in data)
    assert fitted.score(data, normalize="time") == pytest.approx(total / duration)
    n_easy = sum(len(s.times) - 1 for s in data)
    easy_total = fitted.score_samples(data, convention="easytpp").sum()
    assert fitted.score(data, convention="easytpp") == pytest.approx(easy_total / n_easy)


def test_intensity_integrates_to_the_compensator(fitted, data):
    seq = data[3]
    ((time_ll, mark_ll, surv),) = fitted.score_events([seq])
    # between two events, the integral of the total intensity is -log S(tau); at an event,
    # lambda_k = p(tau, k) / S(tau)
    for i in (1, 4):
        a, b = seq.times[i - 1], seq.times[i]
        total, _ = integrate.quad(lambda t: fitted.intensity(seq, t).sum(), a, b, limit=200)
        dec = Decoded(*(p[i] for p in _decoded(fitted, seq)))
        log_s = float(dec.log_survival(torch.tensor(b - a, dtype=torch.float64)))
        assert total == pytest.approx(-log_s, rel=1e-4)
        lam = fitted.intensity(seq, b - 1e-12)[0, seq.marks[i]]
        assert np.log(lam) == pytest.approx(time_ll[i] + mark_ll[i] - log_s, abs=1e-4)
    # after the last event, the integral to t_end is minus the survival term
    tail, _ = integrate.quad(
        lambda t: fitted.intensity(seq, t).sum(), seq.times[-1], seq.t_end, limit=200
    )
    assert tail == pytest.approx(-surv, rel=1e-4)


def test_sampling_matches_the_closed_form_distribution(fitted, data):
    dec = _decoded(fitted, data[2])
    d = Decoded(*(p[4].expand(40_000, *p[4].shape) for p in dec))
    tau, mark = d.sample(torch.Generator().manual_seed(0))
    # median of the mixture by bisection on the closed-form survival
    lo, hi = 1e-6, 1e3
    for _ in range(60):
        mid = (lo * hi) ** 0.5
        if float(Decoded(*(p[4] for p in dec)).log_survival(torch.tensor(mid)).exp()) > 0.5:
            lo = mid
        else:
            hi = mid
    assert float((tau <= lo).double().mean()) == pytest.approx(0.5, abs=0.01)
    freq = np.bincount(mark.numpy(), minlength=2) / len(mark)
    np.testing.assert_allclose(freq, dec.mark_log_probs[4].exp().numpy(), atol=0.01)


def test_sample_runs_forward_and_continues_a_history(fitted, data):
    new = fitted.sample(3, t_end=20.0)
    assert len(new) == 3
    for s in new:
        assert s.t_start == 0.0 and s.t_end == 20.0
        assert np.all(np.diff(s.times) >= 0) and np.all((s.times > 0) & (s.times <= 20.0))
    assert [len(s.times) for s in fitted.sample(3, 20.0)] == [len(s.times) for s in new]
    cont = fitted.sample(2, t_end=60.0, history=data[0])
    for s in cont:
        assert s.t_start == data[0].t_end
        assert np.all(s.times > data[0].t_end) and np.all(s.times <= 60.0)
    with pytest.raises(ValueError, match="before the start"):
        fitted.sample(1, t_end=10.0, history=data[0])


def test_padding_does_not_change_a_sequence_s_likelihood(fitted, data):
    short = min(data, key=lambda s: len(s.times))
    alone = fitted.score_samples([short])[0]
    mixed = fitted.score_samples([*data, short])  # batched with longer sequences
    assert mixed[-1] == pytest.approx(alone, abs=1e-5)
    t_alone, m_alone = fitted.predict([short])
    t_mixed, m_mixed = fitted.predict([*data, short])
    assert t_mixed[-1] == pytest.approx(t_alone[0], rel=1e-6)
    assert m_mixed[-1] == m_alone[0]


def test_stream_equals_one_parallel_pass(fitted_backbone, data):
    model = fitted_backbone
    seq = data[4]
    full = model.score_samples([seq])[0]
    easy = model.score_samples([seq], convention="easytpp")[0]
    prefix_times, prefix_marks = model.predict([seq], every_prefix=True)[0]
    probs = model.predict_proba([seq], every_prefix=True)[0]
    stream = model.start_stream(seq.t_start)
    half = len(seq.times) // 2
    stream.update(seq.times[:half], seq.marks[:half])  # a block, then one event at a time
    t, k = stream.predict()
    assert t == pytest.approx(prefix_times[half], rel=1e-5)
    assert k == prefix_marks[half]
    for time, mark in zip(seq.times[half:], seq.marks[half:], strict=True):
        stream.update(time, mark)
    assert stream.n_events == len(seq.times)
    assert stream.log_likelihood(seq.t_end) == pytest.approx(full, abs=1e-5 * len(seq.times))
    assert stream.log_likelihood(convention="easytpp") == pytest.approx(
        easy, abs=1e-5 * len(seq.times)
    )
    assert stream.predict()[0] == pytest.approx(prefix_times[-1], rel=1e-5)
    np.testing.assert_allclose(stream.predict_proba(), probs[-1], atol=1e-5)


def test_update_absorbs_events_into_streams(fitted, data):
    model = pickle.loads(pickle.dumps(fitted))
    a, b = data[5], data[6]
    model.update([(a.times[:3], a.marks[:3]), (b.times[:2], b.marks[:2])])
    model.update([(a.times[3:], a.marks[3:], a.times[2], a.t_end), (b.times[2:], b.marks[2:])])
    assert [s.n_events for s in model.streams_] == [len(a.times), len(b.times)]
    expected = fitted.score_samples([a, b])
    got = [model.streams_[0].log_likelihood(a.t_end), model.streams_[1].log_likelihood(b.t_end)]
    np.testing.assert_allclose(got, expected, atol=1e-5 * len(a.times))
    before = pickle.dumps(model)
    with pytest.raises(ValueError, match="before the stream's last event"):
        model.update([(a.times[:1], a.marks[:1])])
    assert pickle.dumps(model) == before


def test_input_formats_give_identical_results(fitted, data):
    seqs = data[:4]
    pairs = [(s.times, s.marks, s.t_start, s.t_end) for s in seqs]
    table = pd.DataFrame(
        {
            "seq_id": np.concatenate([np.full(len(s.times), f"s{i}") for i, s in enumerate(seqs)]),
            "time": np.concatenate([s.times for s in seqs]),
            "mark": np.concatenate([s.marks for s in seqs]),
            "t_end": np.concatenate([np.full(len(s.times), s.t_end) for s in seqs]),
        }
    )
    easytpp = [{"time_since_start": s.times.tolist(), "type_event": s.marks.tolist()} for s in seqs]
    tick = [[s.times[s.marks == k] for k in range(2)] for s in seqs]
    ends = [s.t_end for s in seqs]
    reference = fitted.score_samples(seqs)
    np.testing.assert_array_equal(fitted.score_samples(pairs), reference)
    np.testing.assert_array_equal(fitted.score_samples(table), reference)
    np.testing.assert_array_equal(
        fitted.score_samples(as_event_sequences(easytpp, t_end=ends)), reference
    )
    np.testing.assert_array_equal(
        fitted.score_samples(as_event_sequences(tick, t_end=ends)), reference
    )
    # without a window the sequence ends at its last event: no survival term
    no_window = fitted.score_samples([(s.times, s.marks) for s in seqs])
    np.testing.assert_allclose(no_window, fitted.score_samples(easytpp), atol=0)
    assert np.all(no_window > reference)


def test_unmarked_data_is_one_mark():
    seqs = [np.array([0.5, 1.0, 2.0]), np.array([0.3, 0.9])]
    model = AarenPointProcess(max_epochs=1, **SMALL).fit(seqs)
    assert model.n_marks_ == 1
    np.testing.assert_allclose(model.predict_proba(seqs), 1.0)
    np.testing.assert_allclose(
        model.score_samples(seqs), model.score_samples([(s, np.zeros(len(s), int)) for s in seqs])
    )


@pytest.mark.parametrize(
    ("events", "error", "match"),
    [
        ([([1.0, 0.5], [0, 0])], ValueError, "non-decreasing"),
        ([([-1.0, 0.5], [0, 0])], ValueError, "negative event times"),
        ([([0.1, np.nan], [0, 0])], ValueError, "NaN"),
        ([([0.1, 0.5], [0, 7])], ValueError, "outside the fitted range"),
        ([([], [])], ValueError, "empty sequence"),
        ([], ValueError, "no sequences"),
        ([([0.1, 0.5], [0, 1], 0.0, 0.3)], ValueError, "t_end=0.3 is before the last event"),
        ([([0.1, 0.5], [0, 1], 0.2, 1.0)], ValueError, "before t_start"),
        ([([0.1, 0.5], [0.5, 1.0])], TypeError, "marks must be integers"),
        ("events", TypeError, "list of sequences"),
    ],
)
def test_bad_input_is_refused_and_leaves_the_estimator_unchanged(fitted, events, error, match):
    before = pickle.dumps(fitted)
    for method in (fitted.score, fitted.predict, fitted.update):
        with pytest.raises(error, match=match):
            method(events)
    assert pickle.dumps(fitted) == before


def test_bad_parameters_and_unfitted_use():
    with pytest.raises(ValueError, match="backbone"):
        AarenPointProcess(backbone="lstm").fit([[0.1, 0.2]])
    with pytest.raises(ValueError, match="not fitted"):
        AarenPointProcess().score([[0.1, 0.2]])
    with pytest.raises(ValueError, match="normalize"):
        AarenPointProcess(max_epochs=1, **SMALL).fit([[0.1, 0.2]]).score([[0.1]], "seconds")


def test_skbase_conventions_and_seeding(data):
    model = AarenPointProcess(max_epochs=2, **SMALL)
    assert isinstance(model, BaseObject)
    assert model.get_params()["backbone"] == "aaren"
    assert model.get_tag("object_type") == "point_process"
    clone = model.clone()
    assert clone.get_params() == model.get_params() and clone is not model
    a = model.fit(data).score(data)
    b = clone.fit(data).score(data)
    assert a == b  # same seed, same model
    other = AarenPointProcess(max_epochs=2, **{**SMALL, "random_state": 1}).fit(data)
    assert other.score(data) != a
    for params in AarenPointProcess.get_test_params():
        AarenPointProcess(**params).fit(data[:3]).score(data[:3])


def test_verbose_reports_every_epoch(data, capsys):
    AarenPointProcess(max_epochs=2, verbose=True, **SMALL).fit(data[:3], validation_data=data[3:5])
    err = capsys.readouterr().err
    assert "AarenPointProcess (aaren)" in err and "2/2" in err


def test_early_stopping_keeps_the_best_validation_epoch(data):
    model = AarenPointProcess(max_epochs=6, patience=2, **SMALL)
    model.fit(data[:8], validation_data=data[8:])
    history = model.validation_history_
    assert 1 <= len(history) <= 6
    assert model.score(data[8:]) == pytest.approx(max(history), abs=1e-5)


def test_learns_a_known_hawkes_process():
    truth = {"baseline": [0.5], "adjacency": [[0.6]], "decay": 2.0}
    train = make_hawkes(n_sequences=40, t_end=60.0, random_state=0, **truth)
    test = make_hawkes(n_sequences=20, t_end=60.0, random_state=1, **truth)
    model = AarenPointProcess(
        d_model=16, n_layers=1, n_heads=2, n_components=4, max_epochs=25, lr=3e-3,
        batch_size=8, random_state=0,
    ).fit(train)  # fmt: skip
    true_ll = HawkesPointProcess.from_params(**truth).score(test)
    rate = sum(len(s.times) for s in train) / sum(s.t_end for s in train)
    test_rate = sum(len(s.times) for s in test) / sum(s.t_end for s in test)
    poisson_ll = np.log(rate) - rate / test_rate  # homogeneous Poisson at the train MLE rate
    learned = model.score(test)
    assert learned > true_ll - 0.06, (learned, true_ll)
    assert learned <= true_ll + 0.05  # cannot beat the true model beyond noise
    assert learned > poisson_ll + 0.1  # it learned the self-excitation


def test_an_epoch_of_a_small_data_set_makes_the_minimum_number_of_steps():
    from aaren_ts.estimators.point_process import MIN_STEPS_PER_EPOCH, _epoch_batches

    rng = np.random.default_rng(0)
    small = _epoch_batches(38, 32, rng)  # hawkes1: 2 batches a pass
    assert len(small) == MIN_STEPS_PER_EPOCH
    passes = np.concatenate(small).reshape(-1, 38)  # whole passes, each a permutation
    assert all(sorted(p) == list(range(38)) for p in passes)
    assert len({tuple(p) for p in passes}) > 1  # reshuffled between passes
    large = _epoch_batches(1400, 32, np.random.default_rng(0))  # taxi: read once
    assert len(large) == 44 and sorted(np.concatenate(large)) == list(range(1400))
    np.testing.assert_array_equal(
        np.concatenate(large), np.random.default_rng(0).permutation(1400)
    )  # the same order as one permutation: large sets train as before
    assert len(_epoch_batches(38, 32, np.random.default_rng(0), min_steps=1)) == 2


def test_more_steps_per_epoch_only_under_early_stopping(data):
    """Without validation data an epoch reads the sequences once (extra steps would overfit a
    small set); with it, at least MIN_STEPS_PER_EPOCH steps (early stopping guards them)."""
    from aaren_ts.estimators import point_process as module

    seen = []
    real = module._epoch_batches

    def spy(n, batch_size, rng, min_steps=module.MIN_STEPS_PER_EPOCH):
        seen.append(min_steps)
        return real(n, batch_size, rng, min_steps)

    import unittest.mock as mock

    with mock.patch.object(module, "_epoch_batches", spy):
        AarenPointProcess(max_epochs=1, **SMALL).fit(data)
        AarenPointProcess(max_epochs=1, **SMALL).fit(data, validation_data=data[:2])
    assert seen == [1, module.MIN_STEPS_PER_EPOCH]
