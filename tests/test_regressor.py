"""AarenRegressor: a known target learned on ragged series, prefix and stream predictions
against independent references, seeding, bad input, sklearn tools."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aaren_ts.estimators import AarenRegressor

TINY = {"d_model": 8, "n_layers": 1, "n_heads": 2, "max_epochs": 2, "random_state": 0}


def mean_level(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Ragged 2-channel series; the target is the mean of channel 0 over the whole series."""
    rng = np.random.default_rng(seed)
    series, target = [], []
    for _ in range(n):
        length = int(rng.integers(5, 20))
        level = rng.normal()
        values = np.stack([level + 0.5 * rng.normal(size=length), rng.normal(size=length)], 1)
        series.append(pd.DataFrame(values, columns=["a", "b"]))
        target.append(values[:, 0].mean())
    X = pd.concat(series, keys=range(n), names=["instance", "time"])
    return X, np.array(target)


@pytest.fixture(scope="module", params=["last", "mean"])
def fitted(request):
    X, y = mean_level(30, seed=0)
    return X, AarenRegressor(readout=request.param, **TINY).fit(X, y)


def test_learns_the_mean_of_a_ragged_series():
    X, y = mean_level(120, seed=1)
    X_test, y_test = mean_level(60, seed=2)
    reg = AarenRegressor(d_model=16, n_layers=1, max_epochs=40, random_state=0).fit(X, y)
    pred = reg.predict(X_test)
    r2 = 1 - ((pred - y_test) ** 2).sum() / ((y_test - y_test.mean()) ** 2).sum()
    assert r2 > 0.8


def test_prefix_pass_equals_truncated_series_and_stream(fitted):
    X, reg = fitted
    first = X.loc[[0, 1]]
    prefix = reg.predict_prefix(first)
    series = [X.loc[i].to_numpy() for i in (0, 1)]
    assert prefix.shape == (2, max(len(s) for s in series))
    for i, s in enumerate(series):
        truncated = [pd.DataFrame(s[: t + 1], columns=["a", "b"]) for t in range(len(s))]
        np.testing.assert_allclose(prefix[i, : len(s)], reg.predict(truncated), atol=1e-5)
        assert np.isnan(prefix[i, len(s) :]).all()
    stream = reg.start_stream()
    for t, x_t in enumerate(series[0]):
        assert abs(stream.update(x_t).predict()[0] - prefix[0, t]) < 1e-5


def test_ragged_batch_equals_each_series_alone(fitted):
    X, reg = fitted
    batch = reg.predict(X)
    alone = np.array([reg.predict(X.loc[[i]])[0] for i in range(30)])
    np.testing.assert_allclose(batch, alone, atol=1e-5)


def test_same_seed_same_predictions(fitted):
    X, _ = fitted
    y = np.arange(30, dtype=float)
    a = AarenRegressor(**TINY).fit(X, y).predict(X)
    b = AarenRegressor(**TINY).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)


def test_bad_input_is_named(fitted):
    X, reg = fitted
    with pytest.raises(ValueError, match="X has 1 channels but AarenRegressor was fitted on 2"):
        reg.predict(X[["a"]])
    bad = X.copy()
    bad.iloc[3, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        reg.predict(bad)
    before = reg.predict(X)
    with pytest.raises(ValueError, match="NaN or inf"):
        reg.fit(X, np.r_[np.nan, np.zeros(29)])
    np.testing.assert_array_equal(reg.predict(X), before)  # a failed fit changes nothing


def test_sklearn_grid_search_and_cross_val_score():
    from sklearn.model_selection import GridSearchCV, cross_val_score

    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 2, 6))
    y = X[:, 0].mean(1)
    search = GridSearchCV(AarenRegressor(**TINY), {"d_model": [4, 8]}, cv=2).fit(X, y)
    assert search.predict(X).shape == (12,)
    assert cross_val_score(AarenRegressor(**TINY), X, y, cv=3).shape == (3,)


def test_an_ensemble_predicts_the_mean_of_the_networks_its_seeds_fit_alone():
    X, y = mean_level(30, seed=3)
    tiny = {"d_model": 8, "n_layers": 1, "n_heads": 2, "max_epochs": 3}
    ensemble = AarenRegressor(**tiny, n_networks=2, random_state=2).fit(X, y)
    alone = [AarenRegressor(**tiny, random_state=s).fit(X, y) for s in (4, 5)]
    expected = np.mean([r.predict(X) for r in alone], axis=0)
    np.testing.assert_allclose(ensemble.predict(X), expected, rtol=1e-5, atol=1e-6)
    prefix = np.mean([r.predict_prefix(X) for r in alone], axis=0)
    np.testing.assert_allclose(ensemble.predict_prefix(X), prefix, rtol=1e-5, atol=1e-6)
