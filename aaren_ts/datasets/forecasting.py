"""Long-horizon forecasting benchmarks (Informer / Time-Series-Library line) as DataFrames.

``load_forecasting(name)`` looks for the file, in order, in

1. ``$AAREN_TS_DATA`` (``<root>/forecasting/<file>`` or ``<root>/<file>``, ``.csv`` or ``.csv.gz``);
2. the cache folder (``$AAREN_TS_CACHE``, else ``~/.cache/aaren_ts``), under ``forecasting/``;
3. the canonical source, downloaded into the cache (``DataUnavailableError``, one line that
   says where to put the file, where none of these has it),

and checks the SHA-256 of the CSV bytes (decompressed) every time, so a truncated or altered
file is an error, not a silent difference in results. ``standard_split`` gives the
train/validation/test split and the train-only standardisation of the protocol.
"""

from __future__ import annotations

import gzip
import hashlib
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from .._checks import boolean, positive_int
from ._files import (
    cache_dir,
    check_sha256,
    fetch,
    local_roots,
    unavailable,
    write_atomically,
)

_ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{}.csv"


@dataclass(frozen=True)
class ForecastingSource:
    """Where a data set comes from and what its CSV must hash to."""

    file: str  # CSV file name (a ``.gz`` beside it is accepted too)
    sha256: str  # of the uncompressed CSV bytes
    url: str | None  # canonical download; None where the source has no direct link
    split: str  # "ett_hourly", "ett_minute" or "ratio" (70/10/20)
    lookback: int = 96  # the protocol's default lookback window


FORECASTING_SOURCES: dict[str, ForecastingSource] = {
    "ETTh1": ForecastingSource(
        "ETTh1.csv",
        "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
        _ETT_URL.format("ETTh1"),
        "ett_hourly",
    ),
    "ETTh2": ForecastingSource(
        "ETTh2.csv",
        "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",
        _ETT_URL.format("ETTh2"),
        "ett_hourly",
    ),
    "ETTm1": ForecastingSource(
        "ETTm1.csv",
        "6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e",
        _ETT_URL.format("ETTm1"),
        "ett_minute",
    ),
    "ETTm2": ForecastingSource(
        "ETTm2.csv",
        "db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd",
        _ETT_URL.format("ETTm2"),
        "ett_minute",
    ),
    # The three below are distributed as TSLib/Autoformer's copies, on a shared drive without
    # stable direct links: they load from AAREN_TS_DATA or the cache folder.
    "weather": ForecastingSource(
        "weather.csv",
        "34ee981d07313e51da2a50bb600072c8ae4a69cb4b0651f4cb93a069d7a2ba63",
        None,
        "ratio",
    ),
    "exchange_rate": ForecastingSource(
        "exchange_rate.csv",
        "d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97",
        None,
        "ratio",
    ),
    "national_illness": ForecastingSource(
        "national_illness.csv",
        "8594cecb98c6f2f9dc014eca11c4d5d1e38ad5ce6ed0592d4abe65b146fce395",
        None,
        "ratio",
        lookback=36,
    ),
}


def _source(name: str) -> ForecastingSource:
    if not isinstance(name, str) or name not in FORECASTING_SOURCES:
        raise ValueError(
            f"unknown forecasting data set {name!r}; available: {sorted(FORECASTING_SOURCES)}"
        )
    return FORECASTING_SOURCES[name]


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.suffix == ".gz" else raw


def _candidates(folder: Path, file: str) -> list[Path]:
    return [folder / sub / (file + gz) for sub in ("forecasting", "") for gz in ("", ".gz")]


def _verified(path: Path, source: ForecastingSource) -> bytes:
    try:
        data = _read_bytes(path)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    check_sha256(data, source.sha256, source.file, str(path))
    return data


def _relative(source: ForecastingSource) -> str:
    return f"forecasting/{source.file}"


def _download(name: str, source: ForecastingSource, target: Path) -> None:
    """Fetch ``source.url`` into ``target``, atomically, after checking its checksum."""
    data = fetch(source.url, name, _relative(source))
    digest = hashlib.sha256(data).hexdigest()
    if digest != source.sha256:
        raise ValueError(
            f"download of {source.url} has sha256 {digest}, expected {source.sha256}; "
            "nothing was saved"
        )
    write_atomically(target, data)


def _local(name: str, cache: bool = True) -> Path | None:
    """The first local copy of ``name`` (not verified), or None."""
    source = _source(name)
    paths = (p for root in local_roots(cache) for p in _candidates(root, source.file))
    return next((p for p in paths if p.is_file()), None)


def _missing(name: str, cache: bool = True) -> dict[str, str | None]:
    source = _source(name)
    return {} if _local(name, cache) is not None else {_relative(source): source.url}


def forecasting_path(name: str, download: bool = True) -> Path:
    """The verified local CSV (or ``.csv.gz``) of ``name``, downloading it if needed.

    Raises ``DataUnavailableError`` where it is neither local nor downloadable."""
    source = _source(name)
    download = boolean(download, "download")
    path = _local(name)
    if path is not None:
        _verified(path, source)
        return path
    if source.url is None:
        raise unavailable(name, _relative(source), "no direct download exists", None)
    if not download:
        raise unavailable(name, _relative(source), "download=False", "pass download=True")
    target = cache_dir() / _relative(source)
    _download(name, source, target)
    return target


def load_forecasting(name: str, download: bool = True) -> pd.DataFrame:
    """Load a forecasting benchmark as a DataFrame indexed by time.

    Parameters
    ----------
    name : str
        One of ``ETTh1``, ``ETTh2``, ``ETTm1``, ``ETTm2``, ``weather``, ``exchange_rate``,
        ``national_illness``.
    download : bool, default True
        Fetch from the canonical source when the file is in neither ``AAREN_TS_DATA`` nor the
        cache (the ETT sets; the others must be placed by hand).

    Returns
    -------
    pandas.DataFrame
        One float column per channel (target ``OT`` last), a ``DatetimeIndex`` named ``date``.
        ``exchange_rate``'s index is TSLib's synthetic daily one (1990-01-01 onwards), not
        trading days. ``weather`` repeats one timestamp (2020-05-12 06:00, two rows), as the
        published copy does; the protocol's windows are by row, so the rows are kept, but an
        sktime forecaster needs ``frame[~frame.index.duplicated()]``.

    Examples
    --------
    >>> from aaren_ts.datasets import load_forecasting
    >>> df = load_forecasting("ETTh1")  # doctest: +SKIP
    >>> df.shape, df.columns[-1]  # doctest: +SKIP
    ((17420, 7), 'OT')
    """
    path = forecasting_path(name, download)
    frame = pd.read_csv(path, parse_dates=["date"], index_col="date")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame.astype("float64")


class ForecastingSplit(NamedTuple):
    """Train/validation/test frames (val and test start ``lookback`` rows early) and the
    per-channel train mean and standard deviation used to standardise them."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    mean: pd.Series
    std: pd.Series

    def scale(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Standardise with the train statistics."""
        return (frame - self.mean) / self.std

    def unscale(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Undo ``scale``."""
        return frame * self.std + self.mean


def _lookback(value) -> int:
    """``lookback`` as an int >= 0 (rows of history before validation and test)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"lookback must be an int >= 0 (rows), got {value!r}")
    if value < 0:
        raise ValueError(f"lookback must be >= 0 (rows), got {value}")
    return int(value)


def split_borders(name: str, n_rows: int, lookback: int | None = None) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of train, validation and test, per the standard protocol.

    ETT hourly: 12/4/4 months of 30 days; ETT 15-minute: the same times, 4 rows per hour;
    the others: 70/10/20 in time order. Validation and test start ``lookback`` rows early, so
    that their first window has a full history.
    """
    source = _source(name)
    n_rows = positive_int(n_rows, "n_rows")
    lookback = source.lookback if lookback is None else _lookback(lookback)
    if source.split.startswith("ett"):
        per_month = 30 * 24 * (4 if source.split == "ett_minute" else 1)
        ends = [12 * per_month, 16 * per_month, 20 * per_month]
    else:
        n_train, n_test = int(n_rows * 0.7), int(n_rows * 0.2)
        ends = [n_train, n_rows - n_test, n_rows]
    if ends[-1] > n_rows or ends[0] <= lookback:
        raise ValueError(f"{name}: {n_rows} rows are too few for the protocol's split")
    return [(0, ends[0]), (ends[0] - lookback, ends[1]), (ends[1] - lookback, ends[2])]


def standard_split(
    name: str, frame: pd.DataFrame | None = None, lookback: int | None = None
) -> ForecastingSplit:
    """The protocol's split of ``name`` (loaded if ``frame`` is None) and train-only scaling.

    Examples
    --------
    >>> from aaren_ts.datasets import standard_split
    >>> split = standard_split("ETTh1")  # doctest: +SKIP
    >>> len(split.train), len(split.val), len(split.test)  # doctest: +SKIP
    (8640, 2976, 2976)
    """
    frame = load_forecasting(name) if frame is None else frame
    (a, b), (c, d), (e, f) = split_borders(name, len(frame), lookback)
    train = frame.iloc[a:b]
    std = train.std(ddof=0).replace(0.0, 1.0)  # a constant channel scales by 1, not by 0
    return ForecastingSplit(train, frame.iloc[c:d], frame.iloc[e:f], train.mean(), std)
