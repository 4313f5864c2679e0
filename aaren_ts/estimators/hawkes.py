"""HawkesPointProcess: the classical anchor, a multivariate exponential-kernel Hawkes process
fitted by maximum likelihood, with the API and log-likelihood definition of
``AarenPointProcess``."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import optimize
from skbase.base import BaseEstimator

from .._checks import MAX_EVENTS, boolean, finite_float, positive_int
from ..datasets.events import EventSequence, as_event_sequences, simulate_hawkes
from ._params import OPTIONAL_POSITIVE_INT, Options, Real, Seed, check_params
from ._persistence import PersistenceMixin
from .point_process import _check_fitted, _check_marks, _check_normalisation, check_mark_count

_LAGUERRE = np.polynomial.laguerre.laggauss(80)


# K marks: a K x K adjacency and K excitations per event (1,000: 8 MB and 8 kB per event)
MAX_MARKS = 1_000


def _excitations(seqs: list[EventSequence], n_marks: int, beta: float) -> list[np.ndarray]:
    """Per sequence ``(N, K)``: ``E_i = sum_{l < i} beta e^{-beta (t_i - t_l)} onehot(k_l)``,
    computed over all sequences at once, position by position."""
    n = max(len(s.times) for s in seqs)
    B = len(seqs)
    times = np.zeros((B, n))
    marks = np.zeros((B, n), dtype=np.int64)
    for b, s in enumerate(seqs):
        times[b, : len(s.times)] = s.times
        times[b, len(s.times) :] = s.times[-1]
        marks[b, : len(s.times)] = s.marks
    out = np.zeros((B, n, n_marks))
    rows = np.arange(B)
    for i in range(1, n):
        prev = out[:, i - 1].copy()
        prev[rows, marks[:, i - 1]] += beta
        out[:, i] = prev * np.exp(-beta * (times[:, i] - times[:, i - 1]))[:, None]
    return [out[b, : len(s.times)] for b, s in enumerate(seqs)]


class HawkesPointProcess(PersistenceMixin, BaseEstimator):
    """Multivariate Hawkes process with exponential kernels, fitted by maximum likelihood.

    Mark ``k`` has intensity ``lambda_k(t) = mu_k + sum_j alpha_kj sum_{t_l^j < t} beta
    exp(-beta (t - t_l^j))`` (one decay ``beta`` shared by all pairs; ``alpha`` is the
    branching matrix, as tick's ``HawkesExpKern``). For a fixed ``beta`` the log-likelihood is
    concave in ``(mu, alpha)`` and separates over the marks: each row is an L-BFGS-B problem
    with an exact gradient. ``beta`` is chosen by a bounded scalar search on the profile
    log-likelihood. (scipy only: tick 0.8, the ``tpp`` extra, installs on Python 3.11 but its
    learners fail on construction there, so it is not used.)

    Parameters
    ----------
    n_marks : int, optional
        Default: ``1 + the largest mark`` in ``fit``'s data.
    decay : float, optional
        Fix ``beta`` instead of estimating it.
    random_state : int, optional
        Seed of ``sample``.

    Notes
    -----
    ``score``, ``score_samples`` and their conventions are those of ``AarenPointProcess``: the
    log-likelihood ``sum_i log lambda_{k_i}(t_i) - int_{t_start}^{t_end} sum_k lambda_k`` of
    every event on ``[t_start, t_end]``, per event or per time unit, or EasyTPP's (events
    ``2..N`` given the first, integral over ``[t_1, t_N]``).

    Examples
    --------
    >>> from aaren_ts.datasets import make_hawkes
    >>> from aaren_ts.estimators import HawkesPointProcess
    >>> seqs = make_hawkes(n_sequences=20, t_end=200.0, random_state=0)
    >>> hawkes = HawkesPointProcess().fit(seqs)
    >>> bool(abs(hawkes.adjacency_[0, 0] - 0.8) < 0.15)
    True
    """

    _tags = {  # noqa: RUF012 (skbase's convention)
        "object_type": "point_process",
        "authors": ["aaren_ts developers"],
        "python_dependencies": "scipy",
        "capability:marks": True,
        "capability:sample": True,
        "capability:random_state": True,
    }

    def __init__(
        self,
        n_marks: int | None = None,
        decay: float | None = None,
        random_state: int | None = None,
    ) -> None:
        self.n_marks = n_marks
        self.decay = decay
        self.random_state = random_state
        super().__init__()

    # what each parameter may be (checked at fit, before any state changes)
    _constraints: ClassVar[dict] = {
        "n_marks": OPTIONAL_POSITIVE_INT,
        "decay": (Options(None), Real(0.0, open={"low"})),
        "random_state": Seed(),
    }

    # ------------------------------------------------------------------ fitting
    def _fit_rows(self, seqs, n_marks: int, beta: float) -> tuple[np.ndarray, np.ndarray, float]:
        """MLE of ``(mu, alpha)`` for a fixed ``beta`` (scipy), and the log-likelihood."""
        E = np.concatenate(_excitations(seqs, n_marks, beta))
        k = np.concatenate([s.marks for s in seqs])
        T = sum(s.t_end - s.t_start for s in seqs)
        G = np.zeros(n_marks)
        for s in seqs:
            np.add.at(G, s.marks, 1.0 - np.exp(-beta * (s.t_end - s.times)))
        mu, alpha, total = np.zeros(n_marks), np.zeros((n_marks, n_marks)), 0.0
        for row in range(n_marks):
            Er = E[k == row]
            count = len(Er)
            if count == 0:
                mu[row] = 1e-10
                continue

            def nll(p, Er=Er):
                lam = p[0] + Er @ p[1:]
                grad = np.concatenate([[np.sum(1 / lam) - T], Er.T @ (1 / lam) - G])
                return -(np.log(lam).sum() - p[0] * T - p[1:] @ G), -grad

            x0 = np.concatenate([[0.5 * count / T], np.full(n_marks, 0.1 / n_marks)])
            bounds = [(1e-10, None)] + [(0.0, None)] * n_marks
            res = optimize.minimize(nll, x0, jac=True, method="L-BFGS-B", bounds=bounds)
            mu[row], alpha[row] = res.x[0], res.x[1:]
            total -= res.fun
        return mu, alpha, total

    def fit(self, X) -> HawkesPointProcess:
        """Maximum-likelihood fit on event sequences (any format of ``as_event_sequences``)."""
        check_params(self, self._constraints)
        seqs = as_event_sequences(X)
        n_marks = self.n_marks or 1 + max(int(s.marks.max()) for s in seqs)
        check_mark_count(n_marks, MAX_MARKS, type(self).__name__)
        _check_marks(seqs, n_marks)
        observed = sum(s.t_end - s.t_start for s in seqs)
        if not 0 < observed < np.inf:
            raise ValueError(
                f"the observation windows add up to {observed} time units: a rate needs a "
                "window of positive, finite length (t_end > t_start)"
            )
        fit_rows = self._fit_rows
        if self.decay is not None:
            beta = float(self.decay)
        else:
            gaps = np.concatenate([np.diff(s.times) for s in seqs])
            scale = float(np.mean(gaps[gaps > 0])) if (gaps > 0).any() else 1.0
            lo, hi = np.log(1e-2 / scale), np.log(1e2 / scale)
            res = optimize.minimize_scalar(
                lambda lb: -fit_rows(seqs, n_marks, float(np.exp(lb)))[2],
                bounds=(lo, hi),
                method="bounded",
                options={"xatol": 1e-3},
            )
            beta = float(np.exp(res.x))
        mu, alpha, _ = fit_rows(seqs, n_marks, beta)
        self.baseline_, self.adjacency_, self.decay_ = mu, alpha, beta
        self.n_marks_ = n_marks
        self._is_fitted = True
        return self

    @classmethod
    def from_params(cls, baseline, adjacency, decay: float, **kwargs) -> HawkesPointProcess:
        """A fitted instance with known parameters (the true model of a simulation)."""
        mu = np.atleast_1d(np.asarray(baseline, dtype=np.float64))
        model = cls(n_marks=len(mu), decay=float(decay), **kwargs)
        model.baseline_ = mu
        model.adjacency_ = np.asarray(adjacency, dtype=np.float64).reshape(len(mu), len(mu))
        model.decay_ = float(decay)
        model.n_marks_ = len(mu)
        model._is_fitted = True
        return model

    # ------------------------------------------------------------------ likelihood
    def _loglik(self, s: EventSequence, mu, alpha, beta, convention: str = "window") -> float:
        E = _excitations([s], len(mu), beta)[0]
        log_lam = np.log(mu[s.marks] + np.einsum("ij,ij->i", alpha[s.marks], E))
        if convention == "window":
            lo, hi, first = s.t_start, s.t_end, 0
        else:
            lo, hi, first = s.times[0], s.times[-1], 1
        gone = 1.0 - np.exp(-beta * (hi - s.times))
        compensator = mu.sum() * (hi - lo) + alpha[:, s.marks].sum(0) @ gone
        return float(log_lam[first:].sum() - compensator)

    def _sequences(self, X, method: str) -> list[EventSequence]:
        _check_fitted(self, method)
        seqs = as_event_sequences(X)
        _check_marks(seqs, self.n_marks_)
        return seqs

    def score_samples(self, X, convention: str = "window") -> np.ndarray:
        """Log-likelihood of each sequence (the definitions of ``AarenPointProcess``)."""
        _check_normalisation("event", convention)
        seqs = self._sequences(X, "score_samples")
        args = (self.baseline_, self.adjacency_, self.decay_, convention)
        return np.array([self._loglik(s, *args) for s in seqs])

    def score(self, X, normalize: str = "event", convention: str = "window") -> float:
        """Mean log-likelihood per event (or per time unit with ``normalize="time"``)."""
        _check_normalisation(normalize, convention)
        seqs = self._sequences(X, "score")
        total = self.score_samples(seqs, convention).sum()
        if normalize == "time":
            return float(total / sum(s.t_end - s.t_start for s in seqs))
        return float(total / sum(len(s.times) - (convention == "easytpp") for s in seqs))

    # ------------------------------------------------------------------ prediction
    def _next_event(self, s: EventSequence) -> tuple[np.ndarray, np.ndarray]:
        """After every prefix (0..N events): ``E[tau]`` ``(N+1,)`` and mark probabilities
        ``(N+1, K)``, by Gauss-Laguerre quadrature of the survival function."""
        mu, alpha, beta = self.baseline_, self.adjacency_, self.decay_
        E = _excitations([s], len(mu), beta)[0]
        after = E.copy()
        after[np.arange(len(s.marks)), s.marks] += beta  # just after each event
        c = np.vstack([np.zeros(len(mu)), after @ alpha.T])  # (N+1, K) excitation
        M, C = mu.sum(), c.sum(1, keepdims=True)
        u, w = _LAGUERRE
        s_nodes = u[None, :] / M  # the survival decays at least like e^{-M s}
        decay = np.exp(-beta * s_nodes)
        surv_ratio = np.exp(-C * (1.0 - decay) / beta)  # S(s) / e^{-M s}
        mean = (surv_ratio * w).sum(1) / M
        tail = (surv_ratio * decay * w).sum(1) / M  # int e^{-beta s} S(s) ds
        probs = mu[None, :] * mean[:, None] + c * tail[:, None]
        return mean, probs / probs.sum(1, keepdims=True)

    def predict(self, X, every_prefix: bool = False):
        """Next event time (conditional mean) and most probable mark, as
        ``AarenPointProcess.predict``."""
        every_prefix = boolean(every_prefix, "every_prefix")
        seqs = self._sequences(X, "predict")
        out = []
        for s in seqs:
            mean, probs = self._next_event(s)
            out.append((np.concatenate([[s.t_start], s.times]) + mean, probs.argmax(1)))
        if every_prefix:
            return out
        return np.array([t[-1] for t, _ in out]), np.array([m[-1] for _, m in out])

    def predict_proba(self, X, every_prefix: bool = False):
        """Next-mark probabilities, as ``AarenPointProcess.predict_proba``."""
        every_prefix = boolean(every_prefix, "every_prefix")
        seqs = self._sequences(X, "predict_proba")
        probs = [self._next_event(s)[1] for s in seqs]
        return probs if every_prefix else np.stack([p[-1] for p in probs])

    def sample(
        self,
        n_sequences: int,
        t_end: float,
        history=None,
        t_start: float = 0.0,
        random_state=None,
        max_events: int = MAX_EVENTS,
    ) -> list[EventSequence]:
        """Exact simulation (Ogata thinning) up to ``t_end``, optionally continuing
        ``history`` (one sequence or ``n_sequences``) from its ``t_end``; returns the new
        events only.

        ``t_end`` and ``t_start`` must be finite. A sequence that would pass ``max_events``
        events before ``t_end`` (a supercritical fit, whose events multiply without bound,
        or a very long window) is a ``ValueError`` once it gets there, never a hang."""
        _check_fitted(self, "sample")
        n_sequences = positive_int(n_sequences, "n_sequences")
        max_events = positive_int(max_events, "max_events")
        t_end, t_start = finite_float(t_end, "t_end"), finite_float(t_start, "t_start")
        seed = self.random_state if random_state is None else random_state
        rng = np.random.default_rng(seed)
        mu, alpha, beta = self.baseline_, self.adjacency_, self.decay_
        if history is None:
            starts = [(float(t_start), np.zeros(len(mu)))] * n_sequences
        else:
            if isinstance(history, (EventSequence, dict)) or (
                isinstance(history, tuple) and len(history) in (2, 4)
            ):
                history = [history]
            hist = self._sequences(history, "sample")
            hist = hist * n_sequences if len(hist) == 1 else hist
            if len(hist) != n_sequences:
                raise ValueError(f"history has {len(hist)} sequences; give 1 or {n_sequences}")
            starts = []
            for h in hist:
                decayed = beta * np.exp(-beta * (h.t_end - h.times))
                starts.append((h.t_end, alpha[:, h.marks] @ decayed))
        out = []
        for t0, excite in starts:
            if t_end < t0:
                raise ValueError(f"t_end={t_end} is before the start of sampling ({t0})")
            times, marks = simulate_hawkes(mu, alpha, beta, t0, t_end, excite, rng, max_events)
            out.append(EventSequence(times, marks, t0, float(t_end)))
        return out

    @classmethod
    def get_test_params(cls, parameter_set: str = "default"):
        """Settings for tests."""
        return [{}, {"decay": 1.0, "random_state": 0}]
