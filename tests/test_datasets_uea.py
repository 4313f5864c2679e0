"""UEA loader: checksummed local files, ragged output kept ragged, the zip download path."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest
from helpers import DATA, needs_dataset

from aaren_ts.datasets import DataUnavailableError, _files, load_uea, uea
from aaren_ts.datasets import uea_path as find

# BasicMotions from AAREN_TS_DATA itself: the tests below build files and archives from it
basic_motions_files = needs_dataset("uea", "BasicMotions", cache=False, download=False)

SHIPPED = {  # name: (train cases, test cases, channels, length or None if ragged, classes)
    "JapaneseVowels": (270, 370, 12, None, 9),
    "BasicMotions": (40, 40, 6, 100, 4),
    "Handwriting": (150, 850, 3, 152, 26),
}


@pytest.fixture
def data_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AAREN_TS_DATA", str(DATA))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=needs_dataset("uea", n, cache=False)) for n in sorted(SHIPPED)]
)
def test_shipped_sets_load_verified(data_env, name):
    n_train, n_test, channels, length, classes = SHIPPED[name]
    X, y = load_uea(name, "train")
    X_test, y_test = load_uea(name, "test")
    assert (len(y), len(y_test)) == (n_train, n_test)
    assert len(set(y)) == classes and set(y_test) <= set(y)
    if length is None:  # ragged: kept as a pd-multiindex frame, no padding
        lengths = X.groupby(level=0).size()
        assert X.shape[1] == channels and lengths.min() == 7 and lengths.max() <= 29
        assert not X.isna().any().any()
    else:
        assert isinstance(X, np.ndarray) and X.shape == (n_train, channels, length)
        assert X_test.shape == (n_test, channels, length)


@needs_dataset("uea", "BasicMotions", "test", cache=False)
@needs_dataset("uea", "JapaneseVowels", "train", cache=False)
def test_return_type_and_sktime_agreement(data_env):
    from sktime.datasets import load_basic_motions

    X, y = load_uea("BasicMotions", "test", return_type="pd-multiindex")
    X_ref, y_ref = load_basic_motions(split="test", return_type="pd-multiindex")
    np.testing.assert_array_equal(X.to_numpy(), X_ref.to_numpy())
    np.testing.assert_array_equal(y, np.asarray(y_ref))
    listed, _ = load_uea("JapaneseVowels", "train", return_type="df-list")
    assert isinstance(listed, list) and isinstance(listed[0], pd.DataFrame)


def test_bad_names_and_splits():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_uea("BasicMotions", "valid")
    with pytest.raises(ValueError, match="UEA data set name"):
        load_uea("../etc", "train")


@basic_motions_files
def test_altered_file_is_refused(monkeypatch, tmp_path):
    folder = tmp_path / "data" / "classification" / "BasicMotions"
    folder.mkdir(parents=True)
    text = find("BasicMotions", "train", download=False).read_bytes()
    (folder / "BasicMotions_TRAIN.ts").write_bytes(text[:-50])
    monkeypatch.setenv("AAREN_TS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=r"does not match the published BasicMotions_TRAIN\.ts"):
        load_uea("BasicMotions")


def test_missing_file_without_download_says_where(monkeypatch, tmp_path):
    monkeypatch.setenv("AAREN_TS_DATA", str(tmp_path))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))
    relative = "classification/Handwriting/Handwriting_TEST.ts"
    with pytest.raises(DataUnavailableError, match=rf"^Handwriting: {relative} is not avail"):
        load_uea("Handwriting", "test", download=False)
    with pytest.raises(FileNotFoundError, match=r"download=False\. To fix: .*pass download=True$"):
        load_uea("Handwriting", "test", download=False)


def test_failed_download_is_one_line_that_says_how_to_fix_it(monkeypatch, tmp_path):
    """No network needed: a refusing fetch stands in for it; the archive's URL, the missing
    split's file, both places looked in and the ways to fix it are in the one line."""

    def refused(url, timeout):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(_files.urllib.request, "urlopen", refused)
    monkeypatch.setenv("AAREN_TS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataUnavailableError) as err:
        load_uea("JapaneseVowels", "test")
    relative = "classification/JapaneseVowels/JapaneseVowels_TEST.ts"
    cached = tmp_path / "cache" / relative
    assert str(err.value) == (
        f"JapaneseVowels: {relative} is not available: it is in neither AAREN_TS_DATA "
        f"({tmp_path / 'data' / relative}) nor the cache ({cached}), and the download of "
        f"{uea.UEA_URL.format(name='JapaneseVowels')} failed ([Errno 111] Connection refused). "
        f"To fix: set AAREN_TS_DATA to a folder holding {relative}, put the file at {cached}, "
        "or connect to the network"
    )
    assert err.value.__cause__ is None and err.value.__suppress_context__


def _basic_motions_folder():
    return find("BasicMotions", "train", download=False).parent


@basic_motions_files
def test_zip_download_verifies_unpacks_and_caches(monkeypatch, tmp_path):
    """The real download code, fed the archive's zip layout from a file:// URL."""
    source = _basic_motions_folder()
    archive = tmp_path / "origin" / "BasicMotions.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as z:
        for split in ("TRAIN", "TEST"):
            z.write(source / f"BasicMotions_{split}.ts", f"BasicMotions_{split}.ts")
    monkeypatch.setattr(uea, "UEA_URL", (tmp_path / "origin").as_uri() + "/{name}.zip")
    monkeypatch.setenv("AAREN_TS_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))
    X, _ = load_uea("BasicMotions", "test")
    cached = tmp_path / "cache" / "classification" / "BasicMotions"
    assert sorted(p.name for p in cached.iterdir()) == [
        "BasicMotions_TEST.ts",
        "BasicMotions_TRAIN.ts",
    ]
    assert X.shape == (40, 6, 100) and find("BasicMotions", "train", download=False).is_file()
    # a corrupted archive is refused and nothing is written
    for p in cached.iterdir():
        p.unlink()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("BasicMotions_TRAIN.ts", b"@problemName broken\n")
        z.write(source / "BasicMotions_TEST.ts", "BasicMotions_TEST.ts")
    with pytest.raises(ValueError, match="does not match the published BasicMotions_TRAIN"):
        load_uea("BasicMotions", "test")
    assert not any(cached.iterdir())
    archive.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a zip archive; nothing was saved"):
        load_uea("BasicMotions", "test")


@basic_motions_files
def test_ambiguous_unpinned_and_oversized_archives_are_refused(monkeypatch, tmp_path):
    source = _basic_motions_folder()
    archive = tmp_path / "origin" / "BasicMotions.zip"
    archive.parent.mkdir()
    monkeypatch.setattr(uea, "UEA_URL", (tmp_path / "origin").as_uri() + "/{name}.zip")
    monkeypatch.setenv("AAREN_TS_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "classification" / "BasicMotions"
    # two members named BasicMotions_TRAIN.ts (in different folders): which one is meant?
    with zipfile.ZipFile(archive, "w") as z:
        z.write(source / "BasicMotions_TRAIN.ts", "BasicMotions_TRAIN.ts")
        z.writestr("extra/BasicMotions_TRAIN.ts", b"@problemName other\n")
        z.write(source / "BasicMotions_TEST.ts", "BasicMotions_TEST.ts")
    with pytest.raises(ValueError, match=r"has 2 members named BasicMotions_TRAIN.ts"):
        load_uea("BasicMotions", "test")
    assert not cached.exists() or not any(cached.iterdir())
    # a member declaring more than the bound is refused before it is inflated
    with zipfile.ZipFile(archive, "w") as z:
        z.write(source / "BasicMotions_TRAIN.ts", "BasicMotions_TRAIN.ts")
        z.write(source / "BasicMotions_TEST.ts", "BasicMotions_TEST.ts")
    monkeypatch.setattr(uea, "MAX_MEMBER_BYTES", 1000)
    with pytest.raises(ValueError, match=r"declares \d+ bytes uncompressed, more than 1000"):
        load_uea("BasicMotions", "test")
    monkeypatch.setattr(uea, "MAX_MEMBER_BYTES", 2**31)
    # a data set without a pinned checksum needs allow_unpinned, refused before downloading
    monkeypatch.delitem(uea.UEA_SHA256, "BasicMotions_TRAIN.ts")
    monkeypatch.setattr(uea, "fetch", lambda *a, **k: pytest.fail("downloaded an unpinned set"))
    with pytest.raises(ValueError, match=r"BasicMotions_TRAIN.ts has no pinned SHA-256.*allow_unp"):
        load_uea("BasicMotions", "train")
    monkeypatch.undo()  # the test's other patches go too: set again what the rest needs
    monkeypatch.setattr(uea, "UEA_URL", (tmp_path / "origin").as_uri() + "/{name}.zip")
    monkeypatch.setenv("AAREN_TS_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("AAREN_TS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delitem(uea.UEA_SHA256, "BasicMotions_TRAIN.ts")
    with pytest.warns(UserWarning, match="no pinned checksum"):
        X, _ = load_uea("BasicMotions", "train", allow_unpinned=True)
    assert len(X) == 40
