"""Argument checks shared by the samplers, simulators and estimators.

Each returns the value in its plain Python type or raises a ``TypeError`` / ``ValueError``
that names the argument and what it got. They exist so that a bad number fails at the call,
not as a loop that never ends (a NaN ``t_end`` is never passed) or as an error from deep
inside numpy, and so that a long run cannot end by failing to write its result. Standard
library only (matplotlib is imported when a figure's format is checked):
``aaren_ts.datasets`` and the command line import this without torch.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
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


def output_path(path: Any, suffixes: Collection[str] | None, what: str) -> Path:
    """``path`` as a ``Path`` a long run can write at its end, checked before it starts: a
    file name (not a folder) ending in one of ``suffixes`` (any, when None), in a folder
    that exists and takes a new file. ``what`` names the option in the errors.

    Examples
    --------
    >>> output_path("results.csv", {".json"}, "--json")
    Traceback (most recent call last):
    ...
    ValueError: --json results.csv must end in .json
    """
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"{what} {out} is a folder: give a file name")
    if suffixes is not None and out.suffix.lower() not in suffixes:
        ends = " or ".join(sorted(suffixes))
        raise ValueError(f"{what} {out} must end in {ends}")
    folder = out.parent
    if not folder.is_dir():
        raise ValueError(f"{what} {out}: its folder {folder} does not exist")
    try:  # the one test that holds for every user and file system: write something there
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ValueError(f"{what} {out}: cannot write in {folder} ({err.strerror})") from None
    if out.exists() and not os.access(out, os.W_OK):
        raise ValueError(f"{what} {out} exists and is not writable")
    return out


def plot_path(path: Any, what: str = "--plot") -> Path:
    """``output_path`` for a matplotlib figure: the suffix must be a format matplotlib
    writes (png, pdf, svg, ...), and matplotlib must be installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError(f"{what} needs matplotlib: pip install 'aaren-ts[plot]'") from None
    formats = {f".{kind}" for kind in Figure().canvas.get_supported_filetypes()}
    return output_path(path, formats, what)


def argparse_type(check: Callable[[Any], Any]) -> Callable[[str], Any]:
    """``check`` as an argparse ``type=``: its ``ValueError`` message is what the user
    sees (argparse would otherwise print only "invalid value")."""
    import argparse

    def convert(text: str) -> Any:
        try:
            return check(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = getattr(check, "__name__", "value")
    return convert


def json_option(what: str = "file", kind: type = Path) -> Callable[[str], Any]:
    """The argparse ``type=`` of a benchmark's JSON output option (the value as ``kind``)."""
    return argparse_type(lambda text: kind(output_path(text, {".json"}, what)))


def plot_option(what: str = "file") -> Callable[[str], Path]:
    """The argparse ``type=`` of a script's figure output option."""
    return argparse_type(lambda text: plot_path(text, what))
