"""AarenForecaster: sktime conformance, streaming exactness, panels, seeds, bad input."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sktime.datasets import load_airline
from sktime.forecasting.model_evaluation import evaluate
from sktime.split import ExpandingWindowSplitter
from sktime.utils.estimator_checks import check_estimator, parametrize_with_checks

from aaren_ts.estimators import AarenForecaster

TINY = {"d_model": 8, "n_layers": 1, "n_heads": 2, "max_epochs": 2, "random_state": 0}


# sktime's own notes while its suite runs: predict_proba without skpro installed, and a
# pandas 3 deprecation inside sktime's update_predict (neither is about this forecaster)
@pytest.mark.filterwarnings("ignore:Forecasters' predict_proba requires skpro:UserWarning")
@pytest.mark.filterwarnings("ignore:Sorting by default when concatenating all DatetimeIndex")
@parametrize_with_checks([AarenForecaster])
def test_sktime_conformance(obj, test_name):
    check_estimator(obj, tests_to_run=test_name, raise_exceptions=True)


def one_pass_median(forecaster: AarenForecaster, y: pd.DataFrame) -> np.ndarray:
    """Independent path: the whole history through the network in one parallel call, read
    out at the last row in its local units as the forecaster's quantile frame does."""
    mean, std = forecaster.scaling_[None]
    scaled = torch.tensor((y.to_numpy() - mean) / std, dtype=torch.float32)
    sequences, _ = forecaster._layout(scaled, None)
    with torch.no_grad():
        forecast, centre, scale, _ = forecaster.network_(sequences)
    if forecaster.channel_independent:  # one sequence per channel
        forecast = forecast[:, -1, :, 0].transpose(0, 1)
        centre, scale = centre[:, -1, 0], scale[:, -1, 0]
    else:
        forecast, centre, scale = forecast[0, -1], centre[0, -1], scale[0, -1]
    median_index = list(forecaster.quantiles).index(0.5)
    shifted = forecast.numpy().astype(np.float64) + forecaster.quantile_shifts_[:, None]
    # the forecaster reads its quantiles sorted (monotone), so the reference does too
    ordered = np.sort(shifted, axis=-1)[:, :, median_index]  # (H, C)
    local = ordered * scale.double().numpy() + centre.double().numpy()
    return local * std + mean


@pytest.mark.parametrize("backbone", ["aaren", "transformer", "gru"])
def test_updates_equal_one_pass_over_the_full_history(backbone):
    y = load_airline().to_frame()
    f = AarenForecaster(backbone=backbone, max_horizon=3, **TINY).fit(y.iloc[:100])
    for stop in (101, 102, 110, 125, 144):  # sktime passes whole windows: only news are read
        f.update(y.iloc[:stop], update_params=False)
        assert f.cutoff[0] == y.index[stop - 1]
        expected = one_pass_median(f, y.iloc[:stop])
        got = f.predict(fh=[1, 2, 3]).to_numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    recent = f.streams_[None]["state"].recent
    assert recent.shape == (1, f.network_.memory, 1)  # constant-size memory of the stream


def test_evaluate_with_update_strategy_runs_and_stays_constant_size():
    y = load_airline()
    f = AarenForecaster(max_horizon=3, **TINY)
    cv = ExpandingWindowSplitter(initial_window=100, step_length=6, fh=[1, 2, 3])
    results = evaluate(f, cv, y, strategy="update", return_data=False)
    assert len(results) == cv.get_n_splits(y) and np.isfinite(results.iloc[:, 0]).all()


def test_panel_is_one_global_model():
    idx = pd.MultiIndex.from_product(
        [["a", "b", "c"], pd.period_range("2000-01", periods=60, freq="M")]
    )
    rng = np.random.default_rng(0)
    y = pd.DataFrame({"v": rng.normal(size=180).cumsum()}, index=idx)
    f = AarenForecaster(**TINY).fit(y, fh=[1, 2])
    pred = f.predict()
    assert list(pred.index.get_level_values(0).unique()) == ["a", "b", "c"]
    assert len(pred) == 6 and np.isfinite(pred.to_numpy()).all()
    assert len(f.streams_) == 3  # one state per series, one network


def test_same_seed_same_forecasts_and_intervals_are_ordered():
    y = load_airline()
    a = AarenForecaster(**TINY).fit(y, fh=[1, 2, 3])
    b = AarenForecaster(**TINY).fit(y, fh=[1, 2, 3])
    pd.testing.assert_frame_equal(a.predict().to_frame(), b.predict().to_frame())
    q = a.predict_quantiles(alpha=[0.05, 0.1, 0.5, 0.9, 0.95])
    assert (np.diff(q.to_numpy(), axis=1) >= 0).all()


def test_failed_update_leaves_the_forecaster_unchanged():
    y = load_airline()
    f = AarenForecaster(max_horizon=2, **TINY).fit(y.iloc[:120])
    prediction = f.predict(fh=[1, 2])  # (predict stores fh: snapshot after it)
    before = pickle.dumps(f)
    bad = y.iloc[:130].copy()
    bad.iloc[-1] = np.inf  # passes sktime's NaN check, fails ours after the cutoff moved
    with pytest.raises(ValueError, match="NaN or inf"):
        f.update(bad, update_params=False)
    assert f.cutoff[0] == y.index[119]
    pd.testing.assert_series_equal(f.predict(fh=[1, 2]), prediction)
    assert pickle.dumps(f) == before


def test_bad_input_errors():
    y = load_airline()
    f = AarenForecaster(max_horizon=2, **TINY).fit(y)
    with pytest.raises(ValueError, match=r"must lie in 1\.\.2"):
        f.predict(fh=[3])
    with pytest.raises(ValueError, match="missing data"):  # sktime's own check, named
        AarenForecaster(**TINY).fit(y.where(y.index != y.index[5]))
    with pytest.raises(ValueError, match="NaN or inf"):
        AarenForecaster(**TINY).fit(y.replace(y.iloc[5], np.inf))
    with pytest.raises(ValueError, match=r"includes 0\.5"):
        AarenForecaster(quantiles=(0.1, 0.9), **TINY).fit(y)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            AarenForecaster(device="cuda", **TINY).fit(y)


def test_fitted_forecaster_deepcopies_and_pickles():
    y = load_airline()
    f = AarenForecaster(**TINY).fit(y, fh=[1])
    for clone in (copy.deepcopy(f), pickle.loads(pickle.dumps(f))):
        pd.testing.assert_series_equal(clone.predict(), f.predict())


@pytest.mark.parametrize("mode", [{}, {"context_length": 24}], ids=["full-history", "windowed"])
def test_update_params_fine_tunes_a_bounded_number_of_steps(mode):
    y = load_airline()
    f = AarenForecaster(max_horizon=3, update_steps=3, **mode, **TINY).fit(y.iloc[:100])
    frozen = copy.deepcopy(f)
    weights = [p.detach().clone() for p in f.network_.parameters()]
    f.update(y.iloc[:120], update_params=True)
    frozen.update(y.iloc[:120], update_params=False)
    tuned, kept = list(f.network_.parameters()), list(frozen.network_.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(weights, tuned, strict=True))  # moved ...
    assert all(torch.equal(a, b) for a, b in zip(weights, kept, strict=True))
    assert f.cutoff.equals(frozen.cutoff)  # ... and both advanced the state to the same cutoff
    assert not np.allclose(f.predict(fh=[1, 2, 3]), frozen.predict(fh=[1, 2, 3]))
    # with the new weights, the stream is exactly where reading from the old state leads
    again = AarenForecaster(max_horizon=3, update_steps=3, **mode, **TINY).fit(y.iloc[:100])
    again.update(y.iloc[:120], update_params=True)
    pd.testing.assert_series_equal(again.predict(fh=[1, 2, 3]), f.predict(fh=[1, 2, 3]))


def test_update_that_ends_before_the_cutoff_is_refused_atomically():
    y = load_airline()
    f = AarenForecaster(max_horizon=2, **TINY).fit(y.iloc[:120])
    cutoff = f.cutoff
    with pytest.raises(ValueError, match="before the last observation already absorbed"):
        f.update(y.iloc[:100], update_params=False)
    assert f.cutoff.equals(cutoff)  # sktime had moved it back; the failed call restored it
    with pytest.raises(ValueError, match="y is empty"):
        AarenForecaster(**TINY).fit(y.iloc[:0], fh=[1])


def test_verbose_reports_every_epoch(capsys):
    AarenForecaster(verbose=True, **{**TINY, "max_epochs": 3}).fit(load_airline(), fh=[1])
    err = capsys.readouterr().err
    assert "3/3" in err and "loss=" in err  # tqdm writes its bar to stderr


def lagged_effect_data(n: int = 300, seed: int = 0):
    """y[t+1] = 3 x[t] + small noise: only a model that reads X can forecast it."""
    rng = np.random.default_rng(seed)
    index = pd.period_range("2000-01-01", periods=n, freq="D")
    x = rng.normal(size=n)
    y = np.concatenate([[0.0], 3 * x[:-1]]) + 0.05 * rng.normal(size=n)
    return pd.Series(y, index=index, name="y"), pd.DataFrame({"x": x}, index=index)


def test_exogenous_past_values_are_used():
    y, X = lagged_effect_data()
    # 250 rows are one chunk a pass: 300 steps (epochs now make at least 50)
    params = {**TINY, "max_epochs": 60, "max_steps": 300, "lr": 1e-2, "d_model": 16}
    params["max_horizon"] = 1
    with_x = AarenForecaster(**params).fit(y.iloc[:250], X=X.iloc[:250])
    without = AarenForecaster(**params).fit(y.iloc[:250])
    err_x, err_plain = [], []
    for t in range(250, 299):
        with_x.update(y.iloc[: t + 1], X=X.iloc[: t + 1], update_params=False)
        without.update(y.iloc[: t + 1], update_params=False)
        truth = y.iloc[t + 1]
        err_x.append(abs(with_x.predict(fh=[1]).iloc[0] - truth))
        err_plain.append(abs(without.predict(fh=[1]).iloc[0] - truth))
    assert np.mean(err_x) < 0.5 * np.mean(err_plain)


def test_exogenous_input_errors_are_named():
    y, X = lagged_effect_data(60)
    f = AarenForecaster(max_horizon=1, **TINY).fit(y.iloc[:40], X=X.iloc[:40])
    with pytest.raises(ValueError, match="X is required"):
        f.update(y.iloc[:45], update_params=False)
    with pytest.raises(ValueError, match="not contained in index"):  # sktime's own check
        f.update(y.iloc[:45], X=X.iloc[:42], update_params=False)
    with pytest.raises(ValueError, match="differ from fit"):
        f.update(y.iloc[:45], X=X.iloc[:45].rename(columns={"x": "z"}), update_params=False)
    f.update(y.iloc[:45], X=X.iloc[:45], update_params=False)
    assert f.cutoff[0] == y.index[44]


def test_early_stopping_on_a_validation_tail():
    y = load_airline()
    params = {**TINY, "max_epochs": 300, "lr": 3e-2}
    f = AarenForecaster(validation_size=0.2, patience=2, **params).fit(y, fh=[1, 2])
    assert len(f.loss_history_) < 300
    with pytest.raises(ValueError, match="validation_size"):
        AarenForecaster(validation_size=1.5, **TINY).fit(y, fh=[1])


def one_window_median(forecaster: AarenForecaster, y: pd.DataFrame) -> np.ndarray:
    """Independent path for the windowed mode: the last L rows of the whole history."""
    from aaren_ts.estimators._forecast_net import window_forecast

    mean, std = forecaster.scaling_[None]
    scaled = (y.to_numpy() - mean) / std
    window = torch.tensor(scaled[-forecaster.context_length :], dtype=torch.float32)
    with torch.no_grad():
        forecast, centre, scale = window_forecast(
            forecaster.network_,
            window.unsqueeze(0),
            forecaster.n_lags,
            forecaster.channel_independent,
            stride=forecaster.token_stride,
        )
    shifted = forecast[0].numpy().astype(np.float64) + forecaster.quantile_shifts_[:, None]
    ordered = np.sort(shifted, axis=-1)[:, :, list(forecaster.quantiles).index(0.5)]
    return (ordered * scale[0].numpy() + centre[0].numpy()) * std + mean


@pytest.mark.parametrize(
    ("independent", "stride"),
    [(False, 1), (True, 1), (True, 4)],
    ids=["mixed", "independent", "patches"],
)
def test_windowed_mode_reads_only_the_last_context_length_rows(independent, stride):
    rng = np.random.default_rng(0)
    index = pd.period_range("2000-01-01", periods=160, freq="D")
    y = pd.DataFrame(rng.normal(size=(160, 2)).cumsum(0), index=index, columns=["a", "b"])
    f = AarenForecaster(
        context_length=24,
        channel_independent=independent,
        token_stride=stride,
        max_horizon=3,
        **{**TINY, "n_lags": max(stride, 2)},
    ).fit(y.iloc[:100])
    np.testing.assert_allclose(
        f.predict(fh=[1, 2, 3]), one_window_median(f, y.iloc[:100]), rtol=1e-5, atol=1e-6
    )
    for stop in (101, 110, 160):
        f.update(y.iloc[:stop], update_params=False)
        np.testing.assert_allclose(
            f.predict(fh=[1, 2, 3]), one_window_median(f, y.iloc[:stop]), rtol=1e-5, atol=1e-6
        )
        assert f.streams_[None]["window"].shape == (24, 2)  # constant memory: L rows
    # nothing before the window matters
    other = y.iloc[:160].copy()
    other.iloc[:100] = 0.0
    np.testing.assert_allclose(one_window_median(f, other), one_window_median(f, y), rtol=1e-6)


def test_channel_independent_full_history_streams_exactly():
    rng = np.random.default_rng(1)
    index = pd.period_range("2000-01-01", periods=120, freq="D")
    y = pd.DataFrame(rng.normal(size=(120, 3)).cumsum(0), index=index, columns=list("abc"))
    f = AarenForecaster(channel_independent=True, max_horizon=2, **TINY).fit(y.iloc[:80])
    f.update(y.iloc[:95], update_params=False)
    f.update(y, update_params=False)
    one = AarenForecaster(channel_independent=True, max_horizon=2, **TINY).fit(y.iloc[:80])
    # same seed, same weights; the whole history in one pass
    np.testing.assert_allclose(f.predict(fh=[1, 2]).to_numpy(), one_pass_median(one, y), rtol=1e-5)
    assert f.streams_[None]["state"].recent.shape == (3, f.network_.memory, 1)


def known_future_data(n: int = 400, seed: int = 0):
    """y[t] = 2 x[t] + small noise with x independent over time: only x at the forecast
    time can tell y there (past values of y and x say nothing)."""
    rng = np.random.default_rng(seed)
    index = pd.period_range("2000-01-01", periods=n, freq="D")
    x = rng.normal(size=n)
    y = 2 * x + 0.1 * rng.normal(size=n)
    return pd.Series(y, index=index, name="y"), pd.DataFrame({"x": x}, index=index)


@pytest.mark.parametrize(
    ("local_window", "bound"), [(None, 0.3), ("auto", 0.5)], ids=["fixed-scaling", "local"]
)
def test_known_future_exogenous_values_are_used_when_predict_has_them(local_window, bound):
    """With local scaling the forecast is read from the last value in local units, so on this
    memoryless series it keeps some of the last value's noise (the training level is not an
    input): X still halves the error, where with the training statistics it cuts it 3x."""
    y, X = known_future_data()
    params = {**TINY, "max_epochs": 30, "lr": 1e-2, "chunk_length": 32, "max_horizon": 2}
    if local_window == "auto":
        params.update(max_epochs=10, lr=3e-3, local_window=24)
    else:
        params.update(local_window=None, max_steps=300)
    f = AarenForecaster(**params).fit(y.iloc[:300], X=X.iloc[:300])
    err_future, err_blind = [], []
    for t in range(300, 360):
        f.update(y.iloc[: t + 1], X=X.iloc[: t + 1], update_params=False)
        truth = y.iloc[t + 1 : t + 3].to_numpy()
        err_future.append(np.abs(f.predict(fh=[1, 2], X=X.iloc[t + 1 : t + 3]) - truth).mean())
        err_blind.append(np.abs(f.predict(fh=[1, 2]) - truth).mean())
    # with X at the forecast times the error is near the noise; without, near |2x| ~ 1.6
    assert np.mean(err_future) < bound * np.mean(err_blind)
    assert np.mean(err_blind) < 2.0  # the blind forecast stays sound (near the mean)
    fh_x = X.iloc[360:362]
    with pytest.raises(ValueError, match="differ from fit"):
        f.predict(fh=[1, 2], X=fh_x.rename(columns={"x": "z"}))
    with pytest.raises(ValueError, match="NaN or inf"):
        f.predict(fh=[1, 2], X=fh_x.replace(fh_x.iloc[0, 0], np.inf))


def test_short_series_and_bad_parameters_are_named():
    y = load_airline()
    with pytest.raises(ValueError, match="fewer than the 25 the model needs"):
        AarenForecaster(context_length=24, **TINY).fit(y.iloc[:20], fh=[1])
    with pytest.raises(ValueError, match="fewer than the 2 the model needs"):
        AarenForecaster(**TINY).fit(y.iloc[:1], fh=[1])
    with pytest.raises(ValueError, match="20 observations before the validation tail, fewer"):
        AarenForecaster(context_length=24, validation_size=0.5, **TINY).fit(y.iloc[:40], fh=[1])
    with pytest.raises(ValueError, match="context_length must be"):
        AarenForecaster(context_length=1, **TINY).fit(y, fh=[1])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        AarenForecaster(batch_size=0, **TINY).fit(y, fh=[1])
    with pytest.raises(ValueError, match="token_stride applies to the windowed mode"):
        AarenForecaster(token_stride=4, **TINY).fit(y, fh=[1])
    f = AarenForecaster(**TINY).fit(y, fh=[1])
    with pytest.raises(ValueError, match="columns"):
        f.update(y.to_frame("other"), update_params=False)


def test_full_history_calibration_leaves_the_point_forecast_alone():
    y = load_airline()
    f = AarenForecaster(max_horizon=3, validation_size=0.3, **TINY).fit(y)
    median = list(f.quantiles).index(0.5)
    assert (f.quantile_shifts_[:, median] == 0).all()
    assert (f.quantile_shifts_[:, [0, -1]] != 0).all()  # the intervals are calibrated
