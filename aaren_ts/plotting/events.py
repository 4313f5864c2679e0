"""Point-process diagnostics: the conditional intensity, and the time-rescaling QQ plot.

Time-rescaling theorem: if the model is the process that generated the events, the compensator
increments ``Lambda(t_i) - Lambda(t_{i-1}) = int_{t_{i-1}}^{t_i} lambda(t) dt`` (total intensity
over all marks, ``t_0 = t_start``) are independent Exp(1) draws. Their QQ plot against Exp(1)
quantiles, and a Kolmogorov-Smirnov statistic, show how far a fitted model is from that.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._mpl import figure_and_axes

# Each inter-event interval is integrated on panels whose edges shrink geometrically towards
# its left end (tau * 1e-8 ... tau * 0.1, tau): a log-normal hazard or a Hawkes kernel varies
# fastest right after an event, and Gauss-Legendre nodes never touch the event itself, where
# the intensity jumps.
_PANEL_EDGES = np.concatenate([[0.0], 10.0 ** np.arange(-8, 1)])


def _sequences(sequences: Any) -> list:
    from ..datasets.events import EventSequence, as_event_sequences

    if isinstance(sequences, (EventSequence, dict)) or (
        isinstance(sequences, tuple) and len(sequences) in (2, 4)
    ):
        sequences = [sequences]
    return as_event_sequences(sequences)


def _is_hawkes(model: Any) -> bool:
    return all(hasattr(model, name) for name in ("baseline_", "adjacency_", "decay_"))


def _hawkes_excitation(model: Any, seq: Any) -> np.ndarray:
    """``(N, K)``: ``S_i = sum_{l <= i} beta exp(-beta (t_i - t_l)) onehot(k_l)``, the kernel
    sums just after each event."""
    beta, n_marks = model.decay_, len(model.baseline_)
    out = np.zeros((len(seq.times), n_marks))
    prev, prev_t = np.zeros(n_marks), seq.t_start
    for i, (t, k) in enumerate(zip(seq.times, seq.marks, strict=True)):
        prev = prev * np.exp(-beta * (t - prev_t))
        prev[k] += beta
        out[i], prev_t = prev, t
    return out


def _hawkes_intensity(model: Any, seq: Any, times: np.ndarray) -> np.ndarray:
    """Exponential-kernel Hawkes intensity ``(len(times), K)`` from the fitted parameters."""
    excitation = _hawkes_excitation(model, seq)
    j = np.searchsorted(seq.times, times, side="left") - 1  # last event strictly before
    before = np.where(j[:, None] >= 0, excitation[np.maximum(j, 0)], 0.0)
    last = np.where(j >= 0, seq.times[np.maximum(j, 0)], seq.t_start)
    decayed = before * np.exp(-model.decay_ * (times - last))[:, None]
    return model.baseline_[None, :] + decayed @ model.adjacency_.T


def intensity(model: Any, sequence: Any, times: Any) -> np.ndarray:
    """Conditional intensity of each mark ``(len(times), n_marks)`` at ``times`` in one
    sequence: the model's own ``intensity`` method, or, for ``HawkesPointProcess`` (which has
    none), the exponential-kernel intensity of its fitted parameters."""
    times = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if hasattr(model, "intensity"):
        return np.asarray(model.intensity(sequence, times))
    if _is_hawkes(model):
        (seq,) = _sequences(sequence)
        return _hawkes_intensity(model, seq, times)
    raise TypeError(
        f"{type(model).__name__} has no intensity: need a fitted AarenPointProcess, "
        "HawkesPointProcess or a model with intensity(sequence, times)"
    )


def _closed_form(model: Any, seq: Any) -> np.ndarray:
    """Hawkes compensator increments: ``mu_tot tau_i + (1^T alpha S_{i-1}) (1 - e^{-beta
    tau_i}) / beta``."""
    beta = model.decay_
    tau = np.diff(np.concatenate([[seq.t_start], seq.times]))
    excitation = np.vstack([np.zeros(len(model.baseline_)), _hawkes_excitation(model, seq)[:-1]])
    kernel = excitation @ model.adjacency_.sum(0)
    return model.baseline_.sum() * tau + kernel * -np.expm1(-beta * tau) / beta


def _numerical(model: Any, seq: Any, n_nodes: int, chunk: int = 20_000) -> np.ndarray:
    """Compensator increments by composite Gauss-Legendre quadrature of the total intensity."""
    nodes, node_weights = np.polynomial.legendre.leggauss(n_nodes)
    lo, hi = _PANEL_EDGES[:-1], _PANEL_EDGES[1:]
    # unit-interval nodes and weights of every panel, flattened: (n_panels * n_nodes,)
    unit = ((hi - lo)[:, None] * (nodes + 1) / 2 + lo[:, None]).ravel()
    unit_w = ((hi - lo)[:, None] * node_weights / 2).ravel()
    start = np.concatenate([[seq.t_start], seq.times[:-1]])
    tau = seq.times - start
    points = (start[:, None] + tau[:, None] * unit).ravel()
    points = np.clip(points, seq.t_start, seq.t_end)
    values = np.concatenate(
        [intensity(model, seq, points[i : i + chunk]).sum(1) for i in range(0, len(points), chunk)]
    )
    return tau * (values.reshape(len(tau), -1) @ unit_w)


def rescaled_times(
    model: Any, sequences: Any, *, method: str = "auto", n_nodes: int = 16, pooled: bool = True
) -> np.ndarray | list[np.ndarray]:
    """Compensator increments ``Lambda(t_i) - Lambda(t_{i-1})`` of every event (time-rescaling).

    Under the true model they are i.i.d. Exp(1).

    Parameters
    ----------
    model : fitted AarenPointProcess, HawkesPointProcess, or any model with
        ``intensity(sequence, times) -> (len(times), n_marks)``
    sequences : event data
        One sequence or several, in any format of ``aaren_ts.datasets.as_event_sequences``.
    method : {"auto", "closed", "numerical"}, default "auto"
        "closed": the exact compensator of an exponential Hawkes process; "numerical":
        Gauss-Legendre quadrature of the total intensity between events (``n_nodes`` nodes on
        each of 9 geometrically shrinking panels per interval); "auto": "closed" for Hawkes,
        else "numerical".
    n_nodes : int, default 16
    pooled : bool, default True
        True: one array of every event's increment; False: one array per sequence.

    Examples
    --------
    >>> from scipy import stats
    >>> from aaren_ts.datasets import make_hawkes
    >>> from aaren_ts.estimators import HawkesPointProcess
    >>> from aaren_ts.plotting import rescaled_times
    >>> seqs = make_hawkes(n_sequences=20, t_end=100.0, random_state=0)
    >>> truth = HawkesPointProcess.from_params(baseline=[0.2], adjacency=[[0.8]], decay=1.0)
    >>> r = rescaled_times(truth, seqs)
    >>> bool(stats.kstest(r, "expon").statistic < 0.05)
    True
    """
    if method not in ("auto", "closed", "numerical"):
        raise ValueError(f"method must be 'auto', 'closed' or 'numerical', got {method!r}")
    if not isinstance(n_nodes, int) or n_nodes < 1:
        raise ValueError(f"n_nodes must be a positive int, got {n_nodes!r}")
    if method == "closed" and not _is_hawkes(model):
        raise ValueError(
            f"method='closed' needs a fitted HawkesPointProcess, got {type(model).__name__}"
        )
    closed = method == "closed" or (method == "auto" and _is_hawkes(model))
    out = [
        _closed_form(model, seq) if closed else _numerical(model, seq, n_nodes)
        for seq in _sequences(sequences)
    ]
    return np.concatenate(out) if pooled else out


def plot_intensity(
    model: Any,
    sequence: Any,
    *,
    t_min: float | None = None,
    t_max: float | None = None,
    n_points: int = 1000,
    by_mark: bool = False,
    ax: Any = None,
) -> tuple[Any, Any]:
    """Plot the conditional intensity of one sequence over time, with its events as ticks.

    Parameters
    ----------
    model : fitted point process (see ``rescaled_times``)
    sequence : one event sequence
    t_min, t_max : float, optional
        The time range (default: the sequence's window).
    n_points : int, default 1000
        Grid points the intensity is evaluated at.
    by_mark : bool, default False
        One line per mark instead of the total intensity.
    ax : matplotlib Axes, optional

    Returns
    -------
    fig, ax

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from aaren_ts.datasets import make_hawkes
    >>> from aaren_ts.estimators import HawkesPointProcess
    >>> from aaren_ts.plotting import plot_intensity
    >>> seq = make_hawkes(n_sequences=1, t_end=30.0, random_state=0)[0]
    >>> truth = HawkesPointProcess.from_params(baseline=[0.2], adjacency=[[0.8]], decay=1.0)
    >>> fig, ax = plot_intensity(truth, seq)
    >>> [line.get_label() for line in ax.lines]
    ['total intensity', 'events']
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    (seq,) = _sequences(sequence)
    lo = seq.t_start if t_min is None else float(t_min)
    hi = seq.t_end if t_max is None else float(t_max)
    if not seq.t_start <= lo < hi <= seq.t_end:
        raise ValueError(
            f"need t_start <= t_min < t_max <= t_end = [{seq.t_start}, {seq.t_end}], "
            f"got t_min={lo}, t_max={hi}"
        )
    if not isinstance(n_points, int) or n_points < 2:
        raise ValueError(f"n_points must be an int >= 2, got {n_points!r}")
    grid = np.linspace(lo, hi, n_points)
    lam = intensity(model, seq, grid)
    fig, ax = figure_and_axes(ax, figsize=(9, 3.5))
    if by_mark:
        for k in range(lam.shape[1]):
            ax.plot(grid, lam[:, k], lw=1, label=f"mark {k}")
    else:
        ax.plot(grid, lam.sum(1), lw=1, color="tab:blue", label="total intensity")
    shown = seq.times[(seq.times >= lo) & (seq.times <= hi)]
    ax.plot(shown, np.zeros_like(shown), "|", color="tab:red", ms=12, label="events")
    ax.set_xlabel("time")
    ax.set_ylabel("intensity (events per time unit)")
    ax.set_title(f"{type(model).__name__}: conditional intensity")
    ax.legend(loc="upper right")
    return fig, ax


def plot_qq(model: Any, sequences: Any, *, method: str = "auto", ax: Any = None) -> tuple[Any, Any]:
    """QQ plot of the rescaled inter-event times (``rescaled_times``) against Exp(1).

    Points on the diagonal: the model's compensator turns the events into a unit-rate Poisson
    process, as the time-rescaling theorem says the true model does. The title gives the
    Kolmogorov-Smirnov statistic against Exp(1), the legend the number of events shown. An
    event at its sequence's ``t_start`` (an origin the sequence starts from, as in EasyTPP's
    data) has no interval before it, so no rescaled time: it is left out of both.

    Returns
    -------
    fig, ax

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from aaren_ts.datasets import make_hawkes
    >>> from aaren_ts.estimators import HawkesPointProcess
    >>> from aaren_ts.plotting import plot_qq
    >>> seqs = make_hawkes(n_sequences=5, t_end=50.0, random_state=0)
    >>> truth = HawkesPointProcess.from_params(baseline=[0.2], adjacency=[[0.8]], decay=1.0)
    >>> fig, ax = plot_qq(truth, seqs)
    >>> len(ax.lines)                       # the points and the diagonal
    2
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    from scipy import stats

    seqs = _sequences(sequences)
    per_sequence = rescaled_times(model, seqs, method=method, pooled=False)
    r = np.sort(
        np.concatenate(
            [[]] + [ri[s.times > s.t_start] for s, ri in zip(seqs, per_sequence, strict=True)]
        )
    )
    if len(r) == 0:
        raise ValueError("the sequences hold no events after their t_start: nothing to plot")
    n = len(r)
    expected = -np.log1p(-(np.arange(1, n + 1) - 0.5) / n)  # Exp(1) quantiles
    ks = stats.kstest(r, "expon").statistic
    fig, ax = figure_and_axes(ax, figsize=(4.5, 4.5))
    ax.plot(expected, r, ".", ms=3, color="tab:blue", label=f"{n} events")
    top = float(max(expected[-1], r[-1]))
    ax.plot([0, top], [0, top], "k--", lw=1, label="Exp(1)")
    ax.set_xlabel("Exp(1) quantile")
    ax.set_ylabel("rescaled inter-event time")
    ax.set_title(f"time-rescaling QQ, KS = {ks:.3f}")
    ax.legend(loc="upper left")
    return fig, ax
