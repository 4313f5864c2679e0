"""Bad input, one table across the estimators: every case raises a ``ValueError`` /
``TypeError`` (or sktime's ``NotFittedError``) whose message names the problem, from our
or sktime's checks, never from deep inside torch or numpy, never returns a result, and
leaves the estimator exactly as it was (its pickled bytes). A second table covers the
parameters of every estimator, checked at fit by one shared module (``_params``)."""

from __future__ import annotations

import copy
import math
import pickle
import traceback
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from estimator_inputs import LABELS, TARGETS, TINY, tensor_leaves
from estimator_inputs import events as _events
from estimator_inputs import panel as _panel
from estimator_inputs import x_frame as _x
from estimator_inputs import y_frame as _y
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sktime.exceptions import NotFittedError

import aaren_ts
from aaren_ts._checks import InvalidParameterError
from aaren_ts.datasets import (
    as_event_sequences,
    load_event_sequences,
    load_forecasting,
    load_uea,
    make_hawkes,
    split_borders,
)
from aaren_ts.estimators import (
    AarenClassifier,
    AarenForecaster,
    AarenPointProcess,
    AarenRegressor,
    HawkesPointProcess,
)


class Then:
    """A case whose failing ``call`` follows a ``setup`` that succeeds (the state is
    compared from after the setup)."""

    def __init__(self, setup, call):
        self.setup, self.call = setup, call


def _with(array: np.ndarray, index, value) -> np.ndarray:
    out = np.array(array, dtype=np.float64)
    out[index] = value
    return out


def _daily(n: int = 40, start: int = 0) -> pd.Series:
    """A daily series at days ``start .. start + n`` of one calendar."""
    index = pd.date_range("2021-01-01", periods=100, freq="D")[start : start + n]
    return pd.Series(np.sin(np.arange(start, start + n) / 3.0), index=index, name="y")


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
    "hawkes": lambda: HawkesPointProcess(),
    "forecaster": lambda: AarenForecaster(**TINY),
    "classifier": lambda: AarenClassifier(**TINY),
    "regressor": lambda: AarenRegressor(**TINY),
    "point_process": lambda: AarenPointProcess(**TINY),
}

NOT_FITTED = (NotFittedError, SklearnNotFittedError)

# fitted afresh for each case that needs them
FRESH = {
    "forecaster_daily": lambda: AarenForecaster(max_horizon=3, **TINY).fit(_daily()),
    "forecaster_monthly": lambda: AarenForecaster(max_horizon=3, **TINY).fit(
        _daily().set_axis(pd.period_range("2020-01", periods=40, freq="M"))
    ),
}


def _panel_y() -> pd.DataFrame:
    """Two daily series of 30 rows, indexed (series, time)."""
    return pd.concat(
        pd.DataFrame(
            {"y": np.sin(np.arange(30) / (3 + k))},
            index=pd.MultiIndex.from_arrays(
                [[sid] * 30, pd.date_range("2021-01-01", periods=30, freq="D")]
            ),
        )
        for k, sid in enumerate(("s1", "s2"))
    )


def _after_daily_end(*offsets: str) -> pd.DatetimeIndex:
    """Times after the last day of ``_daily()`` (2021-02-09)."""
    return pd.DatetimeIndex([pd.Timestamp("2021-02-09") + pd.Timedelta(o) for o in offsets])


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
     Then(lambda f: f.set_params(quantiles=(0.5,)).fit(_y(), fh=[1]),
          lambda f: f.predict_interval(coverage=0.9)),
     ValueError, r"outside the learned range \[0.5, 0.5\]"),
    ("fc-param-bad-quantiles", "new:forecaster",
     Then(lambda f: f.set_params(quantiles=(0.1, 0.9)), lambda f: f.fit(_y())),
     ValueError, r"quantiles"),
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
     TypeError, r"X holds text"),
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
     Then(lambda c: c.set_params(class_weight={"zz": 2.0}), lambda c: c.fit(_panel(), LABELS)),
     ValueError, r"class_weight"),
    # the streams' state is allocated at start: 10**9 of them took 80 GB before failing
    ("clf-stream-too-many-streams", "classifier", lambda c: c.start_stream(10**9),
     ValueError, r"1,000,000,000 streams would hold [\d.]+ GiB of state .* start fewer"),
    ("clf-stream-wrong-shape", "classifier", lambda c: c.start_stream().update(np.zeros(5)),
     ValueError, r"x_t must have shape"),
    # ---------------------------------------------------------------- AarenRegressor
    ("reg-fit-nan-target", "new:regressor", lambda r: r.fit(_panel(), _with(TARGETS, 2, np.nan)),
     ValueError, r"y contains NaN or inf"),
    ("reg-fit-inf-target", "new:regressor", lambda r: r.fit(_panel(), _with(TARGETS, 2, np.inf)),
     ValueError, r"y contains NaN or inf"),
    ("reg-fit-string-target", "new:regressor", lambda r: r.fit(_panel(), LABELS),
     TypeError, r"y holds text"),
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
     Then(lambda r: r.set_params(n_heads=3), lambda r: r.fit(_panel(), TARGETS)),
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
    # sparse mark ids (raw user or item ids): the models keep a row (Hawkes: a row and a
    # column) per id, and fit ran for minutes allocating gigabytes before failing
    ("tpp-fit-sparse-mark-ids", "new:point_process",
     lambda p: p.fit([([0.5, 1.0, 2.0], [0, 10**7, 1])]),
     ValueError, r"would model 10000001 marks .* more than its 10000: .* relabel"),
    ("tpp-fit-too-many-marks-asked", "new:point_process",
     Then(lambda p: p.set_params(n_marks=10**6), lambda p: p.fit(_events())),
     ValueError, r"would model 1000000 marks"),
    ("hawkes-fit-sparse-mark-ids", "new:hawkes", lambda h: h.fit([([0.5, 1.0], [0, 5000])]),
     ValueError, r"HawkesPointProcess would model 5001 marks .* more than its 1000"),
    ("tpp-fit-string-times", "new:point_process", lambda p: p.fit([(["a", "b"], [0, 0])]),
     TypeError, r"times must be real numbers, got text"),
    # text that reads as numbers, on every path that takes event times: numpy parsed it
    ("tpp-predict-numeric-text-times", "point_process",
     lambda p: p.predict([(["0.5", "1.0"], [0, 0])]),
     TypeError, r"sequence 0: times must be real numbers, got text"),
    ("tpp-stream-numeric-text-time", "point_process", lambda p: p.start_stream().update("1.0"),
     TypeError, r"times must be real numbers, got text"),
    ("tpp-stream-boolean-time", "point_process", lambda p: p.start_stream().update(True),
     TypeError, r"times must be real numbers, got booleans"),
    ("tpp-start-stream-text", "point_process", lambda p: p.start_stream("0"),
     TypeError, r"t_start must be a real number, got '0'"),
    ("tpp-stream-log-likelihood-nan-end", "point_process",
     lambda p: p.start_stream().update(0.5).log_likelihood(t_end=np.nan),
     ValueError, r"t_end must be finite, got nan"),
    ("tpp-intensity-numeric-text-times", "point_process",
     lambda p: p.intensity(_events()[0], ["1.0"]), TypeError, r"times holds text"),
    # a switch given as text: "no" would have read as True
    ("tpp-predict-every-prefix-not-a-bool", "point_process",
     lambda p: p.predict(_events(), every_prefix="no"),
     ValueError, r"every_prefix must be True or False, got 'no'"),
    ("hawkes-predict-proba-every-prefix-not-a-bool", "new:hawkes",
     Then(lambda h: h.fit(_events()), lambda h: h.predict_proba(_events(), every_prefix=1)),
     ValueError, r"every_prefix must be True or False, got 1"),
    ("tpp-fit-marks-length", "new:point_process", lambda p: p.fit([([0.5, 1.0], [0])]),
     ValueError, r"2 times but 1 marks"),
    ("tpp-predict-before-fit", "new:point_process", lambda p: p.predict([([0.5], [0])]),
     NOT_FITTED, r"not fitted yet; call fit before predict"),
    ("tpp-update-before-fit", "new:point_process", lambda p: p.update([([0.5], [0])]),
     NOT_FITTED, r"not fitted yet; call fit before update"),
    ("tpp-predict-mark-out-of-range", "point_process", lambda p: p.predict([([0.5, 1.0], [0, 7])]),
     ValueError, r"mark 7 is outside the fitted range"),
    ("tpp-update-backwards", "point_process",
     Then(lambda p: p.update([([5.0], [0])]), lambda p: p.update([([1.0], [0])])),
     ValueError, r"before the stream's last event"),
    ("tpp-fit-bad-n-marks", "new:point_process",
     Then(lambda p: p.set_params(n_marks=1), lambda p: p.fit(_events())),
     ValueError, r"mark 1 is outside the fitted range \[0, 0\]"),
    # ---------------------------------------------------------------- time indexes
    ("fc-fit-missing-day", "new:forecaster", lambda f: f.fit(_daily().drop(_daily().index[7])),
     ValueError, r"DatetimeIndex has no regular frequency"),
    ("fc-fit-integer-gap", "new:forecaster",
     lambda f: f.fit(_y().set_axis(pd.Index([*range(20), *range(21, 41)]))),
     ValueError, r"must count up in steps of 1"),
    ("fc-fit-period-gap", "new:forecaster",
     lambda f: f.fit(_daily().set_axis(_daily().index.to_period("D")).drop(
         _daily().index.to_period("D")[3])), ValueError, r"PeriodIndex has missing periods"),
    ("fc-update-period-after-datetime", "forecaster_daily",
     lambda f: f.update(_daily(2, 40).set_axis(_daily(2, 40).index.to_period("D"))),
     TypeError, r"is a PeriodIndex, but the forecaster was fitted on a DatetimeIndex"),
    ("fc-update-tz-aware-after-naive", "forecaster_daily",
     lambda f: f.update(_daily(2, 40).tz_localize("UTC")), TypeError, r"tz-aware"),
    ("fc-update-skips-a-day", "forecaster_daily", lambda f: f.update(_daily(2, 41)),
     ValueError, r"\(a gap\)"),
    ("fc-update-off-grid", "forecaster_daily",
     lambda f: f.update(_daily(1, 40).set_axis(_daily(1, 40).index + pd.Timedelta("6h"))),
     ValueError, r"must continue the series one step at a time"),
    ("fc-update-changes-an-absorbed-row", "forecaster_daily",
     lambda f: f.update(pd.concat([_daily(3, 37) * 2, _daily(2, 40)])),
     ValueError, r"differs from the one already absorbed"),
    ("fc-update-float32-overflow", "forecaster", lambda f: f.update(_y(1, start=40) + 1e39),
     ValueError, r"beyond float32's range"),
    # absolute forecast times off the grid: sktime's conversion labelled step 1's forecast
    # with 36 hours, called two such times duplicates and an hour "in-sample"
    ("fc-predict-time-between-steps", "forecaster_daily",
     lambda f: f.predict(fh=_after_daily_end("36h")),
     ValueError, r"fh asks for 2021-02-10 12:00:00, which is not on the series' grid"),
    ("fc-predict-an-hour-after-the-end", "forecaster_daily",
     lambda f: f.predict(fh=_after_daily_end("1h")), ValueError, r"not on the series' grid"),
    ("fc-predict-interval-a-step-and-a-time-between", "forecaster_daily",
     lambda f: f.predict_interval(fh=_after_daily_end("1D", "30h")),
     ValueError, r"fh asks for 2021-02-10 06:00:00"),
    ("fc-fit-horizon-off-the-grid", "new:forecaster",
     lambda f: f.fit(_daily(), fh=_after_daily_end("1D", "60h")),
     ValueError, r"not on the series' grid"),
    ("fc-predict-periods-of-another-freq", "forecaster_monthly",
     lambda f: f.predict(fh=pd.PeriodIndex(["2023-05-03"], freq="D")),
     ValueError, r"fh's PeriodIndex has freq D"),  # was a bare AssertionError
    ("fc-predict-periods-for-timestamps", "forecaster_daily",
     lambda f: f.predict(fh=pd.period_range("2021-02-10", periods=2, freq="D")),
     TypeError, r"fh is a PeriodIndex of times, but the forecaster was fitted on a Datetime"),
    # ---------------------------------------------------------------- what values may be
    # complex and boolean data refused on every path, as the panel estimators refuse them:
    # a plain series' update took complex rows and dropped their imaginary parts
    # X indexed differently from y (a flat index for a panel): a pandas internal said
    # "Buffer dtype mismatch"
    ("fc-fit-panel-with-flat-x", "new:forecaster",
     lambda f: f.fit(_panel_y(), X=pd.DataFrame({"x": np.arange(60.0)})),
     ValueError, r"X's index has 1 level\(s\) but y's has 2"),
    ("fc-update-complex", "forecaster", lambda f: f.update(_y(2, start=40).astype(complex)),
     TypeError, r"complex"),
    ("fc-fit-boolean-y", "new:forecaster", lambda f: f.fit(_y() > 0),
     TypeError, r"y's column 'a' holds booleans: convert them to numbers"),
    ("fc-update-boolean-y", "forecaster", lambda f: f.update(_y(2, start=40) > 0),
     TypeError, r"y's column 'a' holds booleans"),
    ("fc-fit-text-x", "new:forecaster", lambda f: f.fit(_y(), X=_x().astype(str)),
     TypeError, r"X's column 'x' holds (str|object) values: the model reads numbers only"),
    ("fc-update-boolean-x", "forecaster_x",
     lambda f: f.update(_y(2, start=40, columns=("a", "b")), X=_x(2, start=40) > 0),
     TypeError, r"X's column 'x' holds booleans"),
    ("fc-predict-object-x", "forecaster_x",
     lambda f: f.predict(fh=[1], X=_x(1, start=40).astype(object)),
     TypeError, r"X's column 'x' holds object values"),
    # known-future X at predict: checked like the X that update reads
    ("fc-predict-x-float32-overflow", "forecaster_x",
     lambda f: f.predict(fh=[1, 2], X=_x(2, start=40) + 1e300),
     ValueError, r"X holds values .* beyond float32's range"),
    # sktime hands update_params on unchecked: "no" would have fine-tuned the model
    ("fc-update-params-not-a-bool", "forecaster",
     lambda f: f.update(_y(2, start=40), update_params="no"),
     ValueError, r"update_params must be True or False, got 'no'"),
    # ---------------------------------------------------------------- panel values, labels
    ("clf-labels-nan", "new:classifier",
     lambda c: c.fit(_panel(), np.array([0.0, 1.0, np.nan, 0, 1, 0, 1, 0])),
     ValueError, r"y has missing labels \(NaN or None\) at positions \[2\]"),
    ("clf-labels-none", "new:classifier",
     lambda c: c.fit(_panel(), np.array(["a", "b", None, "a", "b", "a", "b", "a"], dtype=object)),
     ValueError, r"missing labels"),
    ("clf-labels-mixed-types", "new:classifier",
     lambda c: c.fit(_panel(), np.array(["a", 1] * 4, dtype=object)),
     TypeError, r"y mixes label types \(number, str\)"),
    ("clf-X-complex", "new:classifier", lambda c: c.fit(_panel().astype(complex), LABELS),
     TypeError, r"X holds complex numbers"),
    ("clf-X-bool", "new:classifier", lambda c: c.fit(_panel() > 0, LABELS),
     TypeError, r"X holds booleans"),
    ("clf-channels-differ-between-series", "new:classifier",
     lambda c: c.fit([pd.DataFrame(np.ones((12, 2 + i // 4)) * i) for i in range(8)], LABELS),
     ValueError, r"series 4 of X has 3 channels but series 0 has 2"),
    ("clf-predict-float32-overflow", "classifier", lambda c: c.predict(_panel() * 1e39),
     ValueError, r"beyond float32's range"),
    ("clf-predict-proba-float32-overflow", "classifier",
     lambda c: c.predict_proba(_panel() * 1e39), ValueError, r"beyond float32's range"),
    ("clf-stream-complex", "classifier", lambda c: c.start_stream().update(np.array([1j, 1])),
     TypeError, r"x_t holds complex numbers"),
    ("clf-stream-overflow", "classifier",
     lambda c: c.start_stream().update(np.array([1e39, 1.0])), ValueError, r"float32"),
    # within float32's range once standardised, but overflowing inside the network (it
    # answered NaN probabilities and an arbitrary class, or a NaN prediction)
    ("clf-predict-overflows-inside-the-network", "classifier",
     lambda c: c.predict(_with(_panel(), (0, 0, 3), 1e38)),
     ValueError, r"series 0 of X drives the network to NaN or inf"),
    ("reg-predict-overflows-inside-the-network", "regressor",
     lambda r: r.predict(_with(_panel(), (2, 1, 5), -1e38)),
     ValueError, r"series 2 of X drives the network to NaN or inf"),
    # text is refused whatever it holds: numpy parsed "0.5" as a number
    ("clf-predict-numeric-text", "classifier", lambda c: c.predict(_panel().astype(str)),
     TypeError, r"X holds text"),
    ("reg-fit-numeric-text-target", "new:regressor",
     lambda r: r.fit(_panel(), TARGETS.astype(str)), TypeError, r"y holds text"),
    ("reg-y-complex", "new:regressor", lambda r: r.fit(_panel(), TARGETS.astype(complex)),
     TypeError, r"y holds complex numbers"),
    ("reg-y-bool", "new:regressor", lambda r: r.fit(_panel(), TARGETS > 0.5),
     TypeError, r"y holds booleans"),
    ("reg-X-complex", "new:regressor", lambda r: r.fit(_panel().astype(complex), TARGETS),
     TypeError, r"X holds complex numbers"),
    ("reg-predict-float32-overflow", "regressor", lambda r: r.predict(_panel() * -1e39),
     ValueError, r"beyond float32's range"),
    ("tpp-score-complex-times", "point_process",
     lambda p: p.score_samples([(np.array([0.5, 1.0]) + 0j, [0, 1])]),
     TypeError, r"sequence 0: times must be real numbers, got complex numbers"),
    ("tpp-score-boolean-times", "point_process",
     lambda p: p.score_samples([(np.array([True, True]), [0, 1])]),
     TypeError, r"times must be real numbers, got booleans"),
    ("tpp-score-column-vector-times", "point_process",
     lambda p: p.score_samples([([[0.5], [1.0]], [0, 1])]),
     ValueError, r"times must be one-dimensional, got shape \(2, 1\)"),
    ("tpp-fit-boolean-marks", "new:point_process",
     lambda p: p.fit([([0.5, 1.0], [True, False])] * 3),
     TypeError, r"marks must be real numbers, got booleans"),
    # ---------------------------------------------------------------- HawkesPointProcess
    ("hawkes-fit-no-sequences", "new:hawkes", lambda h: h.fit([]),
     ValueError, r"no sequences given"),
    ("hawkes-fit-negative-marks", "new:hawkes", lambda h: h.fit([([0.5, 1.0], [0, -1])]),
     ValueError, r"negative marks"),
    ("hawkes-score-unfitted", "new:hawkes", lambda h: h.score_samples(_events()),
     NOT_FITTED, r"not fitted"),
    # ---------------------------------------------------------------- loaders and data
    ("split-borders-text-rows", "none", lambda _: split_borders("ETTh1", "17420"),
     TypeError, r"n_rows must be an int, got '17420'"),
    ("split-borders-negative-lookback", "none", lambda _: split_borders("ETTh1", 17420, -5),
     ValueError, r"lookback must be >= 0 \(rows\), got -5"),
    ("split-borders-text-lookback", "none", lambda _: split_borders("ETTh1", 17420, "96"),
     TypeError, r"lookback must be an int >= 0"),
    ("load-forecasting-unknown", "none", lambda _: load_forecasting("nope"),
     ValueError, r"unknown forecasting data set 'nope'"),
    ("load-forecasting-download-str", "none", lambda _: load_forecasting("ETTh1", download="no"),
     ValueError, r"download must be True or False, got 'no'"),
    ("load-uea-unpinned", "none", lambda _: load_uea("NotASet"),
     ValueError, r"NotASet_TRAIN.ts has no pinned SHA-256.*allow_unpinned=True"),
    ("load-uea-bad-split", "none", lambda _: load_uea("BasicMotions", split="valid"),
     ValueError, r"split must be 'train' or 'test'"),
    ("load-uea-bad-name", "none", lambda _: load_uea("../etc"),
     ValueError, r"name must be a UEA data set name"),
    ("load-events-unknown", "none", lambda _: load_event_sequences("nope"),
     ValueError, r"unknown event data set 'nope'"),
    ("load-events-bad-split", "none", lambda _: load_event_sequences("hawkes1", split="dev"),
     ValueError, r"split must be one of"),
    ("load-events-allow-unpinned-str", "none",
     lambda _: load_event_sequences("hawkes1", allow_unpinned="yes"),
     ValueError, r"allow_unpinned must be True or False"),
    ("load-estimator-bad-type", "none", lambda _: aaren_ts.load(5),
     TypeError, r"serial must be a path given to save\(\)"),
    ("load-estimator-missing", "none", lambda _: aaren_ts.load("/nonexistent/model"),
     FileNotFoundError, r"no saved estimator at '/nonexistent/model.zip'"),
    ("load-estimator-bad-tuple", "none", lambda _: aaren_ts.load((AarenRegressor, b"x", 1)),
     ValueError, r"tuple of 3"),
    ("load-estimator-not-a-zip", "none", lambda _: aaren_ts.load((AarenRegressor, b"junk")),
     ValueError, r"cannot load the serial: the file is truncated, corrupted or not a zip"),
    ("make-hawkes-adjacency-shape", "none",
     lambda _: make_hawkes(n_sequences=2, t_end=5.0, baseline=(0.3, 0.3), adjacency=((0.1,),)),
     ValueError, r"adjacency must be a 2x2 matrix"),
    ("make-hawkes-decay-nan", "none", lambda _: make_hawkes(n_sequences=2, t_end=5.0, decay=NAN),
     ValueError, r"decay must be finite"),
    ("events-from-a-string", "none", lambda _: as_event_sequences("abc"),
     TypeError, r"event data must be a list of sequences"),
]  # fmt: skip


def _estimator(which: str, fitted: dict):
    if which == "none":  # loaders and data functions: no estimator
        return None
    if which.startswith("new:"):
        return UNFITTED[which[4:]]()
    if which in FRESH:  # fitted afresh: a deep copy drops pandas' lazily filled caches
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return FRESH[which]()
    return copy.deepcopy(fitted[which])


def test_the_table_covers_every_estimator_with_enough_cases():
    kinds = {which.removeprefix("new:").removesuffix("_x") for _, which, *_ in CASES}
    kinds = {k.removesuffix("_daily").removesuffix("_monthly") for k in kinds}
    assert kinds == {"forecaster", "classifier", "regressor", "point_process", "hawkes", "none"}
    assert len(CASES) + len(PARAM_CASES) >= 150
    assert len({case[0] for case in CASES}) == len(CASES)  # unique ids


@pytest.mark.parametrize(
    ("which", "call", "expected", "pattern"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_input_raises_a_named_error(fitted, which, call, expected, pattern):
    estimator = _estimator(which, fitted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the error, not a warning, is what must name it
        if isinstance(call, Then):
            call.setup(estimator)
            call = call.call
        before = pickle.dumps(estimator)
        with pytest.raises(expected, match=pattern) as info:
            call(estimator)
    assert pickle.dumps(estimator) == before, "the failed call changed the estimator"
    # raised by a check (ours, sktime's, skbase's, pandas' index checks), not by torch or
    # numpy internals failing on data that should never have reached them
    origin = traceback.extract_tb(info.tb)[-1].filename
    assert "/torch/" not in origin and "/numpy/" not in origin, (
        f"{type(info.value).__name__} raised inside {origin}: {info.value}"
    )


# ---------------------------------------------------------------------------- parameters
NAN = math.nan
# (parameter, bad value, what the message says it must be) for every torch estimator
COMMON_PARAMS = [
    ("n_layers", 0, r"an int in \[1, 256\]"), ("n_layers", 1.0, r"an int in \[1, 256\]"),
    ("n_layers", 10**5, r"an int in \[1, 256\]"),
    # networks too large for the machine: named after sizing them on the meta device
    ("d_model", 2**20, r"a network of [\d,]+ parameters, about [\d.]+ GiB .* more than half"),
    ("d_model", 0, "a positive int"), ("d_model", "8", "a positive int"),
    ("n_heads", 0, "a positive int"), ("n_heads", 3, "n_heads=3 must divide d_model=8"),
    ("max_epochs", 0, "a positive int"), ("max_epochs", -1, "a positive int"),
    ("batch_size", True, "a positive int"), ("batch_size", 0, "a positive int"),
    ("batch_size", 2.5, "a positive int"),
    ("lr", 0.0, r"a finite number > 0"), ("lr", NAN, r"a finite number > 0"),
    ("lr", "1e-3", r"a finite number > 0"),
    ("dropout", 1.0, r"a number in \[0.0, 1.0\)"), ("dropout", -0.1, r"in \[0.0, 1.0\)"),
    ("validation_size", 1.0, r"in \[0.0, 1.0\)"), ("patience", 0, "a positive int"),
    ("random_state", "abc", r"None or an int in \[0, 2\*\*32 - 1\]"),
    ("random_state", -1, "None or an int"), ("random_state", 2.5, "None or an int"),
    ("random_state", 2**40, "None or an int"),
    ("device", "tpu", "'auto' or a torch device name"), ("device", 0, "a torch device name"),
    ("backbone", "lstm", r"one of \('aaren', 'transformer', 'gru'\)"),
    ("recency", "False", "True or False"), ("recency", 1, "True or False"),
    ("verbose", "yes", "True or False or an int >= 0"),
    ("n_threads", 0, r"one of \(None, -1\) or a positive int"), ("n_threads", "2", "positive int"),
    ("n_threads", 2.0, "a positive int"), ("n_threads", -2, "a positive int"),
]  # fmt: skip
OWN_PARAMS = {
    "forecaster": [
        ("update_steps", -1, "an int >= 0"), ("max_horizon", 0, "None or a positive int"),
        ("context_length", 1, "None or an int >= 2"), ("local_window", 1, "an int >= 2"),
        ("local_window", "big", r"one of \('auto', None\)"),
        ("channel_independent", "no", "True or False"), ("n_lags", 0, "a positive int"),
        ("token_stride", 0, "a positive int"), ("max_steps", 0, "None or a positive int"),
        ("windows_per_epoch", 0, "None or a positive int"), ("chunk_length", 0, "positive int"),
        ("calibrate", "yes", "True or False"), ("calibration_rate", 1.0, r"in \[0.0, 1.0\)"),
        ("quantiles", (0.1, 0.9), "includes 0.5"), ("quantiles", (0.5, 0.5), "increasing"),
        ("quantiles", "0.5", "a tuple of increasing levels"), ("quantiles", (0.5, 1.0), "in"),
        ("devices", 0, "a positive int or 'auto'"), ("devices", "two", "or 'auto'"),
        ("strategy", "dp", r"one of \('auto', 'ddp'\)"),
    ],
    "classifier": [
        ("kernel_size", 0, "a positive int"), ("prefix_loss", 1.5, r"in \[0.0, 1.0\]"),
        ("weight_decay", -1.0, "a finite number >= 0"), ("devices", 0, "or 'auto'"),
        ("strategy", "dp", "one of"), ("label_smoothing", 1.0, r"in \[0.0, 1.0\)"),
        ("class_weight", "auto", r"one of \(None, 'balanced'\) or a dict"),
        ("class_weight", [1, 2], "or a dict of weights"),
        ("readout", "max", r"one of \('last', 'mean'\)"),
        ("min_steps", -1, "an int >= 0"), ("min_steps", 1.5, "an int >= 0"),
        ("max_epochs", "all", "a positive int or 'auto'"), ("max_epochs", 0, "or 'auto'"),
        ("positional", "yes", "True or False or 'auto'"), ("positional", 1, "True or False"),
        ("n_networks", 0, r"an int in \[1, 100\]"), ("n_networks", 2.0, r"an int in \[1, 100\]"),
        ("n_networks", True, r"an int in \[1, 100\]"),
    ],
    "regressor": [
        ("kernel_size", 0, "a positive int"), ("prefix_loss", -0.5, r"in \[0.0, 1.0\]"),
        ("weight_decay", NAN, "a finite number >= 0"), ("devices", 1.5, "or 'auto'"),
        ("strategy", "ddp2", "one of"), ("readout", ["mean"], r"one of \('last', 'mean'\)"),
        ("max_epochs", "auto", "a positive int"),
        ("positional", "on", "True or False or 'auto'"), ("positional", None, "True or False"),
        ("n_networks", 101, r"an int in \[1, 100\]"), ("n_networks", "3", r"an int in \[1, 100\]"),
    ],
    "point_process": [
        ("n_components", 0, "a positive int"), ("n_marks", 0, "None or a positive int"),
        ("n_marks", 1.5, "None or a positive int"), ("min_inter_time", 0.0, "> 0"),
        ("mark_conditional", "yes", "True or False"),
    ],
}  # fmt: skip
HAWKES_PARAMS = [
    ("n_marks", 0, "None or a positive int"), ("decay", 0.0, "> 0"), ("decay", NAN, "> 0"),
    ("decay", "1", "> 0"), ("random_state", "abc", "None or an int"),
]  # fmt: skip
FIT = {
    "forecaster": (AarenForecaster, lambda e: e.fit(_y(), fh=[1, 2])),
    "classifier": (AarenClassifier, lambda e: e.fit(_panel(), LABELS)),
    "regressor": (AarenRegressor, lambda e: e.fit(_panel(), TARGETS)),
    "point_process": (AarenPointProcess, lambda e: e.fit(_events())),
    "hawkes": (HawkesPointProcess, lambda e: e.fit(_events())),
}
PARAM_CASES = [
    pytest.param(kind, name, value, says, id=f"{kind}-{name}={value!r}")
    for kind in ("forecaster", "classifier", "regressor", "point_process")
    for name, value, says in COMMON_PARAMS + OWN_PARAMS[kind]
] + [
    pytest.param("hawkes", name, value, says, id=f"hawkes-{name}={value!r}")
    for name, value, says in HAWKES_PARAMS
]


@pytest.mark.parametrize("kind, name, value, says", PARAM_CASES)
def test_bad_parameters_are_named_at_fit(kind, name, value, says):
    cls, fit = FIT[kind]
    tiny = TINY if kind != "hawkes" else {}
    estimator = cls(**{**tiny, name: value})  # __init__ only stores (sktime's rule)
    before = pickle.dumps(estimator)
    with pytest.raises(InvalidParameterError, match=rf"{cls.__name__}: .*{says}") as info:
        fit(estimator)
    assert name in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    assert pickle.dumps(estimator) == before


def test_every_parameter_of_every_estimator_has_a_bad_value_case():
    for kind, (cls, _) in FIT.items():
        table = HAWKES_PARAMS if kind == "hawkes" else COMMON_PARAMS + OWN_PARAMS[kind]
        missing = set(cls().get_params()) - {name for name, _, _ in table}
        assert not missing, f"{cls.__name__}: no bad-value case for {sorted(missing)}"


def test_numpy_scalars_are_accepted_where_python_ones_are():
    numpy_params = {
        "d_model": np.int64(8), "n_layers": np.int32(1), "n_heads": np.int64(2),
        "max_epochs": np.int64(1), "random_state": np.int64(0), "dropout": np.float32(0.0),
        "recency": np.bool_(True), "lr": np.float64(1e-3), "batch_size": np.int16(8),
    }  # fmt: skip
    python = AarenForecaster(**{k: v.item() for k, v in numpy_params.items()})
    numpy = AarenForecaster(**numpy_params, devices=np.int64(1), update_steps=np.int64(2))
    python.set_params(update_steps=2)
    for model in (python, numpy):
        model.fit(_y(), fh=[1, 2])
    pd.testing.assert_frame_equal(numpy.predict(), python.predict())
    AarenClassifier(**numpy_params, positional=np.bool_(True)).fit(_panel(), LABELS)
    AarenPointProcess(**numpy_params, n_marks=np.int64(2)).fit(_events())
    HawkesPointProcess(n_marks=np.int64(2), decay=np.float64(1.0)).fit(_events())


def test_a_stream_update_that_overflows_inside_the_network_keeps_the_stream(fitted):
    """A row within float32's range that overflows inside the network raises by name and
    leaves the stream as it was: its step count, its outputs and every state tensor."""
    stream = copy.deepcopy(fitted["classifier"]).start_stream(2)
    stream.update(np.array([[0.1, 0.2], [0.3, -0.4]]))
    before = (
        stream.n_steps,
        stream.predict_proba(),
        [t.clone() for t in tensor_leaves(stream._state)],
    )
    with pytest.raises(ValueError, match=r"stream 1 of x_t drives the network to NaN or inf"):
        stream.update(np.array([[0.1, 0.2], [1e38, 1.0]]))
    assert stream.n_steps == before[0]
    np.testing.assert_array_equal(stream.predict_proba(), before[1])
    for got, kept in zip(tensor_leaves(stream._state), before[2], strict=True):
        assert torch.equal(got, kept)


def test_intensity_at_no_time_is_an_empty_array(fitted):
    """No time asked: an empty ``(0, n_marks)`` array (it was numpy's empty-reduction
    error)."""
    model = copy.deepcopy(fitted["point_process"])
    out = model.intensity(_events()[0], [])
    assert out.shape == (0, model.n_marks_)


def test_absolute_times_on_the_grid_forecast_as_the_steps_they_name():
    """The grid check passes on-grid times through: the same forecasts as steps ahead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        daily = FRESH["forecaster_daily"]()
        by_time = daily.predict(fh=_after_daily_end("1D", "3D"))
        by_step = daily.predict(fh=[1, 3])
        monthly = FRESH["forecaster_monthly"]()
        by_period = monthly.predict(fh=pd.period_range("2023-05", periods=2, freq="M"))
        by_month = monthly.predict(fh=[1, 2])
    pd.testing.assert_series_equal(by_time, by_step)
    pd.testing.assert_series_equal(by_period, by_month)
