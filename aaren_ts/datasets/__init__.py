"""Loaders for the benchmark data sets (reading ``AAREN_TS_DATA`` first, then a checksummed
download cache, then downloading; ``DataUnavailableError`` where none works).
``data_available`` / ``missing_files`` say what a loader would have to download."""

from ._available import data_available, missing_files
from ._files import DataUnavailableError
from .events import (
    EventSequence,
    as_event_sequences,
    load_event_sequences,
    make_hawkes,
    make_sine_poisson,
)
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
    "DataUnavailableError",
    "EventSequence",
    "ForecastingSplit",
    "as_event_sequences",
    "data_available",
    "forecasting_path",
    "load_event_sequences",
    "load_forecasting",
    "load_uea",
    "make_hawkes",
    "make_sine_poisson",
    "missing_files",
    "split_borders",
    "standard_split",
    "uea_path",
]
