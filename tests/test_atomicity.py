"""Atomicity: a call that fails (``fit`` on a fitted estimator, ``update``, ``predict``) leaves
the estimator exactly as it was, compared through its pickled bytes, and it still works."""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from estimator_inputs import LABELS, TARGETS, TINY, y_frame
from estimator_inputs import events as _events
from estimator_inputs import panel as _panel
from estimator_inputs import x_frame as _x

from aaren_ts.estimators import (
    AarenClassifier,
    AarenForecaster,
    AarenPointProcess,
    AarenRegressor,
)


def _y(n: int = 40, start: int = 0):
    return y_frame(n, start, columns=("a", "b"))  # two targets: the state has two columns


@pytest.fixture(scope="module")
def fitted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forecaster = AarenForecaster(max_horizon=3, **TINY).fit(_y(), X=_x())
        # a forecaster that has streamed: its state differs from the fit's
        forecaster.update(_y(3, start=40), X=_x(3, start=40), update_params=False)
        tpp = AarenPointProcess(**TINY).fit(_events())
        tpp.update([([1.0, 2.0], [0, 1]), ([0.5], [1])])
        return {
            "forecaster": forecaster,
            # class weights name the labels, so a later fit on other labels fails
            "classifier": AarenClassifier(class_weight={"a": 2.0, "b": 1.0}, **TINY).fit(
                _panel(), LABELS
            ),
            "regressor": AarenRegressor(**TINY).fit(_panel(), TARGETS),
            "point_process": tpp,
        }


def _nan_row(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out.iloc[1, 0] = np.nan
    return out


# (failure id, estimator, failing call): each is a different kind of failure
FAILURES = [
    # fit on a fitted forecaster: sktime's checks (NaN), ours before training (too short),
    # ours after the columns were set (X does not cover y), and a bad parameter
    ("fc-fit-nan", "forecaster", lambda f: f.fit(_nan_row(_y()), X=_x())),
    ("fc-fit-too-short", "forecaster", lambda f: f.fit(_y(1), X=_x(1))),
    ("fc-fit-x-misses-rows", "forecaster", lambda f: f.fit(_y(), X=_x().iloc[:-5])),
    ("fc-fit-overflow", "forecaster", lambda f: f.fit(_y() * 1e300, X=_x())),
    # update: sktime moves the cutoff before _update raises
    ("fc-update-backwards", "forecaster", lambda f: f.update(_y(3, start=10), X=_x(3, start=10))),
    ("fc-update-wrong-columns", "forecaster",
     lambda f: f.update(_y(2, start=43, columns=("a",)), X=_x(2, start=43))),
    ("fc-update-without-x", "forecaster", lambda f: f.update(_y(2, start=43))),
    ("fc-update-nan", "forecaster", lambda f: f.update(_nan_row(_y(2, start=43)), X=_x(2, 43))),
    ("fc-update-params-without-x", "forecaster",
     lambda f: f.update(_y(4, start=43), update_params=True)),
    # predict: sktime stores a new fh before _predict raises
    ("fc-predict-horizon", "forecaster", lambda f: f.predict(fh=[1, 2, 9])),
    ("fc-predict-interval-horizon", "forecaster",
     lambda f: f.predict_interval(fh=[7], coverage=0.8)),
    ("fc-predict-quantiles-x-columns", "forecaster",
     lambda f: f.predict_quantiles(fh=[1], X=_x(3, 43).rename(columns={"x": "z"}), alpha=[0.5])),
    # panel estimators: fit on a fitted one, predict
    ("clf-fit-inf", "classifier", lambda c: c.fit(_panel(bad=np.inf), LABELS)),
    ("clf-fit-y-length", "classifier", lambda c: c.fit(_panel(), LABELS[:3])),
    ("clf-fit-unseen-class-weight", "classifier",
     lambda c: c.fit(_panel(), np.array(["c", "d"] * 4))),  # weights name a and b
    ("clf-predict-channels", "classifier", lambda c: c.predict_proba(_panel(channels=3))),
    ("clf-predict-inf", "classifier", lambda c: c.predict(_panel(bad=-np.inf))),
    ("reg-fit-nan-target", "regressor", lambda r: r.fit(_panel(), np.r_[TARGETS[:-1], np.nan])),
    ("reg-fit-overflow", "regressor", lambda r: r.fit(_panel(bad=1e308), TARGETS)),
    ("reg-predict-channels", "regressor", lambda r: r.predict(_panel(channels=1))),
    # point process: fit on a fitted one, update (one good and one bad sequence), predict
    ("tpp-fit-bad-marks", "point_process", lambda p: p.fit([([0.5, 1.0], [0, -1])])),
    ("tpp-fit-empty", "point_process", lambda p: p.fit([])),
    ("tpp-update-backwards", "point_process",
     lambda p: p.update([([3.0, 4.0], [0, 0]), ([0.1], [0])])),
    ("tpp-update-mark", "point_process", lambda p: p.update([([3.0], [0]), ([3.0], [9])])),
    ("tpp-predict-mark", "point_process", lambda p: p.predict([([0.5, 1.0], [0, 5])])),
]  # fmt: skip


def _works(estimator) -> None:
    """The restored estimator still predicts, and with finite values."""
    if isinstance(estimator, AarenForecaster):
        out = estimator.predict(fh=[1, 2, 3], X=_x(3, start=43)).to_numpy()
    elif isinstance(estimator, AarenClassifier):
        out = estimator.predict_proba(_panel())
    elif isinstance(estimator, AarenRegressor):
        out = estimator.predict(_panel())
    else:
        out = estimator.predict(_events())[0]
    assert np.isfinite(out).all()


@pytest.mark.parametrize(
    ("which", "call"), [pytest.param(*f[1:], id=f[0]) for f in FAILURES]
)  # fmt: skip
def test_a_failed_call_leaves_the_estimator_exactly_as_before(fitted, which, call):
    estimator = copy.deepcopy(fitted[which])
    before = pickle.dumps(estimator)
    assert pickle.dumps(estimator) == before  # pickling itself is byte-deterministic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((ValueError, TypeError)):
            call(estimator)
    assert pickle.dumps(estimator) == before
    _works(estimator)


def test_state_comparison_detects_a_change(fitted):
    """The pickled-bytes comparison is sensitive: a successful update changes them."""
    estimator = copy.deepcopy(fitted["forecaster"])
    before = pickle.dumps(estimator)
    estimator.update(_y(1, start=43), X=_x(1, start=43), update_params=False)
    assert pickle.dumps(estimator) != before


def test_a_failed_update_then_a_good_one_equals_the_good_one_alone(fitted):
    """After a rejected update the stream continues as if it had never been tried."""
    clean, tried = copy.deepcopy(fitted["forecaster"]), copy.deepcopy(fitted["forecaster"])
    with pytest.raises(ValueError, match="X is required"):
        tried.update(_y(2, start=43))
    for f in (clean, tried):
        f.update(_y(2, start=43), X=_x(2, start=43), update_params=False)
    fh, X = [1, 2, 3], _x(3, start=45)
    pd.testing.assert_frame_equal(tried.predict(fh=fh, X=X), clean.predict(fh=fh, X=X))
    assert tried.cutoff == clean.cutoff


def test_a_failed_update_restores_what_sktime_changed_in_place():
    """sktime writes a Series' name into its own ``_converter_store_y`` dict during
    ``update``, before ours rejects the series: that edit is undone too, so later
    forecasts keep the fitted name."""
    y = pd.Series(np.sin(np.arange(40) / 4.0), name="a")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forecaster = AarenForecaster(**TINY).fit(y, fh=[1, 2])
    before = pickle.dumps(forecaster)
    renamed = pd.Series([1.0, 2.0], index=[40, 41], name="b")
    with pytest.raises(ValueError, match=r"columns \['b'\] differ from fit's \['a'\]"):
        forecaster.update(renamed)
    assert pickle.dumps(forecaster) == before
    assert forecaster.predict().name == "a"


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda f: f.fit(_y(), X=_x().iloc[:-5]), id="x-misses-rows"),
        pytest.param(lambda f: f.fit(_nan_row(_y()), X=_x()), id="nan"),
        pytest.param(lambda f: f.fit(_y(1), X=_x(1)), id="too-short"),
    ],
)
def test_a_failed_fit_on_an_unfitted_forecaster_leaves_no_attribute(call):
    forecaster = AarenForecaster(max_horizon=3, **TINY)
    before = pickle.dumps(forecaster)
    names = set(vars(forecaster))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError):
            call(forecaster)
    assert set(vars(forecaster)) == names
    assert pickle.dumps(forecaster) == before
    assert not forecaster.is_fitted


class _Box:
    """A plain object to hang attributes on (module level: it pickles)."""


def test_a_container_shared_by_two_attributes_stays_shared_after_a_restore():
    """The snapshot copies each container once: what two attributes shared before a failed
    call they share after it (a copy per attribute would change the pickled bytes)."""
    from aaren_ts.estimators._atomic import restored_on_error

    box, shared = _Box(), {"seen": [1]}
    box.first, box.second = shared, shared
    before = pickle.dumps(box)
    with pytest.raises(ValueError):
        with restored_on_error(box):
            box.first["seen"].append(2)
            raise ValueError("bad input")
    assert box.first is box.second and box.first == {"seen": [1]}
    assert pickle.dumps(box) == before


def test_pandas_caches_filled_by_a_failed_call_are_put_back():
    """pandas fills an index's caches on first read and pickles them: a failed call that
    only read sktime's cutoff must not change the pickled bytes."""
    from aaren_ts.estimators._atomic import restored_on_error

    box = _Box()
    box.cutoff = pd.PeriodIndex([pd.Period("2020-01", "M")])[[0]]  # nothing read yet
    box.times = pd.date_range("2020", periods=3, freq="D")[[1, 2]]
    before = pickle.dumps(box)
    with pytest.raises(ValueError):
        with restored_on_error(box):
            _ = box.cutoff.dtype, box.times._data._creso, box.times.is_unique
            raise ValueError("bad input")
    assert pickle.dumps(box) == before
