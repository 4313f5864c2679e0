"""Which past observations a fitted ``AarenForecaster`` reads at its forecast origin.

Each Aaren layer has one learned query; at the last position (the forecast origin) its softmax
weights over the past tokens say which observations the forecast is built from. They are
recomputed from the layers' own parameters by ``aaren_ts.nn.inspect`` while the network re-reads
the history exactly as the forecaster does (full-history mode: every observation from the
start; windowed mode: the last ``context_length`` observations, normalised per window).
"""

from __future__ import annotations

import textwrap
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from ._mpl import pyplot


class ForecastAttention(NamedTuple):
    """Attention of a forecaster at its forecast origin.

    ``index``: the time of each token (its newest observation), length ``n``.
    ``weights``: ``(n_layers, n_sequences, n_heads, n)``, summing to 1 over the last axis;
    ``n_sequences`` is the number of channels with ``channel_independent=True``, else 1.
    ``backbone``: the forecaster's backbone name.
    """

    index: pd.Index
    weights: np.ndarray
    backbone: str


def _single_frame(forecaster: Any, y: Any) -> pd.DataFrame:
    if isinstance(y, pd.Series):
        y = y.to_frame()
    if not isinstance(y, pd.DataFrame):
        raise TypeError(f"y must be a pandas Series or DataFrame, got {type(y).__name__}")
    if isinstance(y.index, pd.MultiIndex) or None not in forecaster.scaling_:
        raise ValueError("attention is shown for a forecaster fitted on one series, one at a time")
    if y.shape[1] != len(forecaster.columns_):
        raise ValueError(
            f"y has {y.shape[1]} columns; the forecaster was fitted on {forecaster.columns_}"
        )
    if len(y) == 0 or not np.isfinite(y.to_numpy(dtype=np.float64)).all():
        raise ValueError("y must be non-empty and finite")
    return y


def forecaster_attention(
    forecaster: Any, y: Any, X: pd.DataFrame | None = None
) -> ForecastAttention:
    """Each attention layer's (and head's) weights over past tokens at the forecast origin.

    Parameters
    ----------
    forecaster : AarenForecaster
        Fitted on one series, with ``backbone="aaren"`` (the learned query's weights) or
        ``"transformer"`` (the last token's causal attention weights).
    y : pandas Series or DataFrame
        The history the forecast is made from (what ``fit`` and ``update`` have seen); the
        network re-reads it with the current weights.
    X : pandas DataFrame, optional
        Exogenous data over ``y``'s times, when the forecaster was fitted with ``X``.

    Returns
    -------
    ForecastAttention

    Examples
    --------
    >>> from sktime.datasets import load_airline
    >>> from aaren_ts.estimators import AarenForecaster
    >>> from aaren_ts.plotting import forecaster_attention
    >>> y = load_airline()
    >>> f = AarenForecaster(max_epochs=1, d_model=8, n_heads=2, random_state=0).fit(y, fh=[1])
    >>> att = forecaster_attention(f, y)
    >>> att.weights.shape                   # (layers, sequences, heads, observations)
    (2, 1, 2, 144)
    """
    from ..nn.inspect import attention_layers, capture_attention

    forecaster.check_is_fitted()
    net = forecaster.network_
    # the full-history network wraps the windowed one's layers (StreamNet.core)
    backbone = net.core.backbone if forecaster.context_length is None else net.backbone
    try:
        attention_layers(backbone)
    except TypeError as err:
        raise TypeError(
            f"backbone={forecaster.backbone!r} has no attention weights to show; use "
            "backbone='aaren' or 'transformer'"
        ) from err
    frame = _single_frame(forecaster, y)
    values = forecaster._scaled(frame, forecaster.scaling_[None])
    x = None
    if forecaster.x_columns_ is not None:
        x_frame = forecaster._exogenous(X, [(None, frame)])[None]
        x = forecaster._scaled(x_frame, forecaster.x_scaling_[None])
    with capture_attention(backbone) as captured, torch.no_grad():
        if forecaster.context_length is None:
            sequences, exog = forecaster._layout(values, x)
            net(sequences, None, exog)
            index = frame.index
        else:
            from ..estimators._forecast_net import token_steps, window_forecast

            length = int(forecaster.context_length)
            if len(frame) < length:
                raise ValueError(
                    f"y has {len(frame)} observations, fewer than context_length={length}"
                )
            window = values[-length:].unsqueeze(0)
            x_window = None if x is None else x[-length:].unsqueeze(0)
            stride = int(forecaster.token_stride)
            window_forecast(
                net, window, forecaster.n_lags, forecaster.channel_independent, x_window,
                stride=stride,
            )  # fmt: skip
            index = frame.index[-length:][token_steps(length, stride).numpy()]
    weights = np.stack([w.cpu().numpy() for w in captured.weights])
    return ForecastAttention(index, weights, forecaster.backbone)


def plot_attention(
    forecaster: Any,
    y: Any,
    X: pd.DataFrame | None = None,
    *,
    sequence: int = 0,
    figsize: tuple[float, float] | None = None,
) -> tuple[Any, np.ndarray]:
    """Plot the series and, per layer below it, each head's attention weight at the forecast
    origin against the time of the token it weighs (``forecaster_attention``).

    Parameters
    ----------
    forecaster, y, X
        As ``forecaster_attention``.
    sequence : int, default 0
        With ``channel_independent=True``: the channel whose sequence is shown.
    figsize : (float, float), optional

    Returns
    -------
    fig, axes
        The figure and its ``n_layers + 1`` axes (the series first).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sktime.datasets import load_airline
    >>> from aaren_ts.estimators import AarenForecaster
    >>> from aaren_ts.plotting import plot_attention
    >>> y = load_airline()
    >>> f = AarenForecaster(max_epochs=1, d_model=8, n_heads=2, random_state=0).fit(y, fh=[1])
    >>> fig, axes = plot_attention(f, y)
    >>> len(axes), len(axes[1].lines)       # the series + 2 layers; 2 heads per layer
    (3, 2)
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    from ._mpl import plot_index

    plt = pyplot()
    att = forecaster_attention(forecaster, y, X)
    n_layers, n_seq, n_heads, _ = att.weights.shape
    if not 0 <= sequence < n_seq:
        raise ValueError(f"sequence must be in 0..{n_seq - 1}, got {sequence}")
    frame = _single_frame(forecaster, y)
    fig, axes = plt.subplots(
        n_layers + 1,
        1,
        sharex=True,
        figsize=figsize or (9, 2 + 1.6 * n_layers),
        squeeze=False,
        layout="constrained",  # a saved figure's labels are not cut
    )
    axes = axes[:, 0]
    column = sequence if forecaster.channel_independent else 0
    axes[0].plot(plot_index(frame.index), frame.iloc[:, column].to_numpy(), color="black", lw=1)
    when = plot_index(att.index)
    if forecaster.context_length is not None:
        axes[0].axvspan(when[0], when[-1], color="tab:orange", alpha=0.15, label="context window")
        axes[0].legend(loc="upper left")
    axes[0].set_ylabel("\n".join(textwrap.wrap(str(frame.columns[column]), 16)[:3]))
    query = "learned query" if att.backbone == "aaren" else "last token's query"
    axes[0].set_title(f"{att.backbone}: attention of each layer's {query} at the forecast origin")
    for layer in range(n_layers):
        ax = axes[layer + 1]
        for head in range(n_heads):
            ax.plot(when, att.weights[layer, sequence, head], lw=1, label=f"head {head}")
        ax.set_ylabel(f"layer {layer + 1}\nweight")
        ax.set_ylim(bottom=0)
    axes[1].legend(loc="upper left", ncol=min(n_heads, 4), fontsize="small")
    axes[-1].set_xlabel("time of the token weighed")
    return fig, axes
