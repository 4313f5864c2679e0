"""matplotlib, imported only when a plot is drawn (it is the optional ``plot`` extra)."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot``, or an ImportError that names the extra to install."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "aaren_ts.plotting needs matplotlib: pip install 'aaren-ts[plot]'"
        ) from err
    return plt


def figure_and_axes(ax: Any, nrows: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """``(fig, ax)``: the given axes' figure (its layout is the caller's), or a new figure with
    ``nrows`` axes and a constrained layout, so that a saved figure's labels are not cut."""
    if ax is not None:
        return ax.figure, ax
    plt = pyplot()
    fig, axes = plt.subplots(nrows, 1, layout="constrained", **kwargs)
    return fig, axes


def plot_index(index: Any) -> Any:
    """A time index matplotlib can draw: periods become timestamps, the rest is kept."""
    import pandas as pd

    if isinstance(index, pd.PeriodIndex):
        return index.to_timestamp()
    return index
