"""``AarenForecaster.update`` skips sktime's input checks for a plain single series: the
result must be exactly what sktime's own ``BaseForecaster.update`` path gives."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sktime.datasets import load_airline
from sktime.forecasting.base import BaseForecaster

from aaren_ts.estimators import AarenForecaster

N = 120
WAVE = np.sin(np.arange(N) / 4.0)
CASES = {
    "range-unnamed": pd.Series(WAVE),
    "range-frame": pd.DataFrame({"a": WAVE, "b": np.cos(np.arange(N) / 5.0)}),
    "period-named": load_airline(),
    "datetime-freq": pd.Series(WAVE, index=pd.date_range("2020", periods=N, freq="h"), name="v"),
    "int-index": pd.Series(WAVE, index=pd.Index(np.arange(N) + 1000)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_plain_update_equals_sktimes_checked_path(name):
    y = CASES[name]
    start = len(y) - 12
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = AarenForecaster(max_horizon=3, max_epochs=1, d_model=8, random_state=0)
        fast.fit(y.iloc[:start])
        checked = fast.clone().fit(y.iloc[:start])
        used = 0
        for i in range(start, len(y)):
            rows = y.iloc[i : i + 1] if i % 3 else y.iloc[: i + 1]  # new row, or all so far
            used += fast._plain_rows(rows, None) is not None
            fast.update(rows, update_params=i % 4 == 0)
            BaseForecaster.update(checked, rows, update_params=i % 4 == 0)
    assert used == 12  # every call took the plain path
    assert type(fast.cutoff) is type(checked.cutoff) and fast.cutoff.equals(checked.cutoff)
    assert getattr(fast.cutoff, "freq", None) == getattr(checked.cutoff, "freq", None)
    a, b = fast.predict(fh=[1, 2, 3]), checked.predict(fh=[1, 2, 3])
    assert type(a) is type(b)
    pd.testing.assert_index_equal(a.index, b.index)
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


def test_anything_else_goes_through_sktimes_checks():
    y = CASES["period-named"]
    f = AarenForecaster(max_horizon=3, max_epochs=1, d_model=8, random_state=0)
    f.fit(y.iloc[:-12])
    renamed = y.iloc[-12:].rename("other")
    assert f._plain_rows(renamed, None) is None
    assert f._plain_rows(y.iloc[-12:].astype(object), None) is None
    assert f._plain_rows(y.iloc[-12:].to_timestamp(), None) is None  # other index type
    assert f._plain_rows(y.iloc[-12:], y.iloc[-12:].to_frame()) is None  # X given
    with pytest.raises(ValueError, match="columns"):
        f.update(renamed)
