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


def positive_int(value: Any, name: str, maximum: int | None = None, *, minimum: int = 1) -> int:
    """``value`` as an ``int`` >= ``minimum`` (1 unless given; numpy integers accepted,
    bools refused).

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
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
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


def positive_int_option(what: str = "value") -> Callable[[str], int]:
    """The argparse ``type=`` of a count option: an integer >= 1, named in the error."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{what} must be an integer, got {text!r}") from None
        return positive_int(value, what)

    return argparse_type(check)


def plot_option(what: str = "file") -> Callable[[str], Path]:
    """The argparse ``type=`` of a script's figure output option."""
    return argparse_type(lambda text: plot_path(text, what))


# ---------------------------------------------------------------------------- parameters
class InvalidParameterError(ValueError, TypeError):
    """A parameter of the wrong type or value. Both a ``ValueError`` and a ``TypeError``
    (as scikit-learn's error of that name), so either ``except`` clause catches it."""


class Constraint:
    """What a parameter may be: ``accepts(value)`` and a description for the error."""

    description = "?"

    def accepts(self, value: Any) -> bool:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __str__(self) -> str:
        return self.description


class Int(Constraint):
    """An int (numpy integers too, bools not) in ``[low, high]``."""

    def __init__(self, low: int = 1, high: int | None = None) -> None:
        self.low, self.high = low, high
        if high is not None:
            self.description = f"an int in [{low}, {high}]"
        else:
            self.description = "a positive int" if low == 1 else f"an int >= {low}"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return False
        return self.low <= value and (self.high is None or value <= self.high)


class Real(Constraint):
    """A finite real number (numpy floats and ints too, bools not) between ``low`` and
    ``high``, each bound closed unless named in ``open`` ("low", "high")."""

    def __init__(
        self, low: float | None = None, high: float | None = None, open: Collection[str] = ()
    ) -> None:
        self.low, self.high, self.open = low, high, frozenset(open)
        if low is not None and high is not None:
            left = "(" if "low" in self.open else "["
            right = ")" if "high" in self.open else "]"
            self.description = f"a number in {left}{low}, {high}{right}"
        elif low is not None:
            self.description = f"a finite number {'>' if 'low' in self.open else '>='} {low}"
        else:
            self.description = "a finite number"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (
            value < self.low or ("low" in self.open and value == self.low)
        ):
            return False
        return self.high is None or not (
            value > self.high or ("high" in self.open and value == self.high)
        )


class Bool(Constraint):
    """True or False (numpy bools too; not 0/1, not strings such as "False")."""

    description = "True or False"

    def accepts(self, value: Any) -> bool:
        kind = type(value)
        return kind is bool or (kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"))


class Options(Constraint):
    """One of a few exact values (None included where listed)."""

    def __init__(self, *values: Any) -> None:
        self.values = values
        shown = [repr(v) for v in values]
        self.description = shown[0] if len(values) == 1 else f"one of ({', '.join(shown)})"

    def accepts(self, value: Any) -> bool:
        # same type and value: 1 is not True, 1.0 is not "1"
        return any(value is v or (type(value) is type(v) and value == v) for v in self.values)


class InstanceOf(Constraint):
    """An instance of ``kind``."""

    def __init__(self, kind: type, description: str) -> None:
        self.kind, self.description = kind, description

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.kind)


class Seed(Constraint):
    """A ``random_state``: None or an int in [0, 2**32 - 1] (what numpy and torch take)."""

    description = "None or an int in [0, 2**32 - 1]"

    def accepts(self, value: Any) -> bool:
        return value is None or Int(0, 2**32 - 1).accepts(value)


def check_params(owner: Any, constraints: dict[str, Constraint | tuple[Constraint, ...]]):
    """Check ``owner``'s parameters against ``constraints`` (name -> a constraint, or a
    tuple of alternatives), raising ``InvalidParameterError`` naming the first bad one.

    Examples
    --------
    >>> class Model:
    ...     n_layers, dropout, device = 0, 0.1, "auto"
    >>> check_params(Model(), {"dropout": Real(0, 1, open={"high"}), "n_layers": Int(1)})
    Traceback (most recent call last):
    ...
    aaren_ts._checks.InvalidParameterError: Model: n_layers must be a positive int, got 0
    >>> check_params(Model(), {"device": (Options("auto"), Int(0))})
    """
    for name, constraint in constraints.items():
        value = getattr(owner, name)
        alternatives = constraint if isinstance(constraint, tuple) else (constraint,)
        if not any(c.accepts(value) for c in alternatives):
            allowed = " or ".join(str(c) for c in alternatives)
            raise InvalidParameterError(
                f"{type(owner).__name__}: {name} must be {allowed}, got {value!r}"
            )


def boolean(value: Any, name: str) -> bool:
    """``value`` as a ``bool`` (numpy bools too); strings such as "no" refused by name.

    Examples
    --------
    >>> boolean("no", "download")
    Traceback (most recent call last):
    ...
    aaren_ts._checks.InvalidParameterError: download must be True or False, got 'no'
    """
    if not Bool().accepts(value):
        raise InvalidParameterError(f"{name} must be True or False, got {value!r}")
    return bool(value)
