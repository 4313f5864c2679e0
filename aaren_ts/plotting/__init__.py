"""Plots (the ``plot`` extra, matplotlib, imported only when a plot is drawn).

- ``plot_forecast(y, y_pred, intervals)``: history, point forecast, prediction intervals;
- ``plot_attention(forecaster, y)``: each layer's attention weights at the forecast origin
  (``forecaster_attention`` returns them without a figure);
- ``plot_intensity(model, sequence)`` and ``plot_qq(model, sequences)``: a point process's
  conditional intensity, and the time-rescaling QQ plot (``rescaled_times`` without a figure).

Every plot returns ``(fig, ax)`` (or ``(fig, axes)``) and never calls ``plt.show()``.
"""

from .attention import ForecastAttention, forecaster_attention, plot_attention
from .events import intensity, plot_intensity, plot_qq, rescaled_times
from .forecast import plot_forecast

__all__ = [
    "ForecastAttention",
    "forecaster_attention",
    "intensity",
    "plot_attention",
    "plot_forecast",
    "plot_intensity",
    "plot_qq",
    "rescaled_times",
]
