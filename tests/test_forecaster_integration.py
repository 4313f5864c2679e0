"""AarenForecaster inside sktime's composition, tuning, evaluation and stream wrappers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sktime.datasets import load_airline
from sktime.forecasting.compose import MultiplexForecaster, TransformedTargetForecaster
from sktime.forecasting.model_evaluation import evaluate
from sktime.forecasting.model_selection import ForecastingGridSearchCV
from sktime.forecasting.stream import UpdateRefitsEvery
from sktime.split import ExpandingWindowSplitter
from sktime.transformations.series.detrend import Deseasonalizer

from aaren_ts.estimators import AarenForecaster

TINY = {"d_model": 8, "n_layers": 1, "n_heads": 2, "max_epochs": 1, "random_state": 0}


@pytest.fixture(scope="module")
def y():
    return load_airline()


@pytest.fixture(scope="module")
def cv():
    return ExpandingWindowSplitter(initial_window=120, step_length=12, fh=[1, 2, 3])


def test_in_a_pipeline_with_deseasonalizer(y):
    pipe = TransformedTargetForecaster(
        [("deseason", Deseasonalizer(sp=12)), ("aaren", AarenForecaster(**TINY))]
    )
    pred = pipe.fit(y, fh=[1, 2, 3]).predict()
    assert pred.shape == (3,) and np.isfinite(pred).all()
    assert pred.index.equals(pd.period_range("1961-01", periods=3, freq="M"))


@pytest.mark.slow
def test_grid_search_with_the_default_loky_backend(y, cv):
    grid = {"backbone": ["aaren", "gru"], "context_length": [None, 24]}
    search = ForecastingGridSearchCV(AarenForecaster(**TINY), cv=cv, param_grid=grid)
    search.fit(y, fh=[1, 2, 3])
    assert search.best_params_["backbone"] in grid["backbone"]
    assert len(search.cv_results_) == 4 and np.isfinite(search.predict()).all()


@pytest.mark.parametrize("strategy", ["refit", "update", "no-update_params"])
def test_evaluate_strategies(y, cv, strategy):
    results = evaluate(AarenForecaster(max_horizon=3, **TINY), cv, y, strategy=strategy)
    assert len(results) == cv.get_n_splits(y)
    assert np.isfinite(results["test_MeanAbsolutePercentageError"]).all()


def test_multiplex_selects_a_backbone(y):
    multiplex = MultiplexForecaster(
        forecasters=[
            ("aaren", AarenForecaster(**TINY)),
            ("gru", AarenForecaster(backbone="gru", **TINY)),
        ],
        selected_forecaster="gru",
    )
    alone = AarenForecaster(backbone="gru", **TINY).fit(y, fh=[1, 2])
    pd.testing.assert_series_equal(multiplex.fit(y, fh=[1, 2]).predict(), alone.predict())


def test_stream_wrapper_refits_on_schedule(y):
    stream = UpdateRefitsEvery(AarenForecaster(max_horizon=3, **TINY), refit_interval=24)
    stream.fit(y.iloc[:100], fh=[1, 2, 3])
    stream.update(y.iloc[:130])
    assert stream.cutoff[0] == y.index[129]
    assert np.isfinite(stream.predict()).all()
