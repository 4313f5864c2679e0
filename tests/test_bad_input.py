"""Bad input, one table across the four estimators: every case raises a ``ValueError`` /
``TypeError`` (or sktime's ``NotFittedError``) whose message names the problem, from our
or sktime's checks, never from deep inside torch or numpy, and never returns a result."""

from __future__ import annotations

import copy
import traceback
import warnings

import numpy as np
import pandas as pd
import pytest
from estimator_inputs import LABELS, TARGETS, TINY
from estimator_inputs import events as _events
from estimator_inputs import panel as _panel
from estimator_inputs import x_frame as _x
from estimator_inputs import y_frame as _y
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sktime.exceptions import NotFittedError

from aaren_ts.estimators import (
    AarenClassifier,
    AarenForecaster,
    AarenPointProcess,
    AarenRegressor,
)


def _with(array: np.ndarray, index, value) -> np.ndarray:
    out = np.array(array, dtype=np.float64)
    out[index] = value
    return out


def _frame_with(frame: pd.DataFrame, row: int, value) -> pd.DataFrame:
    out = frame.copy()
    out.iloc[row, 0] = value
    return out


@pytest.fixture(scope="module")
def fitted():
    """One fitted estimator of each kind (copied for every case, so cases stay independent)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "forecaster": AarenForecaster(max_horizon=3, **TINY).fit(_y()),
            "forecaster_x": AarenForecaster(max_horizon=3, **TINY).fit(
                _y(columns=("a", "b")), X=_x()
            ),
            "classifier": AarenClassifier(**TINY).fit(_panel(), LABELS),
            "regressor": AarenRegressor(**TINY).fit(_panel(), TARGETS),
            "point_process": AarenPointProcess(**TINY).fit(_events()),
        }


UNFITTED = {
    "forecaster": lambda: AarenForecaster(**TINY),
    "classifier": lambda: AarenClassifier(**TINY),
    "regressor": lambda: AarenRegressor(**TINY),
    "point_process": lambda: AarenPointProcess(**TINY),
}

NOT_FITTED = (NotFittedError, SklearnNotFittedError)

# (case id, estimator ("new:<kind>" = unfitted), call, expected exception, message regex)
CASES = [
    # ---------------------------------------------------------------- AarenForecaster
    ("fc-fit-nan", "new:forecaster", lambda f: f.fit(_frame_with(_y(), 5, np.nan)),
     ValueError, r"cannot handle missing data"),
    ("fc-fit-inf", "new:forecaster", lambda f: f.fit(_frame_with(_y(), 5, np.inf)),
     ValueError, r"y contains NaN or inf"),
    ("fc-fit-huge-overflow", "new:forecaster", lambda f: f.fit(_frame_with(_y(), 5, 1e308)),
     ValueError, r"y holds values too large to standardise"),
    ("fc-fit-empty", "new:forecaster", lambda f: f.fit(_y().iloc[:0]),
     ValueError, r"y is empty"),
    ("fc-fit-too-short", "new:forecaster", lambda f: f.fit(_y(1)),
     ValueError, r"1 observations, fewer than the 2"),
    ("fc-fit-object-column", "new:forecaster",
     lambda f: f.fit(pd.DataFrame({"a": ["x"] * 40}, index=pd.RangeIndex(40))),
     (ValueError, TypeError), r"categorical"),
    ("fc-fit-4d-array", "new:forecaster", lambda f: f.fit(np.zeros((4, 3, 2, 2))),
     TypeError, r"(?i)compatible format"),
    ("fc-fit-duplicated-index", "new:forecaster",
     lambda f: f.fit(_y().set_axis(pd.Index([0, *range(39)]))),
     ValueError, r"increasing and unique"),
    ("fc-fit-decreasing-index", "new:forecaster", lambda f: f.fit(_y().iloc[::-1]),
     (ValueError, TypeError), r"(?i)sorted monotonically increasing"),
    ("fc-fit-misaligned-x", "new:forecaster", lambda f: f.fit(_y(), X=_x(40, start=100)),
     ValueError, r"not contained in index"),
    ("fc-fit-bad-fh", "new:forecaster", lambda f: f.fit(_y(), fh=[0]),
     (ValueError, NotImplementedError), r"in-sample"),
    ("fc-predict-before-fit", "new:forecaster", lambda f: f.predict(fh=[1]),
     NOT_FITTED, r"not been fitted"),
    ("fc-update-before-fit", "new:forecaster", lambda f: f.update(_y(1, start=40)),
     NOT_FITTED, r"not been fitted"),
    ("fc-predict-horizon-too-far", "forecaster", lambda f: f.predict(fh=[1, 10]),
     ValueError, r"horizon.*1\.\.3"),
    ("fc-update-nan", "forecaster", lambda f: f.update(_frame_with(_y(2, start=40), 1, np.nan)),
     ValueError, r"NaN or inf"),  # ours: a plain series skips sktime's "missing data" check
    ("fc-update-backwards", "forecaster", lambda f: f.update(_y(3, start=10)),
     ValueError, r"updates must move forward in time"),
    ("fc-update-wrong-columns", "forecaster_x",
     lambda f: f.update(_y(2, start=40, columns=("a",)), X=_x(2, start=40)),
     ValueError, r"columns \['a'\] differ from fit's"),
    ("fc-update-missing-x", "forecaster_x", lambda f: f.update(_y(2, start=40, columns=("a", "b"))),
     ValueError, r"X is required"),
    ("fc-predict-x-wrong-columns", "forecaster_x",
     lambda f: f.predict(fh=[1], X=_x(3, start=40).rename(columns={"x": "z"})),
     ValueError, r"X's columns \['z'\] differ"),
    ("fc-predict-interval-bad-coverage", "forecaster",
     lambda f: f.predict_interval(fh=[1], coverage=1.5),
     ValueError, r"coverage must lie in the open interval"),
    # outside the learned levels: a named error, never the nearest learned level
    ("fc-predict-interval-beyond-learned", "forecaster",
     lambda f: f.predict_interval(fh=[1], coverage=0.999),
     ValueError, r"outside the learned range \[0.025, 0.975\]"),
    ("fc-predict-quantiles-beyond-learned", "forecaster",
     lambda f: f.predict_quantiles(fh=[1], alpha=[0.5, 0.001]),
     ValueError, r"quantile levels \[0.001\] lie outside"),
    ("fc-predict-quantiles-empty", "forecaster", lambda f: f.predict_quantiles(fh=[1], alpha=[]),
     ValueError, r"alpha/coverage is empty"),
    ("fc-predict-interval-median-only", "new:forecaster",
     lambda f: f.set_params(quantiles=(0.5,)).fit(_y(), fh=[1]).predict_interval(coverage=0.9),
     ValueError, r"outside the learned range \[0.5, 0.5\]"),
    ("fc-param-bad-quantiles", "new:forecaster",
     lambda f: f.set_params(quantiles=(0.1, 0.9)).fit(_y()), ValueError, r"quantiles"),
    # ---------------------------------------------------------------- AarenClassifier
    ("clf-fit-nan", "new:classifier", lambda c: c.fit(_with(_panel(), (0, 0, 3), np.nan), LABELS),
     ValueError, r"missing values"),
    ("clf-fit-inf", "new:classifier", lambda c: c.fit(_with(_panel(), (0, 0, 3), np.inf), LABELS),
     ValueError, r"series 0 of X contains NaN or inf"),
    ("clf-fit-y-length", "new:classifier", lambda c: c.fit(_panel(), LABELS[:5]),
     ValueError, r"Mismatch in number of cases"),
    ("clf-fit-empty", "new:classifier", lambda c: c.fit(_panel()[:0], LABELS[:0]),
     ValueError, r"Minimum number of cases"),
    ("clf-fit-4d", "new:classifier", lambda c: c.fit(np.zeros((8, 2, 3, 4)), LABELS),
     (ValueError, TypeError), r"compatible format"),
    ("clf-fit-object-dtype", "new:classifier",
     lambda c: c.fit(np.full((8, 2, 12), "x", dtype=object), LABELS),
     TypeError, r"X must hold numeric values"),
    ("clf-fit-overflow", "new:classifier",
     lambda c: c.fit(_with(_panel(), (0, 0, 0), 1e308), LABELS),
     ValueError, r"too large to standardise"),
    ("clf-predict-before-fit", "new:classifier", lambda c: c.predict(_panel()),
     NOT_FITTED, r"not been fitted"),
    ("clf-predict-wrong-channels", "classifier", lambda c: c.predict_proba(_panel(channels=3)),
     ValueError, r"3 channels but AarenClassifier was fitted on 2"),
    ("clf-predict-nan", "classifier", lambda c: c.predict(_with(_panel(), (1, 1, 1), np.nan)),
     ValueError, r"missing values"),
    ("clf-bad-class-weight", "new:classifier",
     lambda c: c.set_params(class_weight={"zz": 2.0}).fit(_panel(), LABELS),
     ValueError, r"class_weight"),
    ("clf-stream-wrong-shape", "classifier", lambda c: c.start_stream().update(np.zeros(5)),
     ValueError, r"x_t must have shape"),
    # ---------------------------------------------------------------- AarenRegressor
    ("reg-fit-nan-target", "new:regressor", lambda r: r.fit(_panel(), _with(TARGETS, 2, np.nan)),
     ValueError, r"y contains NaN or inf"),
    ("reg-fit-inf-target", "new:regressor", lambda r: r.fit(_panel(), _with(TARGETS, 2, np.inf)),
     ValueError, r"y contains NaN or inf"),
    ("reg-fit-string-target", "new:regressor", lambda r: r.fit(_panel(), LABELS),
     ValueError, r"could not convert string to float"),  # sktime's y coercion
    ("reg-fit-inf-x", "new:regressor",
     lambda r: r.fit(_with(_panel(), (2, 0, 0), -np.inf), TARGETS),
     ValueError, r"series 2 of X contains NaN or inf"),
    ("reg-fit-target-overflow", "new:regressor",
     lambda r: r.fit(_panel(), _with(TARGETS, 0, -1e308)), ValueError, r"y .*too large"),
    ("reg-fit-empty-series", "new:regressor", lambda r: r.fit(_panel(length=0), TARGETS),
     ValueError, r"series 0 of X is empty"),
    ("reg-predict-before-fit", "new:regressor", lambda r: r.predict(_panel()),
     NOT_FITTED, r"not been fitted"),
    ("reg-predict-wrong-channels", "regressor", lambda r: r.predict(_panel(channels=1)),
     ValueError, r"1 channels but AarenRegressor was fitted on 2"),
    ("reg-param-bad-heads", "new:regressor",
     lambda r: r.set_params(n_heads=3).fit(_panel(), TARGETS),
     ValueError, r"n_heads"),
    # ---------------------------------------------------------------- AarenPointProcess
    ("tpp-fit-empty", "new:point_process", lambda p: p.fit([]),
     ValueError, r"no sequences given"),
    ("tpp-fit-not-a-list", "new:point_process", lambda p: p.fit("events"),
     TypeError, r"must be a list of sequences"),
    ("tpp-fit-decreasing-times", "new:point_process", lambda p: p.fit([([1.0, 0.5], [0, 0])]),
     ValueError, r"times must be non-decreasing"),
    ("tpp-fit-nan-times", "new:point_process", lambda p: p.fit([([0.5, np.nan], [0, 0])]),
     ValueError, r"NaN"),
    ("tpp-fit-inf-times", "new:point_process", lambda p: p.fit([([0.5, np.inf], [0, 0])]),
     ValueError, r"infinite event times"),
    ("tpp-fit-negative-mark", "new:point_process", lambda p: p.fit([([0.5, 1.0], [0, -1])]),
     ValueError, r"negative marks"),
    ("tpp-fit-fractional-mark", "new:point_process", lambda p: p.fit([([0.5, 1.0], [0, 0.5])]),
     TypeError, r"(?i)marks must be integers"),
    ("tpp-fit-string-times", "new:point_process", lambda p: p.fit([(["a", "b"], [0, 0])]),
     TypeError, r"(?i)times must be numeric"),
    ("tpp-fit-marks-length", "new:point_process", lambda p: p.fit([([0.5, 1.0], [0])]),
     ValueError, r"2 times but 1 marks"),
    ("tpp-predict-before-fit", "new:point_process", lambda p: p.predict([([0.5], [0])]),
     NOT_FITTED, r"not fitted yet; call fit before predict"),
    ("tpp-update-before-fit", "new:point_process", lambda p: p.update([([0.5], [0])]),
     NOT_FITTED, r"not fitted yet; call fit before update"),
    ("tpp-predict-mark-out-of-range", "point_process", lambda p: p.predict([([0.5, 1.0], [0, 7])]),
     ValueError, r"mark 7 is outside the fitted range"),
    ("tpp-update-backwards", "point_process",
     lambda p: p.update([([5.0], [0])]).update([([1.0], [0])]),
     ValueError, r"before the stream's last event"),
    ("tpp-fit-bad-n-marks", "new:point_process",
     lambda p: p.set_params(n_marks=1).fit(_events()),
     ValueError, r"mark 1 is outside the fitted range \[0, 0\]"),
]  # fmt: skip


def _estimator(which: str, fitted: dict):
    if which.startswith("new:"):
        return UNFITTED[which[4:]]()
    return copy.deepcopy(fitted[which])


def test_the_table_covers_every_estimator_with_enough_cases():
    kinds = {which.removeprefix("new:").removesuffix("_x") for _, which, *_ in CASES}
    assert kinds == {"forecaster", "classifier", "regressor", "point_process"}
    assert len(CASES) >= 30
    assert len({case[0] for case in CASES}) == len(CASES)  # unique ids


@pytest.mark.parametrize(
    ("which", "call", "expected", "pattern"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_input_raises_a_named_error(fitted, which, call, expected, pattern):
    estimator = _estimator(which, fitted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the error, not a warning, is what must name it
        with pytest.raises(expected, match=pattern) as info:
            call(estimator)
    # raised by a check (ours, sktime's, skbase's, pandas' index checks), not by torch or
    # numpy internals failing on data that should never have reached them
    origin = traceback.extract_tb(info.tb)[-1].filename
    assert "/torch/" not in origin and "/numpy/" not in origin, (
        f"{type(info.value).__name__} raised inside {origin}: {info.value}"
    )
