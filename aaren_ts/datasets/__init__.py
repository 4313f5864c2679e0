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
from .uea import UEA_SHA256, load_uea, uea_path

__all__ = [
    "FORECASTING_SOURCES",
    "UEA_SHA256",
    "ForecastingSplit",
    "forecasting_path",
    "load_forecasting",
    "load_uea",
    "split_borders",
    "standard_split",
    "uea_path",
]
