"""``plot_forecast``: history, point forecast and prediction intervals of one series."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ._mpl import figure_and_axes, plot_index

# Opacity of the widest interval band (an 80% band a few percent of the plot's height is still
# plainly visible); each narrower one is BAND_STEP more opaque, so the legend's swatches darken
# in the same order as the stacked bands do.
BAND_ALPHA, BAND_STEP = 0.3, 0.15


def _column(frame: pd.Series | pd.DataFrame, name: str, variable: Any) -> pd.Series:
    """One variable of a series or frame (the first when ``variable`` is None)."""
    if isinstance(frame, pd.Series):
        return frame
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas Series or DataFrame, got {type(frame).__name__}")
    if isinstance(frame.index, pd.MultiIndex):
        raise ValueError(f"{name} has a MultiIndex (a panel): plot one series at a time")
    if variable is None:
        variable = frame.columns[0]
    if variable not in frame.columns:
        raise ValueError(f"variable {variable!r} is not a column of {name}: {list(frame.columns)}")
    return frame[variable]


def plot_forecast(
    y: pd.Series | pd.DataFrame,
    y_pred: pd.Series | pd.DataFrame,
    intervals: pd.DataFrame | None = None,
    *,
    y_test: pd.Series | pd.DataFrame | None = None,
    variable: Any = None,
    ax: Any = None,
    title: str | None = None,
    label: str = "forecast",
    color: Any = "tab:blue",
) -> tuple[Any, Any]:
    """Plot a series' history, a point forecast and its prediction intervals.

    Parameters
    ----------
    y : pandas Series or DataFrame
        The history (one series).
    y_pred : pandas Series or DataFrame
        The point forecast, as ``predict`` returns it.
    intervals : pandas DataFrame, optional
        As ``predict_interval`` returns it: columns ``(variable, coverage, "lower"/"upper")``;
        each coverage is drawn as a shaded band (wider bands lighter), in the legend as
        ``"<label> 80% interval"``.
    y_test : pandas Series or DataFrame, optional
        The observed values over the forecast period, drawn as points.
    variable : optional
        The column to plot for multivariate data (default: the first).
    ax : matplotlib Axes, optional
        Draw here; default: a new figure.
    title : str, optional
    label : str, default "forecast"
        The forecast's legend entry (its bands': ``"<label> <coverage> interval"``).
    color : matplotlib color, default "tab:blue"
        Of the forecast and its bands.

    Returns
    -------
    fig, ax
        The matplotlib figure and axes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sktime.datasets import load_airline
    >>> from aaren_ts.estimators import AarenForecaster
    >>> from aaren_ts.plotting import plot_forecast
    >>> y = load_airline()
    >>> f = AarenForecaster(max_epochs=1, d_model=8, random_state=0).fit(y, fh=[1, 2, 3])
    >>> fig, ax = plot_forecast(y, f.predict(), f.predict_interval(coverage=[0.5, 0.9]))
    >>> [text.get_text() for text in ax.get_legend().get_texts()]  # one band per coverage
    ['history', 'forecast', 'forecast 90% interval', 'forecast 50% interval']
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    history = _column(y, "y", variable)
    forecast = _column(y_pred, "y_pred", variable)
    actual = None if y_test is None else _column(y_test, "y_test", variable)
    if intervals is not None:  # every input is checked before anything is drawn
        if not isinstance(intervals, pd.DataFrame) or intervals.columns.nlevels != 3:
            raise ValueError(
                "intervals must be predict_interval's DataFrame, with columns "
                "(variable, coverage, 'lower'/'upper')"
            )
        name = intervals.columns.get_level_values(0)[0] if variable is None else variable
        if name not in intervals.columns.get_level_values(0):
            raise ValueError(f"intervals has no variable {name!r}")
    fig, ax = figure_and_axes(ax, figsize=(9, 4))
    ax.plot(plot_index(history.index), history.to_numpy(), color="black", lw=1.2, label="history")
    if actual is not None:  # after the history, in its own style: what the forecast is judged on
        ax.plot(plot_index(actual.index), actual.to_numpy(), "o", color="black", ms=3,
                label="observed")  # fmt: skip
    ax.plot(plot_index(forecast.index), forecast.to_numpy(), color=color, lw=1.5, label=label)
    if intervals is not None:
        coverages = sorted(set(intervals[name].columns.get_level_values(0)), reverse=True)
        when = plot_index(intervals.index)
        for i, coverage in enumerate(coverages):  # widest first: narrower ones on top, darker
            band = intervals[name][coverage]
            ax.fill_between(
                when,
                band["lower"].to_numpy(dtype=float),
                band["upper"].to_numpy(dtype=float),
                color=color,
                alpha=min(BAND_ALPHA + BAND_STEP * i, 1.0),
                lw=0,
                label=f"{label} {coverage:.0%} interval",
            )
    ax.set_xlabel("time")
    ax.set_ylabel(str(history.name) if history.name is not None else "value")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left")
    return fig, ax
