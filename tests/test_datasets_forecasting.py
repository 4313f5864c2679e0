"""Forecasting loaders: checksummed local files, the download path, the protocol's split."""

from __future__ import annotations

import dataclasses
import gzip
import shutil

import pandas as pd
import pytest
from helpers import DATA, needs_data

from aaren_ts.datasets import forecasting as fc
from aaren_ts.datasets import load_forecasting, split_borders, standard_split

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


@needs_data
@pytest.mark.parametrize("name", sorted(SHIPPED))
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


@needs_data
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


@needs_data
def test_altered_file_is_refused(monkeypatch, tmp_path):
    root = tmp_path / "data" / "forecasting"
    root.mkdir(parents=True)
    text = (DATA / "forecasting" / "national_illness.csv").read_bytes()
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
    with pytest.raises(FileNotFoundError, match=r"no direct download exists; place weather\.csv"):
        load_forecasting("weather")
    with pytest.raises(FileNotFoundError, match="download=False"):
        load_forecasting("ETTh2", download=False)


@needs_data
def test_download_verifies_and_caches(monkeypatch, tmp_path):
    """The real download code, fed from a file:// URL (CI has no internet)."""
    origin = tmp_path / "origin" / "ETTm1.csv"
    origin.parent.mkdir()
    origin.write_bytes(gzip.decompress((DATA / "forecasting" / "ETTm1.csv.gz").read_bytes()))
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
