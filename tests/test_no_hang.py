"""Nothing hangs: the samplers and simulators, given windows that never end (inf, NaN), are
empty (0, negative), expect more events than any sequence should hold, or a process whose
events multiply without bound, stop at once with a named error.

Every case runs under a wall-clock alarm (10 s, against milliseconds when it works), so a
regression fails here instead of stalling the suite."""

from __future__ import annotations

import signal
import warnings

import numpy as np
import pytest
from estimator_inputs import TINY
from estimator_inputs import events as _events

from aaren_ts._checks import MAX_EVENTS
from aaren_ts.datasets import make_hawkes, make_sine_poisson
from aaren_ts.estimators import AarenPointProcess, HawkesPointProcess

LIMIT_S = 10


@pytest.fixture(scope="module")
def fitted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "hawkes": HawkesPointProcess(decay=1.0, random_state=0).fit(_events()),
            "aaren": AarenPointProcess(**TINY).fit(_events()),
            # spectral radius 1.5: each event begets 1.5 more on average
            "supercritical": HawkesPointProcess.from_params([0.5], [[1.5]], 1.0, random_state=0),
        }


def _timed_out(signum, frame):
    raise TimeoutError(f"the call ran past {LIMIT_S} s")


@pytest.fixture(autouse=True)
def alarm():
    previous = signal.signal(signal.SIGALRM, _timed_out)
    signal.alarm(LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


BAD_WINDOWS = [
    (0.0, ValueError, r"t_end \(0.0\) must be after t_start \(0.0\)"),
    (-5.0, ValueError, r"t_end \(-5.0\) must be after t_start"),
    (float("inf"), ValueError, r"t_end must be finite, got inf"),
    (float("nan"), ValueError, r"t_end must be finite, got nan"),
    ("10", TypeError, r"t_end must be a real number, got '10'"),
]


@pytest.mark.parametrize("make", [make_hawkes, make_sine_poisson])
@pytest.mark.parametrize(("t_end", "error", "match"), BAD_WINDOWS)
def test_generators_refuse_a_window_that_never_ends_or_is_empty(make, t_end, error, match):
    with pytest.raises(error, match=match):
        make(n_sequences=2, t_end=t_end, random_state=0)


@pytest.mark.parametrize("make", [make_hawkes, make_sine_poisson])
@pytest.mark.parametrize(
    ("n", "error", "match"),
    [
        (0, ValueError, r"n_sequences must be >= 1, got 0"),
        (-3, ValueError, r"n_sequences must be >= 1"),
        (2.5, TypeError, r"n_sequences must be an int, got 2.5"),
        (True, TypeError, r"n_sequences must be an int, got True"),
    ],
)
def test_generators_refuse_a_bad_count(make, n, error, match):
    with pytest.raises(error, match=match):
        make(n_sequences=n, t_end=10.0, random_state=0)


def test_generators_accept_numpy_integers():
    assert len(make_hawkes(n_sequences=np.int64(2), t_end=20.0, random_state=0)) == 2


@pytest.mark.parametrize("make", [make_hawkes, make_sine_poisson])
def test_generators_refuse_a_window_with_more_events_than_max_events(make):
    """A huge but finite t_end: refused from the expected count, before simulating."""
    with pytest.raises(ValueError, match=rf"more than max_events={MAX_EVENTS}"):
        make(n_sequences=1, t_end=1e300, random_state=0)
    with pytest.raises(ValueError, match=r"more than max_events=50: shorten t_end"):
        make(n_sequences=1, t_end=1000.0, random_state=0, max_events=50)


def test_generators_give_up_on_a_window_too_short_for_any_event():
    """Sequences are non-empty by contract: a window where an event is nearly impossible
    ends after a bounded number of empty draws instead of drawing forever."""
    with pytest.raises(ValueError, match=r"drew 1000 empty sequences in a row"):
        make_hawkes(n_sequences=1, t_end=1e-12, random_state=0)
    with pytest.raises(ValueError, match=r"drew 1000 empty sequences in a row"):
        make_sine_poisson(n_sequences=1, t_end=1e-12, random_state=0)


@pytest.mark.parametrize("which", ["hawkes", "aaren"])
@pytest.mark.parametrize(("t_end", "error", "match"), BAD_WINDOWS[2:])
def test_samplers_refuse_a_window_that_never_ends(fitted, which, t_end, error, match):
    with pytest.raises(error, match=match):
        fitted[which].sample(2, t_end)


@pytest.mark.parametrize("which", ["hawkes", "aaren"])
def test_samplers_refuse_a_start_that_is_not_finite_and_a_bad_count(fitted, which):
    with pytest.raises(ValueError, match=r"t_start must be finite"):
        fitted[which].sample(1, 10.0, t_start=float("-inf"))
    with pytest.raises(ValueError, match=r"n_sequences must be >= 1, got 0"):
        fitted[which].sample(0, 10.0)
    with pytest.raises(ValueError, match=r"is before the start of sampling"):
        fitted[which].sample(1, -1.0)


def test_a_supercritical_process_stops_at_max_events(fitted):
    """Its events multiply without bound; sampling stops with a named error at
    ``max_events`` instead of running until memory runs out."""
    with pytest.raises(ValueError, match=r"more than max_events=2000 events .* supercritical"):
        fitted["supercritical"].sample(1, 1e6, max_events=2000)
    # below the cap it samples as before
    (short,) = fitted["supercritical"].sample(1, 2.0)
    assert np.all(np.diff(short.times) >= 0) and short.times.max() <= 2.0


def test_the_network_sampler_refuses_a_window_far_beyond_max_events_early(fitted):
    """The network draws about a millisecond per event: t_end=1e12 ran 100,000 draws
    (minutes) before reaching the cap; the count projected from the first 1,000 events
    refuses it, and below 1,000 events the cap itself is a ValueError (was RuntimeError)."""
    with pytest.raises(
        ValueError, match=r"events expected before t_end at the rate of the first 1000"
    ):
        fitted["aaren"].sample(1, 1e12)
    with pytest.raises(ValueError, match=r"more than max_events=50 events .* raise max_events"):
        fitted["aaren"].sample(1, 1e12, max_events=50)


def test_sampling_is_unchanged_for_valid_windows():
    """The checks only refuse: a valid call draws the same events as the simulator alone."""
    from aaren_ts.datasets.events import simulate_hawkes

    (seq,) = make_hawkes(n_sequences=1, t_end=30.0, random_state=7)
    rng = np.random.default_rng(7)
    mu, alpha = np.array([0.2]), np.array([[0.8]])
    times, marks = np.array([]), np.array([])
    while not len(times):
        times, marks = simulate_hawkes(mu, alpha, 1.0, 0.0, 30.0, np.zeros(1), rng)
    np.testing.assert_array_equal(seq.times, times)
    np.testing.assert_array_equal(seq.marks, marks)
