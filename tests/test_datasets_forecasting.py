"""Forecasting loaders: checksummed local files, the download path, the protocol's split."""

from __future__ import annotations

import dataclasses
import shutil

import pandas as pd
import pytest
from helpers import DATA, needs_dataset

from aaren_ts.datasets import (
    DataUnavailableError,
    data_available,
    load_forecasting,
    missing_files,
    split_borders,
    standard_split,
)
from aaren_ts.datasets import forecasting as fc

SHIPPED = {  # name: (rows, channels) from the data README
    "ETTh1": (17420, 7),
    "ETTm1": (69680, 7),
    "weather": (52696, 21),
    "exchange_rate": (7588, 8),
    "national_illness": (966, 7),
}


@pytest.fixture
def data_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AAREN_TS_DATA", str(DATA))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=needs_dataset("forecasting", n, cache=False)) for n in sorted(SHIPPED)],
)
def test_shipped_sets_load_verified(data_env, name):
    frame = load_forecasting(name)
    assert frame.shape == SHIPPED[name]
    assert isinstance(frame.index, pd.DatetimeIndex) and frame.index.name == "date"
    assert frame.index.is_monotonic_increasing
    repeated = frame.index[frame.index.duplicated()]
    # The published weather file repeats one timestamp (documented); every other set is unique.
    expected = ["2020-05-12 06:00:00"] if name == "weather" else []
    assert [str(t) for t in repeated] == expected
    assert frame.columns[-1] == "OT"
    assert (frame.dtypes == "float64").all() and not frame.isna().any().any()


@needs_dataset("forecasting", "ETTh1", cache=False)
def test_ett_split_follows_the_protocol(data_env):
    split = standard_split("ETTh1")
    assert (len(split.train), len(split.val), len(split.test)) == (8640, 2880 + 96, 2880 + 96)
    assert split.val.index[0] == split.train.index[-96]  # the lookback is prepended
    scaled = split.scale(split.train)
    assert scaled.mean().abs().max() < 1e-9 and (scaled.std(ddof=0) - 1).abs().max() < 1e-9
    pd.testing.assert_frame_equal(split.unscale(split.scale(split.test)), split.test)
    assert split_borders("ETTm1", 69680)[0] == (0, 4 * 8640)


def test_ratio_split_borders():
    # TSLib: 70% train, 20% test, the rest validation; lookback 36 for ILI by default.
    assert split_borders("national_illness", 966) == [(0, 676), (640, 773), (737, 966)]
    assert split_borders("weather", 52696, lookback=96)[1] == (36887 - 96, 52696 - 10539)
    with pytest.raises(ValueError, match="too few"):
        split_borders("ETTh1", 1000)


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown forecasting data set 'ETTh9'"):
        load_forecasting("ETTh9")


@needs_dataset("forecasting", "national_illness", cache=False, download=False)
def test_altered_file_is_refused(monkeypatch, tmp_path):
    text = fc._read_bytes(fc.forecasting_path("national_illness", download=False))
    root = tmp_path / "data" / "forecasting"
    root.mkdir(parents=True)
    (root / "national_illness.csv").write_bytes(text[:-100])  # truncated
    monkeypatch.setenv("AAREN_TS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=r"does not match the published national_illness\.csv"):
        load_forecasting("national_illness")
    (root / "national_illness.csv").unlink()
    (root / "national_illness.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="cannot read"):
        load_forecasting("national_illness")


def test_missing_file_says_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.setenv("AAREN_TS_DATA", str(tmp_path))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "forecasting" / "weather.csv"
    with pytest.raises(DataUnavailableError) as err:
        load_forecasting("weather")
    assert str(err.value) == (
        f"weather: forecasting/weather.csv is not available: it is in neither AAREN_TS_DATA "
        f"({tmp_path / 'forecasting' / 'weather.csv'}) nor the cache ({cached}), and no direct "
        "download exists. To fix: set AAREN_TS_DATA to a folder holding "
        f"forecasting/weather.csv or put the file at {cached}"
    )
    with pytest.raises(FileNotFoundError, match=r"download=False\. To fix: .* pass download=True"):
        load_forecasting("ETTh2", download=False)


def test_failed_download_is_one_line_that_says_how_to_fix_it(monkeypatch, tmp_path):
    """No network needed: the source points at a port nothing listens on, which fails at
    once; the error is one line, an OSError, with no chained traceback."""
    source = dataclasses.replace(fc.FORECASTING_SOURCES["ETTh1"], url="http://127.0.0.1:9/x.csv")
    monkeypatch.setitem(fc.FORECASTING_SOURCES, "ETTh1", source)
    monkeypatch.delenv("AAREN_TS_DATA", raising=False)
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataUnavailableError) as err:
        load_forecasting("ETTh1")
    message, cached = str(err.value), tmp_path / "cache" / "forecasting" / "ETTh1.csv"
    assert isinstance(err.value, OSError) and "\n" not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert message.startswith(
        "ETTh1: forecasting/ETTh1.csv is not available: it is in neither AAREN_TS_DATA (not "
        f"set) nor the cache ({cached}), and the download of http://127.0.0.1:9/x.csv failed ("
    )
    assert message.endswith(
        "To fix: set AAREN_TS_DATA to a folder holding forecasting/ETTh1.csv, put the file at "
        f"{cached}, or connect to the network"
    )
    assert not cached.parent.exists()  # nothing half-written


@needs_dataset("forecasting", "ETTm1", cache=False, download=False)
def test_download_verifies_and_caches(monkeypatch, tmp_path):
    """The real download code, fed from a file:// URL (CI has no internet)."""
    origin = tmp_path / "origin" / "ETTm1.csv"
    origin.parent.mkdir()
    origin.write_bytes(fc._read_bytes(fc.forecasting_path("ETTm1", download=False)))
    source = dataclasses.replace(fc.FORECASTING_SOURCES["ETTm1"], url=origin.as_uri())
    monkeypatch.setitem(fc.FORECASTING_SOURCES, "ETTm1", source)
    monkeypatch.setenv("AAREN_TS_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))
    frame = load_forecasting("ETTm1")
    cached = tmp_path / "cache" / "forecasting" / "ETTm1.csv"
    assert cached.is_file() and frame.shape == SHIPPED["ETTm1"]
    # a corrupted download is refused and leaves nothing behind
    cached.unlink()
    origin.write_bytes(origin.read_bytes()[:-10])
    with pytest.raises(ValueError, match="nothing was saved"):
        load_forecasting("ETTm1")
    assert not any((tmp_path / "cache" / "forecasting").iterdir())
    shutil.rmtree(tmp_path / "cache")


def test_missing_files_says_what_a_loader_would_download(monkeypatch, tmp_path):
    """Every loader's files are looked for where the loader looks (AAREN_TS_DATA, then the
    cache unless cache=False), by presence only; nothing is downloaded or verified."""
    monkeypatch.setenv("AAREN_TS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fc, "fetch", lambda *a, **k: pytest.fail("downloaded"))
    etth1 = fc.FORECASTING_SOURCES["ETTh1"].url
    assert missing_files("forecasting", "ETTh1") == {"forecasting/ETTh1.csv": etth1}
    assert missing_files("forecasting", "weather") == {"forecasting/weather.csv": None}
    (tmp_path / "cache" / "forecasting").mkdir(parents=True)
    (tmp_path / "cache" / "forecasting" / "ETTh1.csv.gz").touch()  # a .gz copy counts
    assert data_available("forecasting", "ETTh1")
    assert not data_available("forecasting", "ETTh1", cache=False)
    assert sorted(missing_files("uea", "BasicMotions")) == [
        "classification/BasicMotions/BasicMotions_TEST.ts",
        "classification/BasicMotions/BasicMotions_TRAIN.ts",
    ]
    (tmp_path / "data" / "BasicMotions").mkdir(parents=True)  # <root>/<Name>/ counts too
    (tmp_path / "data" / "BasicMotions" / "BasicMotions_TEST.ts").touch()
    assert list(missing_files("uea", "BasicMotions")) == [
        "classification/BasicMotions/BasicMotions_TRAIN.ts"
    ]
    assert data_available("uea", "BasicMotions", "test", cache=False)
    assert list(missing_files("events", "taxi", "valid")) == ["tpp/taxi/valid.json"]
    assert len(missing_files("events", "taxi")) == 3  # every split
    assert list(missing_files("events", "hawkes1", "test")) == ["tpp/synthetic_hawkes/hawkes1.npz"]
    for args, message in [
        (("images", "mnist"), "kind must be one of"),
        (("forecasting", "ETTh1", "train"), "no split"),
        (("forecasting", "ETTh9"), "unknown forecasting data set"),
        (("uea", "../etc"), "UEA data set name"),
        (("events", "taxi", "dev"), "split must be one of"),
        (("events", "hawkes1", "dev"), "split must be one of"),
        (("events", "nope"), "unknown event data set"),
    ]:
        with pytest.raises(ValueError, match=message):
            missing_files(*args)
