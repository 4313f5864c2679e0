"""Loaders for the benchmark data sets (reading ``AAREN_TS_DATA`` first, then a checksummed
download cache)."""

from .forecasting import (
    FORECASTING_SOURCES,
    ForecastingSplit,
    forecasting_path,
    load_forecasting,
    split_borders,
    standard_split,
)

__all__ = [
    "FORECASTING_SOURCES",
    "ForecastingSplit",
    "forecasting_path",
    "load_forecasting",
    "split_borders",
    "standard_split",
]
