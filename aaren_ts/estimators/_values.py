"""Named errors for values the networks cannot read faithfully.

The networks compute in float32 on standardised values. Complex numbers would lose their
imaginary part and booleans would pass as 0/1 without anyone deciding so; a value that is
finite in float64 but beyond float32 after standardising (1e39 where fit saw values near 1)
becomes inf, and then NaN probabilities beside a confident-looking class. Labels must be
present and of one kind: NaN or None among them, or strings mixed with numbers, would
otherwise fail inside numpy's sorting or silently become a class of their own.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd

FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_real_dtype(dtype: Any, what: str) -> None:
    """A ``TypeError`` naming ``what`` for complex and boolean dtypes."""
    if pd.api.types.is_complex_dtype(dtype):
        raise TypeError(f"{what} holds complex numbers: the model reads real values only")
    if pd.api.types.is_bool_dtype(dtype):  # numpy's bool and pandas' "boolean"
        raise TypeError(
            f"{what} holds booleans: convert them to numbers (e.g. .astype(float)) if 0/1 "
            "is what they mean"
        )


def check_real_columns(frame: pd.DataFrame, what: str) -> None:
    """A ``TypeError`` naming ``what`` and the column unless every column of ``frame``
    holds real numbers (integers or floats): complex and boolean columns as in
    ``check_real_dtype``, and text or object columns, which ``to_numpy(float)`` would
    otherwise parse where they happen to look like numbers ("1.5") and fail on elsewhere."""
    for column, dtype in frame.dtypes.items():
        where = f"{what}'s column {column!r}"
        check_real_dtype(dtype, where)
        if not pd.api.types.is_numeric_dtype(dtype):
            raise TypeError(
                f"{where} holds {dtype} values: the model reads numbers only (convert them, "
                "e.g. with pd.to_numeric)"
            )


def real_values(values: Any, what: str) -> np.ndarray:
    """``values`` as a float64 array, refusing complex and boolean data by name (also
    inside object arrays) and anything that is not a number."""
    arr = np.asarray(values)
    check_real_dtype(arr.dtype, what)
    if arr.dtype.kind in "US":
        _refuse_text(what)
    if arr.dtype.kind == "O":
        for item in arr.ravel():
            if isinstance(item, (bool, np.bool_)):
                check_real_dtype(np.bool_, what)
            if isinstance(item, (complex, np.complexfloating)):
                check_real_dtype(np.complex128, what)
            if isinstance(item, (str, bytes)):
                _refuse_text(what)
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must hold numeric values: {err}") from None


def _refuse_text(what: str) -> None:
    # numpy parses "1.5" as a number and fails on "a": text is refused whatever it holds
    raise TypeError(
        f"{what} holds text: the model reads numbers only (convert them, e.g. with "
        "pd.to_numeric or .astype(float))"
    )


def check_finite_outputs(outputs: list[np.ndarray], what: str, unit: str = "series") -> None:
    """A ``ValueError`` when the network's outputs for ``what`` are not finite: values
    within float32's range but far outside anything fit saw (1e38 standard deviations)
    overflow inside the network, which would answer NaN or inf."""
    for i, out in enumerate(outputs):
        if not np.isfinite(out).all():
            raise ValueError(
                f"{unit} {i} of {what} drives the network to NaN or inf: its values are far "
                "outside anything fit saw (they overflow float32 inside the network); "
                "rescale the data or refit on data of this size"
            )


# below this spread the squares in a standard deviation underflow float64 (1e-300 ** 2 is
# 0): such columns are measured on the scale of their own spread instead
_TINY_SPREAD = 1e-150


def standardisation(data: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column mean, standard deviation and whether the column is constant, for
    ``data`` ``(rows, columns)``; the deviation of a constant column is 1.

    Values of about 1e-300 have a variance of 1e-600, which float64 rounds to 0: they read
    as constants, were "standardised" to about 1e-300, became 0 in float32, and the model
    learnt nothing from them. Such columns are measured on the scale of their spread
    (``max - min``), which gives the same deviation without squaring tiny numbers; other
    columns are computed as always. Statistics that overflow are a named error
    (``check_standardisable``)."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = data.mean(0), data.std(0)
        spread = data.max(0) - data.min(0)
        tiny = (spread > 0) & (spread < _TINY_SPREAD)
        if tiny.any():
            scale = np.where(tiny, spread, 1.0)
            std = np.where(tiny, ((data - mean) / scale).std(0) * scale, std)
    check_standardisable(mean, std, name)
    constant = spread == 0
    return mean, np.where(constant | ~(std > 0), 1.0, std), constant


def check_standardisable(mean: np.ndarray, std: np.ndarray, name: str) -> None:
    """A named error where finite data is too large for float64 statistics (|x| ~ 1e308):
    scaling by an infinite standard deviation would turn every value into NaN."""
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise ValueError(
            f"{name} holds values too large to standardise (their mean or standard deviation "
            "overflows float64); rescale the data"
        )


def check_float32(scaled: np.ndarray, what: str) -> None:
    """A ``ValueError`` when standardised values would overflow float32."""
    # abs and max raise no floating-point warnings (NaN and inf pass through), so no
    # errstate is set up: this runs on every streamed row
    largest = float(np.max(np.abs(scaled), initial=0.0))
    if largest > FLOAT32_MAX:
        raise ValueError(
            f"{what} holds values {largest:.3g} standard deviations from the fitted mean, "
            "beyond float32's range (3.4e38): far outside anything fit saw; rescale the data "
            "or refit on data of this size"
        )


def _label_kind(label: Any) -> str:
    if isinstance(label, (str, np.str_)):
        return "str"
    if isinstance(label, (bool, np.bool_)):
        return "bool"
    if isinstance(label, numbers.Number):
        return "number"
    return type(label).__name__


def check_labels(y: Any, what: str = "y") -> None:
    """Class labels: none missing (NaN, None, pd.NA) and all of one kind (strings, numbers
    or booleans)."""
    values = y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else np.asarray(y)
    flat = values.ravel()
    missing = np.flatnonzero(pd.isna(flat))
    if len(missing):
        raise ValueError(
            f"{what} has missing labels (NaN or None) at positions {missing[:5].tolist()}: "
            "every series needs a class label"
        )
    kinds = sorted({_label_kind(v) for v in flat})
    if len(kinds) > 1:
        raise TypeError(
            f"{what} mixes label types ({', '.join(kinds)}): use one type for all labels, "
            "e.g. all strings"
        )
