"""A property test of the streaming forecaster: random sequences of ``update`` (new rows
only, or sktime's habit of re-sending what was absorbed), ``predict`` and calls that must
fail (a gap, a NaN, a changed absorbed row, a PeriodIndex, an unknown column, a horizon
beyond the fitted one). After every step the state is what the successful calls alone
make it: a failed call leaves the pickled bytes unchanged, and the forecast equals one pass
over everything absorbed so far, from an empty state, with the same network.

Derandomized (a fixed set of examples), so CI sees the same cases on every run."""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from estimator_inputs import TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aaren_ts.estimators import AarenForecaster

N_FIT, HORIZON = 30, 3
DAYS = pd.date_range("2022-01-01", periods=400, freq="D")


def _history(n: int) -> pd.DataFrame:
    t = np.arange(n, dtype=np.float64)
    values = np.sin(t / 4) + 0.2 * np.cos(t / 9) + 0.05 * np.random.default_rng(1).normal(size=n)
    return pd.DataFrame({"y": values}, index=DAYS[:n])


HISTORY = _history(len(DAYS))


@pytest.fixture(scope="module")
def fitted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AarenForecaster(max_horizon=HORIZON, **TINY).fit(HISTORY.iloc[:N_FIT])


def _bad_calls(n: int):
    """Calls that must fail on a forecaster that has absorbed ``n`` rows."""
    new = HISTORY.iloc[n : n + 2]
    changed = HISTORY.iloc[n - 2 : n + 1].copy()
    changed.iloc[0, 0] += 1.0
    with_nan = new.copy()
    with_nan.iloc[-1, 0] = np.nan
    return {
        "gap": lambda f: f.update(HISTORY.iloc[n + 1 : n + 3], update_params=False),
        "nan": lambda f: f.update(with_nan, update_params=False),
        "changed_row": lambda f: f.update(changed, update_params=False),
        "period_index": lambda f: f.update(
            new.set_axis(new.index.to_period("D")), update_params=False
        ),
        "unknown_column": lambda f: f.update(new.rename(columns={"y": "z"})),
        "beyond_horizon": lambda f: f.predict(fh=[HORIZON + 1]),
    }


BAD = list(_bad_calls(N_FIT))
operations = st.lists(
    st.one_of(
        st.tuples(st.just("update"), st.integers(1, 6), st.booleans()),
        st.tuples(st.just("predict"), st.integers(1, HORIZON), st.booleans()),
        st.tuples(st.just("fail"), st.sampled_from(BAD), st.booleans()),
    ),
    min_size=1,
    max_size=12,
)


def _one_pass(model: AarenForecaster, n: int) -> np.ndarray:
    """The forecast after reading rows ``0..n`` in one pass from an empty state."""
    rows = HISTORY.iloc[:n]
    scaled = model._scaled(rows, model.scaling_[None])
    return model._encode(scaled, None, None, rows.index[-1])["forecast"].numpy()


@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
def test_random_updates_predicts_and_failures_match_one_pass(fitted, ops):
    model = copy.deepcopy(fitted)
    n = N_FIT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.predict(fh=[1])  # pandas fills its lazy caches once, not inside a failed call
        for op, arg, flag in ops:
            if op == "update":
                start = max(0, n - 5) if flag else n  # flag: re-send absorbed rows too
                model.update(HISTORY.iloc[start : n + arg], update_params=False)
                n += arg
            elif op == "predict":
                forecast = model.predict(fh=list(range(1, arg + 1)))
                assert list(forecast.index) == list(DAYS[n : n + arg])
            else:
                before = pickle.dumps(model)
                with pytest.raises((ValueError, TypeError)):
                    _bad_calls(n)[arg](model)
                assert pickle.dumps(model) == before, f"failed {arg} changed the forecaster"
            assert model.cutoff[0] == DAYS[n - 1]
    np.testing.assert_allclose(
        model.streams_[None]["forecast"].numpy(), _one_pass(model, n), atol=2e-5, rtol=0
    )
