"""Argument checks shared by the samplers, simulators and estimators.

Each returns the value in its plain Python type or raises a ``TypeError`` / ``ValueError``
that names the argument and what it got. They exist so that a bad number fails at the call,
not as a loop that never ends (a NaN ``t_end`` is never passed) or as an error from deep
inside numpy. numpy only: ``aaren_ts.datasets`` imports this without torch.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

# simulated events per sequence before a simulator stops with an error: enough for any
# sequence a model is trained on, small enough that reaching it takes seconds, not hours
MAX_EVENTS = 100_000


def positive_int(value: Any, name: str, maximum: int | None = None) -> int:
    """``value`` as an ``int`` >= 1 (numpy integers accepted, bools refused).

    Examples
    --------
    >>> import numpy as np
    >>> positive_int(np.int64(3), "n_sequences")
    3
    >>> positive_int(True, "n_sequences")
    Traceback (most recent call last):
    ...
    TypeError: n_sequences must be an int, got True
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def finite_float(value: Any, name: str) -> float:
    """``value`` as a finite ``float`` (NaN and inf refused, bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def time_span(t_start: Any, t_end: Any) -> tuple[float, float]:
    """A finite observation window with ``t_end > t_start``.

    Examples
    --------
    >>> time_span(0, 10.0)
    (0.0, 10.0)
    >>> time_span(0.0, float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: t_end must be finite, got nan
    >>> time_span(5.0, 5.0)
    Traceback (most recent call last):
    ...
    ValueError: t_end (5.0) must be after t_start (5.0)
    """
    start, end = finite_float(t_start, "t_start"), finite_float(t_end, "t_end")
    if not end > start:
        raise ValueError(f"t_end ({end}) must be after t_start ({start})")
    return start, end


def expected_events_fit(expected: float, max_events: int, what: str) -> None:
    """Refuse before simulating when the expected count of one sequence exceeds
    ``max_events``: the loop would run for hours or stop at an arbitrary event."""
    if not expected <= max_events:  # also catches NaN
        raise ValueError(
            f"{what} expects about {expected:.3g} events per sequence, more than "
            f"max_events={max_events}: shorten t_end or raise max_events"
        )
