"""``aaren_ts.plotting``: the figures are produced (axes, lines, bands, labels) with the Agg
backend; the numbers behind them are checked against independent references (the attention
re-run reproduces the fitted forecast, the time-rescaled Hawkes events are Exp(1), the
numerical compensator equals the closed form and the model's own likelihood)."""

from __future__ import annotations

import io
import subprocess
import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sktime.datasets import load_airline, load_longley

from aaren_ts.datasets import EventSequence, make_hawkes
from aaren_ts.estimators import AarenForecaster, AarenPointProcess, HawkesPointProcess
from aaren_ts.plotting import (
    forecaster_attention,
    plot_attention,
    plot_forecast,
    plot_intensity,
    plot_qq,
    rescaled_times,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TINY = {"max_epochs": 1, "d_model": 8, "n_layers": 2, "n_heads": 2, "random_state": 0}
TRUTH = {"baseline": [0.3, 0.5], "adjacency": [[0.4, 0.2], [0.1, 0.3]], "decay": 2.0}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def airline():
    return load_airline()


@pytest.fixture(scope="module")
def hawkes_data():
    return make_hawkes(n_sequences=40, t_end=100.0, random_state=0, **TRUTH)


# ---------------------------------------------------------------------- forecasts
def assert_nothing_cut(fig):
    """Every label, title, tick label and legend of ``fig`` lies inside the saved figure."""
    fig.savefig(io.BytesIO(), format="png")  # lays the figure out as a saved file is
    renderer = fig.canvas.get_renderer()
    frame = fig.bbox

    def inside(box, what):
        assert box.x0 >= frame.x0 - 1 and box.x1 <= frame.x1 + 1, f"{what} cut: {box}"
        assert box.y0 >= frame.y0 - 1 and box.y1 <= frame.y1 + 1, f"{what} cut: {box}"

    for ax in fig.axes:
        for text in (ax.xaxis.label, ax.yaxis.label, ax.title):
            if text.get_text():
                inside(text.get_window_extent(renderer), repr(text.get_text()))
        inside(ax.get_tightbbox(renderer), "tick labels or legend")  # what is drawn of ax


def test_plot_forecast_draws_history_forecast_bands_and_labels(airline):
    f = AarenForecaster(**TINY).fit(airline.iloc[:-12], fh=list(range(1, 13)))
    intervals = f.predict_interval(coverage=[0.8, 0.95])
    fig, ax = plot_forecast(
        airline.iloc[:-12], f.predict(), intervals, y_test=airline.iloc[-12:], title="airline"
    )
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["history", "observed", "forecast"]
    history, observed, forecast = ax.lines
    assert len(history.get_xdata()) == 132 and len(forecast.get_xdata()) == 12
    assert observed.get_linestyle() == "None" and observed.get_marker() == "o"  # points, apart
    assert len(ax.collections) == 2  # one band per coverage
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [
        "history", "observed", "forecast", "forecast 95% interval", "forecast 80% interval"
    ]  # fmt: skip
    # each band spans predict_interval's bounds
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    bounds = intervals.xs(0.95, axis=1, level=1).to_numpy()
    assert band.min() == pytest.approx(bounds.min()) and band.max() == pytest.approx(bounds.max())
    # plainly visible, the narrower band darker, in the plot and in the legend alike
    wide, narrow = (c.get_facecolor()[0][3] for c in ax.collections)
    assert 0.3 <= wide < narrow
    handles = ax.get_legend().legend_handles[3:]
    assert [h.get_facecolor()[3] for h in handles] == pytest.approx([wide, narrow])
    assert ax.get_title() == "airline" and ax.get_ylabel() == airline.name
    assert fig.axes == [ax]
    assert_nothing_cut(fig)


def test_plot_forecast_label_and_color_name_the_forecast_and_its_bands(airline):
    f = AarenForecaster(**TINY).fit(airline.iloc[:-12], fh=list(range(1, 13)))
    _, ax = plot_forecast(
        airline.iloc[:-12], f.predict(), f.predict_interval(coverage=0.8),
        label="12-month forecast", color="tab:orange",
    )  # fmt: skip
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["history", "12-month forecast", "12-month forecast 80% interval"]
    orange = matplotlib.colors.to_rgb("tab:orange")
    assert matplotlib.colors.to_rgb(ax.lines[1].get_color()) == orange
    assert tuple(ax.collections[0].get_facecolor()[0][:3]) == pytest.approx(orange)


def test_plot_forecast_draws_on_given_axes_and_rejects_bad_input(airline):
    fig, (ax1, ax2) = plt.subplots(1, 2)
    y_pred = airline.iloc[-3:]
    out_fig, out_ax = plot_forecast(airline.iloc[:-3], y_pred, ax=ax2)
    assert out_fig is fig and out_ax is ax2 and len(ax2.lines) == 2 and not ax1.lines
    with pytest.raises(ValueError, match="predict_interval"):
        plot_forecast(airline, y_pred, intervals=pd.DataFrame({"a": [1.0]}), ax=ax1)
    assert not ax1.lines  # the inputs are checked before anything is drawn
    with pytest.raises(TypeError, match="pandas Series or DataFrame"):
        plot_forecast(airline.to_numpy(), y_pred)
    with pytest.raises(ValueError, match="not a column"):
        plot_forecast(airline.to_frame(), y_pred, variable="nope")


def test_plotting_imports_matplotlib_lazily_and_names_the_extra_when_missing():
    code = (
        "import sys; import aaren_ts.plotting; "
        "print('matplotlib' in sys.modules); "
        "sys.modules['matplotlib'] = None; sys.modules['matplotlib.pyplot'] = None\n"
        "import pandas as pd\n"
        "try:\n"
        "    aaren_ts.plotting.plot_forecast(pd.Series([1.0]), pd.Series([2.0]))\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)  # fmt: skip
    imported, message = result.stdout.strip().splitlines()
    assert imported == "False"
    assert "aaren-ts[plot]" in message


# ---------------------------------------------------------------------- attention
def test_full_history_attention_rereads_the_history_as_the_forecaster_did(airline):
    f = AarenForecaster(**TINY).fit(airline, fh=[1, 2])
    seen = []
    handle = f.network_.register_forward_hook(lambda m, a, out: seen.append(out[0]))
    att = forecaster_attention(f, airline)
    handle.remove()
    assert att.weights.shape == (2, 1, 2, 144) and att.index.equals(airline.index)
    np.testing.assert_allclose(att.weights.sum(-1), 1.0, atol=1e-12)
    assert (att.weights >= 0).all()
    # the re-run's forecast at the last step is the one fit stored: same tokens, same weights
    torch.testing.assert_close(seen[0][0, -1], f.streams_[None]["forecast"], rtol=1e-5, atol=1e-5)


def test_windowed_attention_weighs_the_strided_tokens_of_the_last_window(airline):
    y = pd.DataFrame({"a": airline.to_numpy(), "b": airline.to_numpy()[::-1].copy()},
                     index=airline.index)  # fmt: skip
    params = {"context_length": 24, "token_stride": 4, "n_lags": 4, "channel_independent": True}
    f = AarenForecaster(**TINY, **params).fit(y, fh=[1])
    att = forecaster_attention(f, y)
    # tokens end at the window's last step and every 4th step before it: 6 tokens per channel
    assert att.index.equals(y.index[-24:][3::4])
    assert att.weights.shape == (2, 2, 2, 6)
    np.testing.assert_allclose(att.weights.sum(-1), 1.0, atol=1e-12)
    _, axes = plot_attention(f, y, sequence=1)
    assert len(axes) == 3 and axes[0].patches  # the shaded context window
    assert [len(ax.lines) for ax in axes[1:]] == [2, 2]
    np.testing.assert_allclose(axes[2].lines[1].get_ydata(), att.weights[1, 1, 1])
    with pytest.raises(ValueError, match=r"sequence must be in 0\.\.1"):
        plot_attention(f, y, sequence=2)
    with pytest.raises(ValueError, match="fewer than context_length=24"):
        forecaster_attention(f, y.iloc[:10])


def test_plot_attention_figure_per_layer_and_head(airline):
    f = AarenForecaster(**TINY).fit(airline, fh=[1])
    fig, axes = plot_attention(f, airline)
    assert len(fig.axes) == 3
    assert_nothing_cut(fig)
    assert len(axes[0].lines) == 1 and "learned query" in axes[0].get_title()
    for layer, ax in enumerate(axes[1:], start=1):
        assert [line.get_label() for line in ax.lines] == ["head 0", "head 1"]
        assert ax.get_ylabel() == f"layer {layer}\nweight"
        assert len(ax.lines[0].get_ydata()) == 144


def test_attention_of_transformer_and_errors(airline):
    transformer = AarenForecaster(**TINY, backbone="transformer").fit(airline, fh=[1])
    _, axes = plot_attention(transformer, airline)
    assert "last token's query" in axes[0].get_title()
    gru = AarenForecaster(**{**TINY, "n_heads": 4}, backbone="gru").fit(airline, fh=[1])
    with pytest.raises(TypeError, match="backbone='gru' has no attention weights"):
        forecaster_attention(gru, airline)
    with pytest.raises(ValueError, match="columns"):
        forecaster_attention(transformer, pd.DataFrame({"a": airline, "b": airline}))


def test_attention_reads_exogenous_columns_when_fitted_with_x():
    y, X = load_longley()
    f = AarenForecaster(**TINY).fit(y, X=X, fh=[1])
    att = forecaster_attention(f, y, X)
    assert att.weights.shape == (2, 1, 2, len(y))
    np.testing.assert_allclose(att.weights.sum(-1), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="X is required"):
        forecaster_attention(f, y)


# ---------------------------------------------------------------------- point processes
def test_rescaled_times_under_the_true_hawkes_are_exp1_and_a_wrong_model_is_not(hawkes_data):
    truth = HawkesPointProcess.from_params(**TRUTH)
    r = rescaled_times(truth, hawkes_data)
    assert len(r) == sum(len(s.times) for s in hawkes_data) > 3000
    assert stats.kstest(r, "expon").statistic < 0.03
    assert abs(r.mean() - 1.0) < 0.05
    # a Poisson process with the right mean rate misses the clustering: clearly not Exp(1)
    rate = len(r) / (len(hawkes_data) * 100.0)
    poisson = HawkesPointProcess.from_params([rate / 2, rate / 2], np.zeros((2, 2)), 1.0)
    assert stats.kstest(rescaled_times(poisson, hawkes_data), "expon").statistic > 0.1
    # a fitted model is close to the truth
    fitted = HawkesPointProcess().fit(hawkes_data)
    assert stats.kstest(rescaled_times(fitted, hawkes_data), "expon").statistic < 0.03


def test_numerical_compensator_equals_the_closed_form(hawkes_data):
    truth = HawkesPointProcess.from_params(**TRUTH)
    closed = rescaled_times(truth, hawkes_data[:5], method="closed", pooled=False)
    numerical = rescaled_times(truth, hawkes_data[:5], method="numerical", pooled=False)
    for c, n in zip(closed, numerical, strict=True):
        np.testing.assert_allclose(n, c, rtol=1e-8, atol=1e-10)
    # and the closed form sums to the log-likelihood's integral term over [t_start, t_N]
    s = hawkes_data[0]
    mu, alpha, beta = truth.baseline_, truth.adjacency_, truth.decay_
    integral = mu.sum() * s.times[-1] + alpha[:, s.marks].sum(0) @ (
        1 - np.exp(-beta * (s.times[-1] - s.times))
    )
    assert closed[0].sum() == pytest.approx(integral, rel=1e-10)


def test_aaren_point_process_compensator_agrees_with_its_likelihood(hawkes_data):
    seqs = hawkes_data[:8]
    model = AarenPointProcess(d_model=8, n_layers=1, n_heads=2, max_epochs=1, random_state=0)
    model.fit(seqs)
    r = rescaled_times(model, seqs, pooled=False)
    # log p(tau_i) = log lambda(t_i) - (Lambda(t_i) - Lambda(t_{i-1})), for every event
    for s, increments, (time_ll, _, _) in zip(seqs, r, model.score_events(seqs), strict=True):
        log_lam = np.log(model.intensity(s, s.times).sum(1))
        np.testing.assert_allclose(log_lam - increments, time_ll, atol=2e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="method='closed' needs a fitted HawkesPointProcess"):
        rescaled_times(model, seqs, method="closed")
    with pytest.raises(ValueError, match="method must be"):
        rescaled_times(model, seqs, method="exact")


def test_plot_intensity_and_qq_figures(hawkes_data):
    truth = HawkesPointProcess.from_params(**TRUTH)
    seq = hawkes_data[0]
    fig, ax = plot_intensity(truth, seq, t_max=50.0, n_points=500)
    assert fig.axes == [ax]
    total, events = ax.lines
    assert total.get_label() == "total intensity" and len(total.get_xdata()) == 500
    assert events.get_label() == "events"
    np.testing.assert_array_equal(events.get_xdata(), seq.times[seq.times <= 50.0])
    # between events a Hawkes intensity only decays, never below the baseline
    assert total.get_ydata().min() >= sum(TRUTH["baseline"]) - 1e-12
    assert ax.get_xlabel() == "time" and "intensity" in ax.get_ylabel()
    assert_nothing_cut(fig)
    fig, ax = plot_intensity(truth, seq, by_mark=True)
    assert [line.get_label() for line in ax.lines] == ["mark 0", "mark 1", "events"]
    assert_nothing_cut(fig)
    with pytest.raises(ValueError, match="t_min < t_max"):
        plot_intensity(truth, seq, t_min=60.0, t_max=50.0)
    with pytest.raises(TypeError, match="has no intensity"):
        plot_intensity(object(), seq)
    fig, ax = plot_qq(truth, hawkes_data)
    points, diagonal = ax.lines
    assert diagonal.get_label() == "Exp(1)"
    n_events = sum(len(s.times) for s in hawkes_data)
    assert len(points.get_xdata()) == n_events and points.get_label() == f"{n_events} events"
    assert ax.get_title().startswith("time-rescaling QQ, KS = 0.0")
    assert ax.get_xlabel() == "Exp(1) quantile"
    assert_nothing_cut(fig)


def test_plot_qq_leaves_out_events_at_t_start(hawkes_data):
    """An event at its sequence's start (an origin, as in EasyTPP's data) has no interval
    before it: its rescaled time is 0 by construction, not a draw of Exp(1)."""
    truth = HawkesPointProcess.from_params(**TRUTH)
    seqs = hawkes_data[:5]
    origins = [
        EventSequence(np.r_[s.t_start, s.times], np.r_[0, s.marks], s.t_start, s.t_end)
        for s in seqs
    ]
    with_origin = rescaled_times(truth, origins, pooled=False)
    assert all(r[0] == 0.0 for r in with_origin)  # what plot_qq leaves out
    _, ax = plot_qq(truth, origins)
    n_after = sum(len(s.times) for s in seqs)
    assert len(ax.lines[0].get_ydata()) == n_after
    assert ax.lines[0].get_label() == f"{n_after} events"
    assert ax.lines[0].get_ydata().min() > 0.0
    np.testing.assert_array_equal(
        ax.lines[0].get_ydata(), np.sort(np.concatenate([r[1:] for r in with_origin]))
    )
    only_origin = EventSequence(np.array([0.0]), np.array([0]), 0.0, 10.0)
    with pytest.raises(ValueError, match="no events after their t_start"):
        plot_qq(truth, [only_origin])
