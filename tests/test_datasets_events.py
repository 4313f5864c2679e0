"""Event data: the shipped sets load with their checksums, altered files are refused, the
download path verifies and caches, the simulators are exact (time-rescaling theorem), and the
input formats agree."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from helpers import DATA, needs_dataset
from scipy import stats

from aaren_ts.datasets import (
    DataUnavailableError,
    EventSequence,
    as_event_sequences,
    load_event_sequences,
    make_hawkes,
    make_sine_poisson,
)
from aaren_ts.datasets import events as events_module


@pytest.fixture
def data_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AAREN_TS_DATA", str(DATA))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))


@needs_dataset("events", "taxi", cache=False)
@needs_dataset("events", "stackoverflow", "test", cache=False)
def test_easytpp_sets_load_as_published(data_env):
    taxi = load_event_sequences("taxi")
    assert {k: len(v) for k, v in taxi.items()} == {"train": 1400, "valid": 200, "test": 400}
    marks = np.concatenate([s.marks for s in taxi["train"]])
    assert marks.min() == 0 and marks.max() == 9
    first = taxi["train"][0]
    assert first.t_start == 0.0 and first.times[0] == 0.0 and first.t_end == first.times[-1]
    so = load_event_sequences("stackoverflow", split="test")
    assert len(so) == 401
    assert max(int(s.marks.max()) for s in so) <= 21


@needs_dataset("events", "hawkes1", cache=False)
def test_synthetic_sets_split_60_20_20(data_env):
    h = load_event_sequences("hawkes1")
    assert [len(h[k]) for k in ("train", "valid", "test")] == [38, 13, 13]
    assert all(len(s.times) == 1024 and s.marks.max() == 0 for s in h["train"])


@needs_dataset("events", "taxi", "valid", cache=False, download=False)
def test_altered_file_is_refused(monkeypatch, tmp_path):
    raw = events_module.event_data_path("taxi", "valid", download=False).read_bytes()
    target = tmp_path / "data" / "tpp" / "taxi" / "valid.json"
    target.parent.mkdir(parents=True)
    target.write_bytes(raw[:-10] + b"          ")
    monkeypatch.setenv("AAREN_TS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="does not match the published"):
        load_event_sequences("taxi", split="valid", download=False)
    with pytest.raises(
        DataUnavailableError,
        match=r"^taxi/test: tpp/taxi/test.json is not .*"
        r"download=False\. To fix: .*pass download=True$",
    ):
        load_event_sequences("taxi", split="test", download=False)


def test_failed_download_is_one_line_that_says_how_to_fix_it(monkeypatch, tmp_path):
    """No network needed: the source points at a port nothing listens on."""
    source = events_module.EventSource("taxi/test.json", "http://127.0.0.1:9/test.json", "0" * 64)
    monkeypatch.setitem(events_module.EVENT_SOURCES, "taxi", {"test": source})
    monkeypatch.setenv("AAREN_TS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataUnavailableError) as err:
        load_event_sequences("taxi", split="test")
    cached = tmp_path / "cache" / "tpp" / "taxi" / "test.json"
    message = str(err.value)
    assert message.startswith(
        "taxi: tpp/taxi/test.json is not available: it is in neither AAREN_TS_DATA "
        f"({tmp_path / 'data' / 'tpp' / 'taxi' / 'test.json'}) nor the cache ({cached}), and "
        "the download of http://127.0.0.1:9/test.json failed ("
    )
    assert message.endswith(f"put the file at {cached}, or connect to the network")
    assert "\n" not in message and err.value.__cause__ is None


def test_download_verifies_and_caches(monkeypatch, tmp_path):
    payload = b'[{"time_since_start": [0.0, 1.5], "type_event": [0, 2]}]'
    served = tmp_path / "served.json"
    served.write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    monkeypatch.setenv("AAREN_TS_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))
    source = events_module.EventSource("taxi/test.json", served.as_uri(), "0" * 64)
    monkeypatch.setitem(events_module.EVENT_SOURCES, "taxi", {"test": source})
    with pytest.raises(ValueError, match=r"sha256 .*, expected 0+"):
        load_event_sequences("taxi", split="test")
    assert not (tmp_path / "cache" / "tpp" / "taxi" / "test.json").exists()
    good = events_module.EventSource("taxi/test.json", served.as_uri(), sha)
    monkeypatch.setitem(events_module.EVENT_SOURCES, "taxi", {"test": good})
    seqs = load_event_sequences("taxi", split="test")
    assert seqs[0].times.tolist() == [0.0, 1.5] and seqs[0].marks.tolist() == [0, 2]
    assert (tmp_path / "cache" / "tpp" / "taxi" / "test.json").read_bytes() == payload
    served.unlink()  # the second load reads the cache
    assert load_event_sequences("taxi", split="test")[0].times.tolist() == [0.0, 1.5]
    unpinned = events_module.EventSource("amazon/test.json", good.url, None)
    monkeypatch.setitem(events_module.EVENT_SOURCES, "amazon", {"test": unpinned})
    (tmp_path / "cache" / "tpp" / "amazon").mkdir(parents=True)
    (tmp_path / "cache" / "tpp" / "amazon" / "test.json").write_bytes(payload)
    # a file without a pinned checksum is refused unless the caller takes it on trust
    with pytest.raises(ValueError, match=r"no pinned checksum for amazon/test.json.*allow_unpin"):
        load_event_sequences("amazon", split="test")
    with pytest.warns(UserWarning, match="no pinned checksum"):
        load_event_sequences("amazon", split="test", allow_unpinned=True)


def test_every_shipped_source_is_pinned_or_refused_without_trust():
    """What the package downloads by default is pinned; the rest needs allow_unpinned."""
    unpinned = sorted(
        f"{name}/{split}"
        for name, splits in events_module.EVENT_SOURCES.items()
        for split, source in splits.items()
        if source.sha256 is None
    )
    for entry in unpinned:
        name = entry.split("/")[0]
        assert name in ("taobao", "amazon", "retweet"), entry  # documented as unpinned
    assert all(
        len(s.sha256) == 64
        for splits in events_module.EVENT_SOURCES.values()
        for s in splits.values()
        if s.sha256 is not None
    )


def test_an_unwritable_cache_is_a_named_error(monkeypatch, tmp_path):
    payload = b'[{"time_since_start": [0.0, 1.5], "type_event": [0, 2]}]'
    served = tmp_path / "served.json"
    served.write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("AAREN_TS_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("AAREN_TS_CACHE", str(blocker / "cache"))
    source = events_module.EventSource("taxi/test.json", served.as_uri(), sha)
    monkeypatch.setitem(events_module.EVENT_SOURCES, "taxi", {"test": source})
    with pytest.raises(PermissionError, match=r"cannot write test.json into .*AAREN_TS_CACHE"):
        load_event_sequences("taxi", split="test")


def _rescaled_gaps_hawkes(s: EventSequence, mu, alpha, beta) -> np.ndarray:
    """Compensator increments between events, summed directly over the past (O(N^2))."""
    big = []
    for t in np.concatenate([s.times, [s.t_end]]):
        past = s.times < t
        big.append(
            mu.sum() * t
            + alpha[:, s.marks[past]].sum(0) @ (1 - np.exp(-beta * (t - s.times[past])))
        )
    return np.diff(np.concatenate([[0.0], big[:-1]]))


def test_make_hawkes_is_exact_by_time_rescaling():
    mu, alpha, beta = np.array([0.4, 0.2]), np.array([[0.3, 0.3], [0.2, 0.4]]), 1.5
    seqs = make_hawkes(20, t_end=100.0, baseline=mu, adjacency=alpha, decay=beta, random_state=0)
    gaps = np.concatenate([_rescaled_gaps_hawkes(s, mu, alpha, beta) for s in seqs])
    assert len(gaps) > 1000
    assert stats.kstest(gaps, "expon").pvalue > 0.01
    # and a wrong decay is rejected by the same test: the test has power
    wrong = np.concatenate([_rescaled_gaps_hawkes(s, mu, alpha, 5 * beta) for s in seqs])
    assert stats.kstest(wrong, "expon").pvalue < 1e-4
    assert make_hawkes(2, 50.0, random_state=3)[1].times.tolist() == (
        make_hawkes(2, 50.0, random_state=3)[1].times.tolist()
    )
    with pytest.raises(ValueError, match="spectral radius"):
        make_hawkes(1, 10.0, adjacency=[[1.2]])


def test_make_sine_poisson_is_exact_by_time_rescaling():
    rate, amp, period = 2.0, 0.8, 7.0
    seqs = make_sine_poisson(
        30, t_end=50.0, rate=rate, amplitude=amp, period=period, random_state=0
    )

    def big(t):
        return rate * (t + amp * period / (2 * np.pi) * (1 - np.cos(2 * np.pi * t / period)))

    gaps = np.concatenate([np.diff(big(np.concatenate([[0.0], s.times]))) for s in seqs])
    assert stats.kstest(gaps, "expon").pvalue > 0.01
    flat = np.concatenate([np.diff(np.concatenate([[0.0], s.times])) * rate for s in seqs])
    assert stats.kstest(flat, "expon").pvalue < 1e-3  # the modulation is visible


def test_formats_agree_and_errors_name_the_problem():
    pairs = [([0.5, 1.0, 2.5], [0, 1, 0]), ([0.2, 0.4], [1, 1])]
    tick = [[[0.5, 2.5], [1.0]], [np.array([]), np.array([0.2, 0.4])]]
    table = pd.DataFrame(
        {"seq_id": [7, 7, 7, 3, 3], "time": [0.5, 1.0, 2.5, 0.2, 0.4], "mark": [0, 1, 0, 1, 1]}
    )
    records = [{"time_since_start": t, "type_event": m} for t, m in pairs]
    ref = as_event_sequences(pairs)
    for other in (as_event_sequences(tick), as_event_sequences(table), as_event_sequences(records)):
        for a, b in zip(ref, other, strict=True):
            np.testing.assert_array_equal(a.times, b.times)
            np.testing.assert_array_equal(a.marks, b.marks)
            assert (a.t_start, a.t_end) == (b.t_start, b.t_end)
    assert as_event_sequences([[0.1, 0.3]])[0].marks.tolist() == [0, 0]
    with pytest.raises(ValueError, match="seq_id 3: times must be non-decreasing"):
        as_event_sequences(table.iloc[[0, 1, 2, 4, 3]])
    with pytest.raises(ValueError, match="needs columns"):
        as_event_sequences(table.drop(columns="seq_id"))
    with pytest.raises(ValueError, match="3 times but 2 marks"):
        as_event_sequences([([0.1, 0.2, 0.3], [0, 1])])
    with pytest.raises(ValueError, match="t_end has 1 values for 2 sequences"):
        as_event_sequences(pairs, t_end=[3.0])
    with pytest.raises(TypeError, match="wrap a single sequence"):
        as_event_sequences(pairs[0])
    with pytest.raises(ValueError, match="unknown event data set"):
        load_event_sequences("nope")
