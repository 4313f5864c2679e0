"""Event sequences for temporal point processes: loaders, input formats and simulators.

An event sequence is an ``EventSequence``: absolute event ``times`` (non-decreasing, float64),
integer ``marks`` (0-based) and the observation window ``[t_start, t_end]``. Everything that
takes event data (``AarenPointProcess``, ``HawkesPointProcess``) accepts, through
``as_event_sequences``,

- a list of ``(times, marks)`` pairs, or ``(times, marks, t_start, t_end)`` tuples;
- a list of 1-D time arrays (unmarked data: one mark, 0);
- a pandas long table with columns ``seq_id``, ``time`` and (optionally) ``mark``, and
  optionally per-sequence ``t_start`` / ``t_end`` columns;
- EasyTPP records: dicts with ``time_since_start`` and ``type_event``;
- tick-style realisations: per sequence, a list of per-node (per-mark) arrays of times;
- a list of ``EventSequence``.

Defaults: ``t_start = 0`` and ``t_end`` = the last event time. Tables are read in row order
within each ``seq_id`` (not sorted), so decreasing times are an error in every format.

``load_event_sequences(name)`` reads, in order, ``$AAREN_TS_DATA`` (``<root>/tpp/<name>/`` or
``<root>/tpp/synthetic_hawkes/``), the cache folder (``$AAREN_TS_CACHE``, else
``~/.cache/aaren_ts``), then downloads into the cache (``DataUnavailableError``, one line
that says where to put the file, where none works). Every file must match its pinned
SHA-256; the sets without one (``taobao``, ``amazon``, ``retweet``) load only with
``allow_unpinned=True``.
``make_hawkes`` and ``make_sine_poisson`` simulate exactly (Ogata thinning, whose bound is
exact for exponential kernels and for a bounded rate).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._checks import (
    MAX_EVENTS,
    boolean,
    expected_events_fit,
    finite_float,
    positive_int,
    time_span,
)
from ._files import (
    cache_dir,
    check_sha256,
    fetch,
    local_roots,
    unavailable,
    write_atomically,
)


class EventSequence(NamedTuple):
    """One event sequence on the observation window ``[t_start, t_end]``."""

    times: np.ndarray  # (N,) float64, non-decreasing, within [t_start, t_end]
    marks: np.ndarray  # (N,) int64, 0-based
    t_start: float
    t_end: float


# ---------------------------------------------------------------------- input formats
def _one_dimensional(values, name: str, where: str) -> np.ndarray:
    """``values`` as a 1-D array: a column vector is refused, not silently flattened (a
    ``(n, 2)`` array of (time, mark) pairs would otherwise pass as 2n times)."""
    arr = np.asarray(values)
    if arr.ndim == 0:  # a single event given as a number
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{where}: {name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind in "cb" and arr.size:  # complex or boolean: not an event time / mark
        kind = "complex numbers" if arr.dtype.kind == "c" else "booleans"
        raise TypeError(f"{where}: {name} must be real numbers, got {kind}")
    # text, even text that reads as a number ("1.5"), which numpy would otherwise parse
    if arr.dtype.kind in "US" or (
        arr.dtype.kind == "O" and any(isinstance(v, (str, bytes)) for v in arr)
    ):
        raise TypeError(f"{where}: {name} must be real numbers, got text")
    return arr


def _sequence(times, marks, t_start, t_end, where: str) -> EventSequence:
    times = _one_dimensional(times, "times", where)
    try:
        times = times.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{where}: times must be numeric, got {err}") from err
    if marks is None:
        marks = np.zeros(len(times), dtype=np.int64)
    else:
        raw = _one_dimensional(marks, "marks", where)
        if raw.size and not (
            np.issubdtype(raw.dtype, np.integer)
            or (np.issubdtype(raw.dtype, np.floating) and np.all(raw == np.round(raw)))
        ):
            raise TypeError(f"{where}: marks must be integers, got dtype {raw.dtype}")
        marks = raw.astype(np.int64)
    if len(marks) != len(times):
        raise ValueError(f"{where}: {len(times)} times but {len(marks)} marks")
    if len(times) == 0:
        raise ValueError(f"{where}: empty sequence (no events)")
    if np.isnan(times).any():
        raise ValueError(f"{where}: NaN event times")
    if (times < 0).any():
        raise ValueError(f"{where}: negative event times")
    if np.isinf(times).any():
        raise ValueError(f"{where}: infinite event times")
    if (np.diff(times) < 0).any():
        i = int(np.argmax(np.diff(times) < 0))
        raise ValueError(
            f"{where}: times must be non-decreasing; times[{i + 1}]={times[i + 1]} < "
            f"times[{i}]={times[i]}"
        )
    if (marks < 0).any():
        raise ValueError(f"{where}: negative marks")
    t_start = 0.0 if t_start is None else float(t_start)
    t_end = float(times[-1]) if t_end is None else float(t_end)
    if not np.isfinite(t_start) or t_start < 0:
        raise ValueError(f"{where}: t_start must be finite and >= 0, got {t_start}")
    if times[0] < t_start:
        raise ValueError(f"{where}: first event time {times[0]} is before t_start={t_start}")
    if not np.isfinite(t_end) or t_end < times[-1]:
        raise ValueError(f"{where}: t_end={t_end} is before the last event time {times[-1]}")
    return EventSequence(times, marks, t_start, t_end)


def _is_times_array(x: Any) -> bool:
    try:
        a = np.asarray(x)
    except (TypeError, ValueError):
        return False
    return a.ndim == 1 and a.dtype != object and np.issubdtype(a.dtype, np.number)


def _from_item(item: Any, i: int, t_start, t_end) -> EventSequence:
    where = f"sequence {i}"
    if isinstance(item, EventSequence):
        return _sequence(item.times, item.marks, item.t_start, item.t_end, where)
    if isinstance(item, dict):  # EasyTPP record
        if "time_since_start" not in item:
            raise TypeError(f"{where}: an EasyTPP record needs 'time_since_start' and 'type_event'")
        return _sequence(item["time_since_start"], item.get("type_event"), t_start, t_end, where)
    if isinstance(item, tuple) and len(item) == 4:
        return _sequence(item[0], item[1], item[2], item[3], where)
    if isinstance(item, np.ndarray) and item.ndim == 1 and item.dtype != object:
        return _sequence(item, None, t_start, t_end, where)
    if isinstance(item, tuple) and len(item) == 2:
        return _sequence(item[0], item[1], t_start, t_end, where)
    if isinstance(item, list) and item and all(np.ndim(a) == 0 for a in item):
        return _sequence(item, None, t_start, t_end, where)  # a plain list of times
    if isinstance(item, list) and item and all(_is_times_array(a) for a in item):
        # tick-style: one array of times per node (mark)
        nodes = [np.asarray(a, dtype=np.float64).reshape(-1) for a in item]
        times = np.concatenate(nodes)
        marks = np.concatenate([np.full(len(a), k, dtype=np.int64) for k, a in enumerate(nodes)])
        order = np.argsort(times, kind="stable")
        return _sequence(times[order], marks[order], t_start, t_end, where)
    raise TypeError(
        f"{where}: expected a (times, marks) tuple, a (times, marks, t_start, t_end) tuple, "
        f"an array of times, an EasyTPP dict or a tick-style list of per-node arrays; got "
        f"{type(item).__name__}"
    )


def _from_frame(frame) -> list[EventSequence]:
    missing = {"seq_id", "time"} - set(frame.columns)
    if missing:
        raise ValueError(f"the event table needs columns 'seq_id' and 'time'; missing {missing}")
    out = []
    for key, g in frame.groupby("seq_id", sort=False):
        t_start = g["t_start"].iloc[0] if "t_start" in g.columns else None
        t_end = g["t_end"].iloc[0] if "t_end" in g.columns else None
        marks = g["mark"].to_numpy() if "mark" in g.columns else None
        out.append(_sequence(g["time"].to_numpy(), marks, t_start, t_end, f"seq_id {key!r}"))
    return out


def as_event_sequences(data: Any, t_start=None, t_end=None) -> list[EventSequence]:
    """Any supported input format as a validated list of ``EventSequence``.

    Parameters
    ----------
    data : list or pandas.DataFrame
        See the module docstring for the formats.
    t_start, t_end : float or sequence of float, optional
        Observation windows for formats that carry none (one value, or one per sequence).
        Default ``t_start = 0``, ``t_end`` = each sequence's last event time.

    Raises
    ------
    ValueError
        Empty data or sequences, decreasing, negative, NaN or infinite times, negative marks,
        events outside ``[t_start, t_end]``.
    TypeError
        An unrecognised format.

    Examples
    --------
    >>> from aaren_ts.datasets import as_event_sequences
    >>> seqs = as_event_sequences([([0.5, 1.0, 2.5], [0, 1, 0])], t_end=3.0)
    >>> seqs[0].t_start, seqs[0].t_end, seqs[0].marks.tolist()
    (0.0, 3.0, [0, 1, 0])
    >>> tick = [[[0.5, 2.5], [1.0]]]  # one realisation, two nodes
    >>> as_event_sequences(tick, t_end=3.0)[0].marks.tolist()
    [0, 1, 0]
    """
    try:
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            if t_start is not None or t_end is not None:
                raise ValueError("a table carries its windows in 't_start' / 't_end' columns")
            seqs = _from_frame(data)
            if not seqs:
                raise ValueError("the event table is empty")
            return seqs
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    if isinstance(data, (EventSequence, dict)) or (
        isinstance(data, tuple) and len(data) in (2, 4) and not isinstance(data[0], tuple)
    ):
        raise TypeError("pass a list of sequences (wrap a single sequence in a list)")
    if not isinstance(data, Sequence) or isinstance(data, str):
        raise TypeError(
            f"event data must be a list of sequences or a DataFrame, got {type(data).__name__}"
        )
    if len(data) == 0:
        raise ValueError("no sequences given (empty list)")
    n = len(data)
    starts = _per_sequence(t_start, n, "t_start")
    ends = _per_sequence(t_end, n, "t_end")
    return [_from_item(item, i, starts[i], ends[i]) for i, item in enumerate(data)]


def _per_sequence(value, n: int, name: str) -> list:
    if value is None or np.ndim(value) == 0:
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} values for {n} sequences")
    return value


def to_easytpp(sequences: Sequence[EventSequence], dim_process: int | None = None) -> list[dict]:
    """Sequences as EasyTPP records (``time_since_last_event`` counts from the first event)."""
    sequences = as_event_sequences(sequences)
    k = dim_process or int(max(s.marks.max() for s in sequences)) + 1
    return [
        {
            "dim_process": k,
            "seq_idx": i,
            "seq_len": len(s.times),
            "time_since_start": s.times.tolist(),
            "time_since_last_event": np.diff(s.times, prepend=s.times[0]).tolist(),
            "type_event": s.marks.tolist(),
        }
        for i, s in enumerate(sequences)
    ]


# ---------------------------------------------------------------------- loaders
_EASYTPP_URL = "https://huggingface.co/datasets/easytpp/{name}/resolve/main/{split}.json"
_IFL_URL = "https://raw.githubusercontent.com/shchur/ifl-tpp/master/data/synth/{name}.npz"


@dataclass(frozen=True)
class EventSource:
    """Where one file of an event data set comes from and what it must hash to."""

    path: str  # relative to ``<root>/tpp/``
    url: str
    sha256: str | None  # None: no pinned checksum (refused unless allow_unpinned=True)


def _easytpp(name: str, sums: dict[str, str]) -> dict[str, EventSource]:
    return {
        split: EventSource(
            f"{name}/{split}.json",
            _EASYTPP_URL.format(name=name, split="dev" if split == "valid" else split),
            sums.get(split),
        )
        for split in ("train", "valid", "test")
    }


EVENT_SOURCES: dict[str, dict[str, EventSource]] = {
    "taxi": _easytpp(
        "taxi",
        {
            "train": "0c54b53482e792f8cd813195e76e08466a68761b35c34cd503a012b41525d989",
            "valid": "9ae91594723cf9cba7333efa18f85d309f5ee76336cc25d5811d0364f05a3ddf",
            "test": "dc1e765b6626c2a231ab026606e29864c082807354066e0307494fb738bcc059",
        },
    ),
    "stackoverflow": _easytpp(
        "stackoverflow",
        {
            "train": "809e68fbaba02f657b3dc2cb02ecb4df1f58c4fc8f9fbccdfa83defe71ef5413",
            "valid": "4c4e595342c4c2624a77502695654ce3bec157242be30b6f3654575791741c6a",
            "test": "e531fafc1cc2c109fcfe0a312e43beddda16725ec7c2a98b651609550f9ffb51",
        },
    ),
    "taobao": _easytpp("taobao", {}),
    "amazon": _easytpp("amazon", {}),
    "retweet": _easytpp("retweet", {}),
    **{
        name: {"all": EventSource(f"synthetic_hawkes/{name}.npz", _IFL_URL.format(name=name), sha)}
        for name, sha in [
            ("hawkes1", "09f1a393561c3aa702f1a55f1b047f7c50b2d8dcbc4a989f1ef8926b59125b07"),
            ("hawkes2", "edf46014184e23a912849d31a79c7b2007bf16044a848eb0e212bdd2d2880db5"),
            ("poisson", "2eeff165a864373fe384d65c7439ad1c003cce54c0c6397063b09879c871e5b9"),
        ]
    },
}


_SPLITS = ("train", "valid", "test")


def _fetch(name: str, source: EventSource, target: Path, allow_unpinned: bool) -> None:
    data = fetch(source.url, name, f"tpp/{source.path}")
    check_sha256(data, source.sha256, source.path, f"download of {source.url}", allow_unpinned)
    write_atomically(target, data)


def _sources(name: str, split: str | None = None) -> dict[str, EventSource]:
    """``name``'s files: of ``split``, or every split (the synthetic sets: their one file)."""
    if not isinstance(name, str) or name not in EVENT_SOURCES:
        raise ValueError(f"unknown event data set {name!r}; available: {sorted(EVENT_SOURCES)}")
    if split is not None and split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    sources = EVENT_SOURCES[name]
    return dict(sources) if split is None or "all" in sources else {split: sources[split]}


def _local(source: EventSource, cache: bool = True) -> Path | None:
    """The first local copy of ``source`` (not verified), or None."""
    roots = local_roots(cache)
    paths = (p for root in roots for p in (root / "tpp" / source.path, root / source.path))
    return next((p for p in paths if p.is_file()), None)


def _missing(name: str, split: str | None = None, cache: bool = True) -> dict[str, str | None]:
    return {
        f"tpp/{source.path}": source.url
        for source in _sources(name, split).values()
        if _local(source, cache) is None
    }


def event_data_path(
    name: str, split: str, download: bool = True, allow_unpinned: bool = False
) -> Path:
    """The verified local file of ``name``'s ``split``, downloading it into the cache if needed
    (a file without a pinned checksum only with ``allow_unpinned``).

    Raises ``DataUnavailableError`` where it is neither local nor downloadable."""
    download, allow_unpinned = (
        boolean(download, "download"),
        boolean(allow_unpinned, "allow_unpinned"),
    )
    source = EVENT_SOURCES[name][split]
    path = _local(source)
    if path is not None:
        check_sha256(path.read_bytes(), source.sha256, source.path, str(path), allow_unpinned)
        return path
    if not download:
        raise unavailable(
            f"{name}/{split}", f"tpp/{source.path}", "download=False", "pass download=True"
        )
    target = cache_dir() / "tpp" / source.path
    _fetch(name, source, target, allow_unpinned)
    return target


# shchur/ifl-tpp's sequences have no recorded window; we use a contiguous 60/20/20 split.
_SYNTHETIC_SPLIT = (0.6, 0.2)


def load_event_sequences(
    name: str, split: str | None = None, download: bool = True, allow_unpinned: bool = False
) -> dict[str, list[EventSequence]] | list[EventSequence]:
    """Load an event data set as ``EventSequence`` lists.

    Parameters
    ----------
    name : str
        EasyTPP sets (JSON): ``taxi``, ``stackoverflow``, ``taobao``, ``amazon``, ``retweet``;
        shchur/ifl-tpp synthetic sets (npz): ``hawkes1``, ``hawkes2``, ``poisson``.
    split : {"train", "valid", "test"}, optional
        One split (a list); default all three (a dict). The EasyTPP sets come split; the
        synthetic sets (64 sequences each) are split contiguously 60/20/20 (38/13/13).
    download : bool, default True
        Fetch missing files into the cache (``$AAREN_TS_CACHE`` or ``~/.cache/aaren_ts``).
    allow_unpinned : bool, default False
        Every file, downloaded or local, must match its pinned SHA-256. ``taobao``,
        ``amazon`` and ``retweet`` have no pinned checksum yet: they load only with
        ``allow_unpinned=True`` (a warning then reports the file's digest).

    Returns
    -------
    dict or list
        EasyTPP sequences keep EasyTPP's times: the first event at ``t_start = 0``,
        ``t_end`` = the last event. Synthetic sequences: ``t_start = 0``, ``t_end`` = the last
        event (the files record no window).

    Examples
    --------
    >>> from aaren_ts.datasets import load_event_sequences
    >>> taxi = load_event_sequences("taxi")  # doctest: +SKIP
    >>> len(taxi["train"]), len(taxi["valid"]), len(taxi["test"])  # doctest: +SKIP
    (1400, 200, 400)
    """
    _sources(name, split)  # checks the name and the split
    wanted = _SPLITS if split is None else (split,)
    if "all" in EVENT_SOURCES[name]:
        path = event_data_path(name, "all", download, allow_unpinned)
        with np.load(path, allow_pickle=False) as z:
            arrivals = z["arrival_times"]
        seqs = as_event_sequences([np.asarray(a, dtype=np.float64) for a in arrivals])
        a = round(len(seqs) * _SYNTHETIC_SPLIT[0])
        b = a + round(len(seqs) * _SYNTHETIC_SPLIT[1])
        parts = {"train": seqs[:a], "valid": seqs[a:b], "test": seqs[b:]}
    else:
        parts = {}
        for s in wanted:
            with open(event_data_path(name, s, download, allow_unpinned)) as f:
                parts[s] = as_event_sequences(json.load(f))
    return parts[split] if split is not None else {s: parts[s] for s in wanted}


# ---------------------------------------------------------------------- simulators
def _hawkes_params(baseline, adjacency, decay) -> tuple[np.ndarray, np.ndarray, float]:
    try:
        mu = np.atleast_1d(np.asarray(baseline, dtype=np.float64))
        alpha = np.asarray(adjacency, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"baseline and adjacency must be numbers: {err}") from None
    k = len(mu)
    if mu.ndim != 1 or alpha.size != k * k:
        raise ValueError(
            f"adjacency must be a {k}x{k} matrix (a row and a column per mark of the "
            f"baseline's {k}), got shape {alpha.shape}"
        )
    alpha = alpha.reshape(k, k)
    beta = finite_float(decay, "decay")
    if not (np.isfinite(mu).all() and np.isfinite(alpha).all()):
        raise ValueError("baseline and adjacency must be finite")
    if (mu <= 0).any() or (alpha < 0).any() or beta <= 0:
        raise ValueError("need baseline > 0, adjacency >= 0 and decay > 0")
    if np.max(np.abs(np.linalg.eigvals(alpha))) >= 1:
        raise ValueError("the adjacency's spectral radius must be < 1 (a stationary process)")
    return mu, alpha, beta


def make_hawkes(
    n_sequences: int = 64,
    t_end: float = 100.0,
    baseline=(0.2,),
    adjacency=((0.8,),),
    decay: float = 1.0,
    random_state: int | None = None,
    max_events: int = MAX_EVENTS,
) -> list[EventSequence]:
    """Exact simulation of a multivariate exponential-kernel Hawkes process on ``[0, t_end]``.

    Mark ``k`` has intensity ``mu_k + sum_j sum_{t_i^j < t} alpha_kj * beta *
    exp(-beta (t - t_i^j))`` (tick's ``HawkesExpKern`` convention: ``alpha`` is the branching
    matrix). Ogata thinning with the current intensity as the bound is exact here, since the
    intensity only decays between events.

    Sequences are non-empty: an empty draw is drawn again, at most ``_EMPTY_DRAWS`` times in
    a row. ``t_end`` must be finite and positive, and the stationary expected count
    ``t_end * sum((I - alpha)^-1 mu)`` at most ``max_events``: otherwise a ``ValueError``
    before anything is simulated.

    Examples
    --------
    >>> from aaren_ts.datasets import make_hawkes
    >>> seqs = make_hawkes(n_sequences=2, t_end=50.0, random_state=0)
    >>> len(seqs), seqs[0].t_end
    (2, 50.0)
    """
    n_sequences = positive_int(n_sequences, "n_sequences")
    _, t_end = time_span(0.0, t_end)
    max_events = positive_int(max_events, "max_events")
    mu, alpha, beta = _hawkes_params(baseline, adjacency, decay)
    rate = float(np.linalg.solve(np.eye(len(mu)) - alpha, mu).sum())  # stationary events/time
    expected_events_fit(rate * t_end, max_events, "make_hawkes")
    rng = np.random.default_rng(random_state)

    def draw():
        return simulate_hawkes(mu, alpha, beta, 0.0, t_end, np.zeros(len(mu)), rng, max_events)

    return [
        EventSequence(*_non_empty(draw, "make_hawkes", rate * t_end), 0.0, float(t_end))
        for _ in range(n_sequences)
    ]


# consecutive empty draws before a simulator that returns non-empty sequences gives up
_EMPTY_DRAWS = 1000


def _non_empty(draw, what: str, expected: float) -> tuple[np.ndarray, np.ndarray]:
    """The first ``(times, marks)`` of ``draw()`` with an event, redrawing an empty one at
    most ``_EMPTY_DRAWS`` times in a row; then a named error instead of drawing forever."""
    for _ in range(_EMPTY_DRAWS):
        times, marks = draw()
        if len(times):
            return times, marks
    raise ValueError(
        f"{what} drew {_EMPTY_DRAWS} empty sequences in a row (about {expected:.3g} events "
        "expected per sequence): lengthen t_end or raise the rate"
    )


def simulate_hawkes(mu, alpha, beta, t0, t_end, excite, rng, max_events=MAX_EVENTS):
    """Events of an exponential Hawkes process on ``(t0, t_end]`` by Ogata thinning, from
    the excitation ``excite_k = sum_j alpha_kj beta sum_l e^{-beta (t0 - t_l^j)}`` at ``t0``
    (zeros: no history). Returns ``(times, marks)`` arrays; more than ``max_events`` events
    before ``t_end`` (a supercritical process, or a window too long) is a ``ValueError``,
    not a silently truncated sequence."""
    times, marks = [], []
    t, excite = float(t0), np.array(excite, dtype=np.float64)
    while True:
        bound = mu.sum() + excite.sum()
        w = rng.exponential(1.0 / bound)
        t += w
        if not t <= t_end:  # also ends on a NaN time rather than looping
            break
        excite *= np.exp(-beta * w)
        lam = mu + excite
        if rng.uniform() * bound <= lam.sum():
            if len(times) == max_events:
                raise ValueError(
                    f"more than max_events={max_events} events before t_end={t_end} (a "
                    "supercritical process, spectral radius of the adjacency >= 1, grows "
                    "without bound): shorten t_end or raise max_events"
                )
            k = int(rng.choice(len(mu), p=lam / lam.sum()))
            times.append(t)
            marks.append(k)
            excite += alpha[:, k] * beta
    return np.array(times, dtype=np.float64), np.array(marks, dtype=np.int64)


def make_sine_poisson(
    n_sequences: int = 64,
    t_end: float = 100.0,
    rate: float = 1.0,
    amplitude: float = 0.9,
    period: float = 10.0,
    random_state: int | None = None,
    max_events: int = MAX_EVENTS,
) -> list[EventSequence]:
    """Unmarked inhomogeneous Poisson process with intensity
    ``rate * (1 + amplitude * sin(2 pi t / period))`` on ``[0, t_end]`` (exact thinning).

    Sequences are non-empty (an empty draw is drawn again, at most ``_EMPTY_DRAWS`` times
    in a row); ``t_end`` must be finite and positive and ``rate * t_end`` at most
    ``max_events``, else a ``ValueError``.

    Examples
    --------
    >>> from aaren_ts.datasets import make_sine_poisson
    >>> seqs = make_sine_poisson(n_sequences=3, t_end=20.0, random_state=0)
    >>> [bool(s.times.max() <= 20.0) for s in seqs]
    [True, True, True]
    """
    n_sequences = positive_int(n_sequences, "n_sequences")
    _, t_end = time_span(0.0, t_end)
    max_events = positive_int(max_events, "max_events")
    if (
        not (rate > 0 and 0 <= amplitude <= 1 and period > 0)
        or not np.isfinite([rate, period]).all()
    ):
        raise ValueError("need a finite rate > 0, 0 <= amplitude <= 1 and a finite period > 0")
    bound = rate * (1 + amplitude)
    # the thinning draws Poisson(bound * t_end) candidates: bound that count too
    expected_events_fit(bound * t_end, max_events, "make_sine_poisson")
    rng = np.random.default_rng(random_state)

    def draw():
        n = rng.poisson(bound * t_end)
        t = np.sort(rng.uniform(0, t_end, n))
        intensity = rate * (1 + amplitude * np.sin(2 * np.pi * t / period))
        kept = t[rng.uniform(0, bound, n) <= intensity]
        return kept, np.zeros(len(kept), np.int64)

    return [
        EventSequence(*_non_empty(draw, "make_sine_poisson", rate * t_end), 0.0, t_end)
        for _ in range(n_sequences)
    ]
