"""AarenPointProcess: a marked temporal point process (event forecasting) on an Aaren encoder,
with O(1) streaming updates.

sktime has no point-process type; the estimator follows scikit-learn / skbase conventions
(``get_params``, ``clone``, tags, ``random_state``).
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import numpy as np
import torch
from skbase.base import BaseEstimator
from sktime.exceptions import NotFittedError

from .._checks import boolean, finite_float, positive_int
from ..datasets.events import EventSequence, as_event_sequences
from ._optim import adam
from ._params import (
    NETWORK,
    OPTIONAL_POSITIVE_INT,
    POSITIVE_INT,
    THREADS,
    TRAINING,
    Bool,
    Device,
    Real,
    check_network_params,
    resolve_device,
)
from ._persistence import PersistenceMixin
from ._portable import PortableStateMixin, relink_streams
from ._sizes import checked_build
from ._threads import threaded
from ._tpp_net import Decoded, TPPNet, pad_events
from ._values import real_values

CONVENTIONS = ("window", "easytpp")
POINT_KINDS = ("mean", "median", "mode")  # predict's point of the next gap
# with validation data, an epoch reads the training sequences once, or again until it has
# made this many optimiser steps (chosen on validation splits: benchmarks/RESULTS.md, issue 17)
MIN_STEPS_PER_EPOCH = 40


def _check_fitted(est: Any, method: str) -> None:
    if not getattr(est, "_is_fitted", False):
        # NotFittedError is a ValueError too: callers catching ValueError still do
        raise NotFittedError(
            f"This {type(est).__name__} is not fitted yet; call fit before {method}"
        )


# Marks are 0-based category ids and the models keep a row (the network's mark embedding and
# output) or a row and a column (Hawkes' adjacency, and its excitations per event) per id:
# ids in the millions (raw user or item ids) would allocate gigabytes, or wait for them,
# before anything could say so
MAX_MARKS = 10_000


def check_mark_count(n_marks: int, limit: int, name: str) -> None:
    """A named error when ``n_marks`` (fitted or inferred) exceeds what ``name`` keeps."""
    if n_marks > limit:
        raise ValueError(
            f"{name} would model {n_marks} marks (ids 0..{n_marks - 1}), more than its "
            f"{limit}: marks are 0-based category ids; relabel sparse ids, e.g. with "
            "np.unique(marks, return_inverse=True)"
        )


def _check_marks(sequences: list[EventSequence], n_marks: int) -> None:
    for i, s in enumerate(sequences):
        if s.marks.max() >= n_marks:
            raise ValueError(
                f"sequence {i}: mark {int(s.marks.max())} is outside the fitted range "
                f"[0, {n_marks - 1}]"
            )


# Sampling draws one event at a time through the network (about a millisecond each): a
# window holding far more than max_events would take minutes to reach that cap. Every
# PROJECT_EVERY events the count expected at the rate so far is checked against it.
PROJECT_EVERY = 1000


def _refuse_a_window_too_long(n: int, elapsed: float, window: float, max_events: int) -> None:
    """A named error when ``n`` events in ``elapsed`` time project past ``max_events``
    (twice over: the rate may still change) by the end of ``window``."""
    if elapsed > 0 and n * window / elapsed > 2 * max_events:
        raise ValueError(
            f"about {n * window / elapsed:.3g} events expected before t_end at the rate of "
            f"the first {n}, more than max_events={max_events}: shorten t_end or raise "
            "max_events"
        )


# the network reads gaps as float32: a wider gap would reach it as inf
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_gap(width: float, where: str) -> None:
    """A gap must fit the network's float32 inputs: times near 1e300 measured from 0 would
    otherwise come back as NaN forecasts and scores."""
    if not width <= _FLOAT32_MAX:
        raise ValueError(
            f"{where}: a gap of {width:.3g} time units is beyond what the network reads "
            f"(float32, at most {_FLOAT32_MAX:.3g}): measure times from a nearer origin "
            "(t_start) or in larger units"
        )


def _check_gaps(sequences: list[EventSequence]) -> None:
    """``_check_gap`` for every gap of every sequence: from ``t_start`` to the first event,
    between events, and from the last event to ``t_end``."""
    for i, s in enumerate(sequences):
        widest = float(np.diff(s.times, prepend=s.t_start, append=s.t_end).max())
        _check_gap(widest, f"sequence {i}")


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    """``values`` (one row per sequence) when all finite; else a named error instead of a
    NaN or -inf result."""
    values = np.asarray(values)
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(-1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(
            f"{what} of sequence(s) {rows} is not finite: their gaps are far outside the "
            "time scale the model was fitted on (an underflowing survival over a very long "
            "window, or overflowing times); rescale the times or shorten the windows"
        )
    return values


def _check_normalisation(normalize: str, convention: str) -> None:
    if normalize not in ("event", "time"):
        raise ValueError(f"normalize must be 'event' or 'time', got {normalize!r}")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


class AarenPointProcess(PersistenceMixin, BaseEstimator):
    """Marked temporal point process: an Aaren encoder over events and an intensity-free
    decoder (categorical for the next mark, log-normal mixture for the time to it).

    Each event enters the encoder as a token: a mark embedding plus a linear map of the
    standardised log inter-event time and sinusoidal encodings of the absolute time. After
    events ``1..i`` the encoder state gives the distribution of the next event: its mark from a
    categorical and ``tau`` (the time to it) from a mixture of ``n_components`` log-normals
    given that mark (Shchur et al., 2020, with mark-dependent mixtures; Aaren in place of the
    Transformer encoder of THP+, as in Feng et al., 2024). Density, survival function,
    conditional mean and sampling are exact and in closed form. With ``backbone="aaren"`` a new
    event costs O(1) time and memory (``start_stream``, ``update``).

    Parameters
    ----------
    backbone : {"aaren", "transformer", "gru"}, default "aaren"
        Encoder; "transformer" is the THP+-style baseline, "gru" the RNN one.
    n_marks : int, optional
        Number of marks (types). Default: ``1 + the largest mark`` seen by ``fit``.
    d_model, n_layers, n_heads : int, default 32, 2, 4
        Encoder size.
    n_components : int, default 8
        Log-normal components of the inter-event time distribution (per mark).
    mark_conditional : bool, default True
        The next inter-event time's mixture depends on the next mark: ``p(tau, k | h) =
        P(k | h) p(tau | k, h)``. False: one mixture for every mark (time and mark independent
        given the history, as in Shchur et al., 2020).
    recency : bool, default True
        Aaren only: a learnable per-head recency term on the event times in every attention
        layer (``aaren_ts.nn.AarenAttention``), an exponential down-weighting of old events.
        Ignored by the other backbones. Chosen on validation splits (hawkes1, taxi, Stack
        Overflow: ``benchmarks/RESULTS.md``); it was False before.
    dropout : float, default 0.0
    max_epochs : int, default 20
        An epoch reads the training sequences once. With validation data (early stopping),
        it reads them again until it has made 40 optimiser steps: a few dozen sequences
        would otherwise train a handful of steps, and early stopping guards the extra ones
        against overfitting.
    batch_size : int, default 32
        Sequences per optimiser step (padded; padding never enters the likelihood).
    lr : float, default 1e-3
    validation_size : float, default 0.0
        Share of the training sequences held out for early stopping (the best epoch's weights
        are kept), unless ``fit`` is given ``validation_data``.
    patience : int, default 5
        Epochs without validation improvement before training stops.
    min_inter_time : float, default 1e-6
        Inter-event times below this (ties, ``tau = 0``) are read as this value, since a
        log-normal has no mass at 0.
    device : str, default "auto"
        "auto" picks CUDA when present.
    n_threads : int, optional
        CPU threads for torch inside this estimator's calls (torch's setting is restored
        after each). None: one thread for networks up to ``d_model=128`` and inside parallel
        workers (loky, dask, ray), where more threads only oversubscribe the cores; wider
        networks keep torch's setting. -1: torch's setting; an int: that many.
    random_state : int, optional
        Seeds initialisation, batching, the validation split and ``sample``.
    verbose : bool, default False
        Report each epoch's loss (a tqdm bar when tqdm is installed).

    Notes
    -----
    **Log-likelihood.** A sequence is observed on ``[t_start, t_end]`` with events
    ``t_1 <= ... <= t_N`` (``tau_i = t_i - t_{i-1}``, ``t_0 = t_start``) and marks ``k_i``;
    ``h_i`` is the encoder state after the start token and events ``1..i``. Its
    log-likelihood is

    ``L = sum_{i=1..N} [log p(tau_i | h_{i-1}) + log P(k_i | h_{i-1})]
    + log S(t_end - t_N | h_N)``,

    the last term being the survival of the open interval after the last event (no event
    before ``t_end``; 0 when ``t_end = t_N``). ``score_samples`` returns ``L`` per sequence;
    ``score`` returns ``sum L / sum N`` over the sequences (nats per event) or, with
    ``normalize="time"``, ``sum L / sum (t_end - t_start)`` (nats per time unit).
    ``convention="easytpp"`` gives the convention of EasyTPP's published numbers: events
    ``2..N`` given the first, no survival term, ``sum_{i>=2} [...] / sum (N - 1)``. Times are
    in the data's units, so log-likelihoods of time depend on them (``-log c`` per event when
    times are multiplied by ``c``).

    Examples
    --------
    >>> from aaren_ts.datasets import make_hawkes
    >>> from aaren_ts.estimators import AarenPointProcess
    >>> train = make_hawkes(n_sequences=8, t_end=30.0, random_state=0)
    >>> tpp = AarenPointProcess(d_model=8, max_epochs=2, random_state=0).fit(train)
    >>> ll = tpp.score(train)                       # nats per event
    >>> next_time, next_mark = tpp.predict(train)   # after each sequence's last event
    >>> stream = tpp.start_stream()
    >>> stream = stream.update(train[0].times, train[0].marks)   # O(1) per event
    >>> bool(abs(stream.log_likelihood(t_end=30.0) - tpp.score_samples(train[:1])[0]) < 1e-4)
    True
    >>> samples = tpp.sample(3, t_end=10.0)
    """

    _tags = {  # noqa: RUF012 (skbase's convention: a class-level dict)
        "object_type": "point_process",
        "authors": ["aaren_ts developers"],
        "python_dependencies": "torch",
        "capability:marks": True,
        "capability:update": True,
        "capability:sample": True,
        "capability:random_state": True,
        "property:randomness": "derandomized",
    }

    def __init__(
        self,
        backbone: str = "aaren",
        n_marks: int | None = None,
        d_model: int = 32,
        n_layers: int = 2,
        n_heads: int = 4,
        n_components: int = 8,
        mark_conditional: bool = True,
        recency: bool = True,
        dropout: float = 0.0,
        max_epochs: int = 20,
        batch_size: int = 32,
        lr: float = 1e-3,
        validation_size: float = 0.0,
        patience: int = 5,
        min_inter_time: float = 1e-6,
        device: str = "auto",
        n_threads: int | None = None,
        random_state: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.backbone = backbone
        self.n_marks = n_marks
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.n_components = n_components
        self.mark_conditional = mark_conditional
        self.recency = recency
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.validation_size = validation_size
        self.patience = patience
        self.min_inter_time = min_inter_time
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        super().__init__()

    # ------------------------------------------------------------------ checks
    # what each parameter may be (checked at fit, before any state changes)
    _constraints: ClassVar[dict] = {
        **NETWORK,
        **TRAINING,
        "device": Device(),
        "n_threads": THREADS,
        "n_components": POSITIVE_INT,
        "n_marks": OPTIONAL_POSITIVE_INT,
        "min_inter_time": Real(0.0, open={"low"}),
        "mark_conditional": Bool(),
    }

    def _check_params(self) -> None:
        check_network_params(self, self._constraints)

    def _sequences(self, X, method: str) -> list[EventSequence]:
        _check_fitted(self, method)
        seqs = as_event_sequences(X)
        _check_marks(seqs, self.n_marks_)
        _check_gaps(seqs)
        return seqs

    # ------------------------------------------------------------------ training
    def _progress(self):
        if not self.verbose:
            return (lambda epoch, loss, val: None), (lambda: None)
        try:
            from tqdm.auto import tqdm
        except ImportError:

            def say(epoch, loss, val):
                print(f"epoch {epoch + 1}/{self.max_epochs}: loss {loss:.4f} val {val}")

            return say, (lambda: None)
        bar = tqdm(total=self.max_epochs, desc=f"AarenPointProcess ({self.backbone})")

        def report(epoch, loss, val):
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", val=val)

        return report, bar.close

    @threaded
    def fit(self, X, validation_data=None) -> AarenPointProcess:
        """Fit on event sequences (any format of ``as_event_sequences``).

        Parameters
        ----------
        X : event data
            Training sequences.
        validation_data : event data, optional
            Sequences for early stopping (best-validation weights kept). Default: a random
            ``validation_size`` share of ``X`` when ``validation_size > 0``, else none.
        """
        self._check_params()
        seqs = as_event_sequences(X)
        val = None if validation_data is None else as_event_sequences(validation_data)
        n_marks = self.n_marks or 1 + max(int(s.marks.max()) for s in seqs)
        check_mark_count(n_marks, MAX_MARKS, type(self).__name__)
        _check_marks(seqs, n_marks)
        _check_gaps(seqs)
        if val is not None:
            _check_marks(val, n_marks)
            _check_gaps(val)
        device = resolve_device(self.device)
        seed = 0 if self.random_state is None else int(self.random_state)
        rng = np.random.default_rng(seed)
        if val is None and self.validation_size > 0 and len(seqs) > 1:
            order = rng.permutation(len(seqs))
            n_val = max(1, round(len(seqs) * self.validation_size))
            val = [seqs[i] for i in order[:n_val]]
            seqs = [seqs[i] for i in order[n_val:]]
        tau = np.concatenate([np.diff(s.times, prepend=s.t_start) for s in seqs])
        # the largest gap seen (an open interval before t_end counts too): predict's "mean"
        # caps the next gap there
        ends = [s.t_end - (s.times[-1] if len(s.times) else s.t_start) for s in seqs]
        largest = float(max(tau.max(initial=0.0), max(ends)))
        log_tau = np.log(tau[tau > 0]) if (tau > 0).any() else np.zeros(1)
        std = float(log_tau.std()) if len(log_tau) > 1 and log_tau.std() > 0 else 1.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed if self.random_state is not None else torch.seed())
            net = checked_build(
                lambda: TPPNet(
                    n_marks,
                    self.backbone,
                    self.d_model,
                    self.n_layers,
                    self.n_heads,
                    self.dropout,
                    self.n_components,
                    float(log_tau.mean()),
                    std,
                    self.min_inter_time,
                    bool(self.mark_conditional),
                    bool(self.recency),
                ),
                type(self).__name__,
                {"n_marks": n_marks, "d_model": self.d_model, "n_layers": self.n_layers,
                 "n_components": self.n_components},
            ).to(device)  # fmt: skip
            history, val_history = self._train(net, seqs, val, rng, device)
        self.network_ = net
        self.n_marks_ = n_marks
        self.max_gap_ = max(largest, float(self.min_inter_time))
        self.loss_history_ = history
        self.validation_history_ = val_history
        self._device = device
        self.streams_: list[EventStream] = []
        self._is_fitted = True
        return self

    def _train(self, net: TPPNet, seqs, val, rng, device):
        optimizer = adam(net.parameters(), lr=self.lr)
        report, close = self._progress()
        best, best_weights, waited = -math.inf, None, 0
        history, val_history = [], []
        for epoch in range(self.max_epochs):
            net.train()
            total, count = 0.0, 0
            # more steps per epoch only under early stopping: without validation data the
            # extra steps overfit a small data set (tests/test_point_process.py)
            steps = MIN_STEPS_PER_EPOCH if val is not None else 1
            for chunk in _epoch_batches(len(seqs), self.batch_size, rng, steps):
                batch = pad_events([seqs[i] for i in chunk], device)
                time_ll, mark_ll, survival, _ = net.event_terms(batch)
                n_events = batch.mask.sum()
                loss = -(time_ll.sum() + mark_ll.sum() + survival.sum()) / n_events
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimizer.step()
                total += float(loss.detach()) * float(n_events)
                count += float(n_events)
            history.append(total / count)
            score = None
            if val is not None:
                net.eval()
                terms = _terms(net, val, device, self.batch_size)
                score = sum(float(t.sum() + m.sum() + s) for t, m, s in terms) / sum(
                    len(s.times) for s in val
                )
                val_history.append(score)
                if score > best:
                    best, waited = score, 0
                    best_weights = copy.deepcopy(net.state_dict())
                else:
                    waited += 1
            report(epoch, history[-1], None if score is None else f"{score:.4f}")
            if val is not None and waited >= self.patience:
                break
        close()
        if best_weights is not None:
            net.load_state_dict(best_weights)
        net.eval()
        return history, val_history

    # ------------------------------------------------------------------ likelihood
    def _terms(self, seqs):
        return _terms(self.network_, seqs, self._device, self.batch_size)

    @threaded
    def score_samples(self, X, convention: str = "window") -> np.ndarray:
        """Log-likelihood of each sequence (not normalised; see Notes of the class).

        ``convention="window"``: every event on ``[t_start, t_end]`` plus the survival term;
        ``"easytpp"``: events ``2..N`` given the first, no survival term.
        """
        _check_normalisation("event", convention)
        seqs = self._sequences(X, "score_samples")
        out = []
        for t, m, s in self._terms(seqs):
            out.append(
                float(t.sum() + m.sum() + s)
                if convention == "window"
                else float(t[1:].sum() + m[1:].sum())
            )
        return _finite(np.array(out), "the log-likelihood")

    @threaded
    def score(self, X, normalize: str = "event", convention: str = "window") -> float:
        """Mean log-likelihood: per event (default) or per time unit (``normalize="time"``).

        See the class Notes for the exact definition and the ``"easytpp"`` convention.
        """
        _check_normalisation(normalize, convention)
        seqs = self._sequences(X, "score")
        total = self.score_samples(seqs, convention).sum()
        if normalize == "time":
            return float(total / sum(s.t_end - s.t_start for s in seqs))
        n = sum(len(s.times) - (convention == "easytpp") for s in seqs)
        if n == 0:
            raise ValueError("the easytpp convention needs sequences with at least 2 events")
        return float(total / n)

    @threaded
    def score_events(self, X) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Per sequence: the time and mark log-likelihood of each event ``(N,)`` and the
        survival term of the open interval."""
        seqs = self._sequences(X, "score_events")
        terms = self._terms(seqs)
        _finite(np.array([t.sum() + m.sum() + s for t, m, s in terms]), "the log-likelihood")
        return [(t.astype(np.float64), m.astype(np.float64), float(s)) for t, m, s in terms]

    # ------------------------------------------------------------------ prediction
    def _decoded(self, seqs) -> list[Decoded]:
        """Per sequence, the next-event distribution after each prefix (``N + 1`` rows)."""
        net, out = self.network_, []
        with torch.no_grad():
            for chunk in _by_length(seqs, self.batch_size):
                batch = pad_events([seqs[i] for i in chunk], self._device)
                *_, dec = net.event_terms(batch)
                for row, i in enumerate(chunk):
                    n = len(seqs[i].times) + 1
                    out.append((i, Decoded(*(p[row, :n].double().cpu() for p in dec))))
        return [d for _, d in sorted(out, key=lambda x: x[0])]

    @threaded
    def predict(self, X, every_prefix: bool = False, kind: str = "mean"):
        """Next event time and most probable mark.

        Parameters
        ----------
        X : event data
        every_prefix : bool, default False
            False: the event after each sequence's last one; returns ``(times, marks)``, two
            ``(n_sequences,)`` arrays. True: after every prefix (0..N events); returns a list
            with one ``(times, marks)`` pair of ``(N + 1,)`` arrays per sequence.
        kind : {"mean", "median", "mode"}, default "mean"
            Which point of the next gap's distribution ``tau | h`` is added to the last
            event time ``t_last`` (``t_start`` for the empty prefix; the window's end is not
            conditioned on). "mean": ``E[min(tau, max_gap_)]``, the mean of the gap capped at
            the largest gap seen in ``fit`` (exact, in closed form), for squared errors: the
            uncapped mean of a log-normal mixture is dominated by its widest component, far
            beyond any gap the data had. "median": the gap's median, for absolute errors.
            "mode": the most probable gap on a log scale (the peak of the density of
            ``log tau``).
        """
        point = point_summary(kind, getattr(self, "max_gap_", None))  # None: saved before it
        every_prefix = boolean(every_prefix, "every_prefix")  # "no" would read as True
        seqs = self._sequences(X, "predict")
        out = []
        for s, dec in zip(seqs, self._decoded(seqs), strict=True):
            last = np.concatenate([[s.t_start], s.times])
            out.append((last + point(dec).numpy(), dec.mark_log_probs.argmax(-1).numpy()))
        times = _finite(np.array([t[-1] for t, _ in out]), "the predicted next-event time")
        if every_prefix:
            return out
        return times, np.array([m[-1] for _, m in out])

    @threaded
    def predict_proba(self, X, every_prefix: bool = False):
        """Next-mark probabilities: ``(n_sequences, n_marks)`` after each sequence's end, or
        per sequence ``(N + 1, n_marks)`` after every prefix."""
        every_prefix = boolean(every_prefix, "every_prefix")
        seqs = self._sequences(X, "predict_proba")
        probs = [dec.mark_log_probs.exp().numpy() for dec in self._decoded(seqs)]
        last = _finite(np.stack([p[-1] for p in probs]), "the next-mark probabilities")
        return probs if every_prefix else last

    @threaded
    def intensity(self, sequence, times) -> np.ndarray:
        """Conditional intensity of each mark, ``(len(times), n_marks)``, at ``times`` within
        one sequence's window: ``lambda_k(t) = p(t - t_last, k | h) / S(t - t_last | h)``,
        ``t_last`` the last event before ``t`` (``t_start`` if none) and ``h`` the state after
        it. Their sum is the total intensity; its integral between events is ``-log S``.
        """
        if isinstance(sequence, (EventSequence, dict)) or isinstance(sequence, tuple):
            sequence = [sequence]
        seqs = self._sequences(sequence, "intensity")
        if len(seqs) != 1:
            raise ValueError(f"intensity takes one sequence, got {len(seqs)}")
        s = seqs[0]
        times = np.atleast_1d(real_values(times, "times"))
        if times.ndim != 1:
            raise ValueError(f"times must be one-dimensional, got shape {times.shape}")
        if times.size == 0:  # no time asked: no intensity (not numpy's empty-reduction error)
            return np.zeros((0, self.n_marks_))
        if np.isnan(times).any() or times.min() < s.t_start or times.max() > s.t_end:
            raise ValueError(f"times must lie in the sequence's window [{s.t_start}, {s.t_end}]")
        dec = self._decoded(seqs)[0]
        j = np.searchsorted(s.times, times, side="left")  # events strictly before each time
        last = np.concatenate([[s.t_start], s.times])[j]
        tau = torch.as_tensor(np.maximum(times - last, 1e-12), dtype=torch.float64)
        at = Decoded(*(p[torch.as_tensor(j)] for p in dec))
        per_mark = torch.logsumexp(at._log_components(tau), -1) - torch.log(tau).unsqueeze(-1)
        return torch.exp(per_mark - at.log_survival(tau).unsqueeze(-1)).numpy()

    # ------------------------------------------------------------------ simulation
    @threaded
    def sample(
        self,
        n_sequences: int,
        t_end: float,
        history=None,
        t_start: float = 0.0,
        random_state: int | None = None,
        max_events: int = 100_000,
    ) -> list[EventSequence]:
        """Simulate ``n_sequences`` sequences up to ``t_end`` (exact ancestral sampling).

        ``history`` (one sequence, or ``n_sequences``) is continued: sampling starts from its
        state at its ``t_end`` (no event in its open interval: the first new gap is drawn
        given ``tau > t_end - t_last`` by rejection), and only the new events are returned, on
        ``[history t_end, t_end]``. ``random_state`` defaults to the estimator's.
        """
        _check_fitted(self, "sample")
        n_sequences = positive_int(n_sequences, "n_sequences")
        max_events = positive_int(max_events, "max_events")
        t_end, t_start = finite_float(t_end, "t_end"), finite_float(t_start, "t_start")
        seed = self.random_state if random_state is None else random_state
        gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
        if history is not None:
            if isinstance(history, (EventSequence, dict)) or (
                isinstance(history, tuple) and len(history) in (2, 4)
            ):
                history = [history]  # one sequence
            hist = self._sequences(history, "sample")
            if len(hist) == 1:
                hist = hist * n_sequences
            if len(hist) != n_sequences:
                raise ValueError(f"history has {len(hist)} sequences; give 1 or {n_sequences}")
            streams = [self.start_stream(h.t_start).update(h.times, h.marks) for h in hist]
            starts = [h.t_end for h in hist]
        else:
            streams = [self.start_stream(t_start) for _ in range(n_sequences)]
            starts = [float(t_start)] * n_sequences
        if any(t_end < s for s in starts):
            raise ValueError(f"t_end={t_end} is before the start of sampling ({max(starts)})")
        return [
            st._simulate(t0, float(t_end), gen, max_events)
            for st, t0 in zip(streams, starts, strict=True)
        ]

    # ------------------------------------------------------------------ streaming
    def start_stream(self, t_start: float = 0.0) -> EventStream:
        """A new live sequence starting at ``t_start``; feed events with ``update``."""
        _check_fitted(self, "start_stream")
        return EventStream(self, t_start)

    @threaded
    def update(self, new_events) -> AarenPointProcess:
        """Absorb new events into ``streams_`` in O(1) time and memory per event (Aaren, GRU).

        Sequence ``i`` of ``new_events`` continues ``streams_[i]``; streams that do not exist
        yet start at that sequence's ``t_start``. Each stream then gives ``predict``,
        ``predict_proba`` and ``log_likelihood`` equal to one pass over all its events. All
        events are checked before any stream changes, and the advanced streams replace
        ``streams_`` only once every one succeeded: a failed update leaves them as they were.
        """
        seqs = self._sequences(new_events, "update")
        for i, s in enumerate(seqs[: len(self.streams_)]):
            if s.times[0] < self.streams_[i].last_time:
                raise ValueError(
                    f"sequence {i}: time {s.times[0]} is before the stream's last event "
                    f"{self.streams_[i].last_time}"
                )
        streams = [copy.copy(stream) for stream in self.streams_]  # update rebinds, so a
        for i, s in enumerate(seqs):  # shallow copy keeps the old streams intact
            if i == len(streams):
                streams.append(self.start_stream(s.t_start))
            streams[i].update(s.times, s.marks)
        self.streams_ = streams
        return self

    def __setstate__(self, state: dict) -> None:
        # the streams share the network; after loading they follow the estimator's device
        super().__setstate__(state)
        if getattr(self, "_is_fitted", False):
            relink_streams(self.streams_, self.network_, self._device)

    @classmethod
    def get_test_params(cls, parameter_set: str = "default"):
        """Small, fast settings for tests."""
        return [
            {"d_model": 8, "n_layers": 1, "n_heads": 2, "max_epochs": 2, "random_state": 0},
            {
                "backbone": "gru",
                "d_model": 8,
                "n_layers": 1,
                "n_components": 2,
                "max_epochs": 1,
                "random_state": 1,
            },
        ]


def point_summary(kind: str, cap: float | None):
    """The ``Decoded -> gap`` summary ``predict``'s ``kind`` names (``cap``: the mean's,
    None for the uncapped mean of a model saved before the cap was kept)."""
    if kind not in POINT_KINDS:
        raise ValueError(f"kind must be one of {POINT_KINDS}, got {kind!r}")
    if kind == "median":
        return lambda dec: dec.quantile(0.5)
    if kind == "mode":
        return lambda dec: dec.mode()
    return (lambda dec: dec.mean()) if cap is None else (lambda dec: dec.capped_mean(cap))


def _epoch_batches(
    n: int, batch_size: int, rng: np.random.Generator, min_steps: int = MIN_STEPS_PER_EPOCH
) -> list[np.ndarray]:
    """One epoch's batches of sequence indices: the sequences once in a random order, or
    again (reshuffled) until the epoch has ``min_steps`` optimiser steps. A small data set
    (hawkes1: 38 sequences, 2 steps) would otherwise train a handful of steps in
    ``max_epochs`` epochs; taxi and Stack Overflow (1,400 sequences, 44 steps) read once."""
    batches: list[np.ndarray] = []
    while not batches or len(batches) < min_steps:
        order = rng.permutation(n)
        batches.extend(order[start : start + batch_size] for start in range(0, n, batch_size))
    return batches


def _by_length(seqs, batch_size: int):
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i].times))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _terms(net: TPPNet, seqs, device, batch_size: int):
    """Per sequence: time terms ``(N,)``, mark terms ``(N,)`` (float64 numpy), survival."""
    out: list = [None] * len(seqs)
    with torch.no_grad():
        for chunk in _by_length(seqs, batch_size):
            batch = pad_events([seqs[i] for i in chunk], device)
            time_ll, mark_ll, survival, _ = net.event_terms(batch)
            for row, i in enumerate(chunk):
                n = len(seqs[i].times)
                out[i] = (
                    time_ll[row, :n].double().cpu().numpy(),
                    mark_ll[row, :n].double().cpu().numpy(),
                    float(survival[row]),
                )
    return out


class EventStream(PortableStateMixin):
    """One live event sequence read one event at a time through the encoder's ``step``.

    Made by ``AarenPointProcess.start_stream``. It holds the encoder state, the last event
    time and the running log-likelihood, so each ``update`` costs O(1) time and memory with
    the Aaren and GRU encoders (the Transformer's KV cache grows with the stream). After any
    sequence of updates, ``log_likelihood``, ``predict`` and ``predict_proba`` equal one
    parallel pass over all the events.
    """

    def __init__(self, estimator: AarenPointProcess, t_start: float = 0.0) -> None:
        t_start = finite_float(t_start, "t_start")  # "0" or True are not times
        if t_start < 0:
            raise ValueError(f"t_start must be finite and >= 0, got {t_start}")
        self._net = estimator.network_
        self._device = estimator._device
        self._max_gap = getattr(estimator, "max_gap_", None)
        self.n_marks = estimator.n_marks_
        self.t_start = t_start
        self.last_time = t_start
        self.n_events = 0
        self._ll = 0.0  # all event terms
        self._first_ll = 0.0  # the first event's (excluded by the EasyTPP convention)
        with torch.no_grad():
            t0 = torch.tensor([t_start], dtype=torch.float64, device=self._device)
            enc = self._net.encoder
            state = enc.init_state(1, self._device, self._net.head.weight.dtype)
            y, self._state = self._net.step(self._net.start_tokens(t0), state, t0)
            self._dec = self._net.decode(y[0])

    def update(self, times, marks=None) -> EventStream:
        """Absorb one event or several (``times`` scalar or 1-D; ``marks`` likewise, default
        0). Everything is checked before the state changes; returns the stream."""
        # as given: the sequence check below refuses text and booleans (a float cast here
        # would have read "1.5" and True as times)
        times = np.atleast_1d(np.asarray(times))
        marks = np.zeros(len(times), np.int64) if marks is None else np.atleast_1d(marks)
        seq = as_event_sequences([(times, marks, self.last_time, None)])[0]
        _check_marks([seq], self.n_marks)
        _check_gaps([seq])
        net = self._net
        with torch.no_grad():
            for t, k in zip(seq.times, seq.marks, strict=True):
                tau = torch.tensor(t - self.last_time, dtype=torch.float64)
                tau32 = tau.to(net.head.weight.dtype).clamp_min(net.min_inter_time)
                time_ll, mark_ll = self._dec.event_log_likelihood(
                    tau32, torch.tensor(int(k), device=self._device)
                )
                ll = float(time_ll) + float(mark_ll)
                if self.n_events == 0:
                    self._first_ll = ll
                self._ll += ll
                token = net.tokens(
                    tau.to(net.head.weight.dtype).view(1).to(self._device),
                    torch.tensor([t], dtype=torch.float64, device=self._device),
                    torch.tensor([int(k)], device=self._device),
                )
                time = torch.tensor([t], dtype=torch.float64, device=self._device)
                y, self._state = net.step(token, self._state, time)
                self._dec = net.decode(y[0])
                self.last_time = float(t)
                self.n_events += 1
        return self

    def log_likelihood(self, t_end: float | None = None, convention: str = "window") -> float:
        """The sequence's log-likelihood so far (see ``AarenPointProcess`` Notes): with
        ``convention="window"`` on ``[t_start, t_end]`` (default ``t_end``: the last event),
        including the survival term; ``"easytpp"``: events 2.. only."""
        _check_normalisation("event", convention)
        if convention == "easytpp":
            return self._ll - self._first_ll
        t_end = self.last_time if t_end is None else finite_float(t_end, "t_end")
        if t_end < self.last_time:
            raise ValueError(f"t_end={t_end} is before the last event time {self.last_time}")
        _check_gap(t_end - self.last_time, "the stream")
        with torch.no_grad():
            gap = torch.tensor(t_end - self.last_time, dtype=self._net.head.weight.dtype)
            value = self._ll + float(self._dec.log_survival(gap))
        return float(_finite(np.array([value]), "the log-likelihood")[0])

    def predict(self, kind: str = "mean") -> tuple[float, int]:
        """Next event time and most probable mark (``kind``: as
        ``AarenPointProcess.predict``'s)."""
        point = point_summary(kind, getattr(self, "_max_gap", None))  # None: an old stream
        # in float64, as AarenPointProcess.predict (the mode's search needs the precision)
        decoded = Decoded(*(p.double() for p in self._dec))
        return (
            self.last_time + float(point(decoded)),
            int(self._dec.mark_log_probs.argmax()),
        )

    def predict_proba(self) -> np.ndarray:
        """Next-mark probabilities ``(n_marks,)``."""
        return self._dec.mark_log_probs.exp().double().cpu().numpy()

    def _simulate(self, t0: float, t_end: float, gen, max_events: int) -> EventSequence:
        stream = copy.copy(self)
        times, marks = [], []
        floor = t0 - stream.last_time  # first gap must exceed it (no event in the open interval)
        for n in range(max_events):
            if n and n % PROJECT_EVERY == 0:
                _refuse_a_window_too_long(n, stream.last_time - t0, t_end - t0, max_events)
            for _attempt in range(10_000):
                tau, mark = stream._dec.sample(gen)
                if float(tau) > floor:
                    break
            else:
                raise RuntimeError("could not draw a gap past the history's end (survival ~ 0)")
            t = stream.last_time + float(tau)
            if t > t_end:
                break
            stream.update(t, int(mark))
            times.append(t)
            marks.append(int(mark))
            floor = 0.0
        else:
            raise ValueError(
                f"more than max_events={max_events} events before t_end={t_end}: shorten "
                "t_end or raise max_events"
            )
        return EventSequence(np.array(times), np.array(marks, dtype=np.int64), t0, t_end)
