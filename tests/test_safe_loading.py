"""Loading never runs code from the file by default.

Crafted files (consistent checksums, so only the payload is hostile) whose pickle names
``os.system``, ``builtins.eval``, ``subprocess.Popen``, ``pickle.loads`` ... are refused with
a ``ValueError`` naming the file and the global, and the payload's side effect (a marker
file) never happens, through ``aaren_ts.load``, ``load_from_path``, ``load_from_serial`` and
``sktime.base.load``. Full pickles (cloudpickle saves, format-1 files) need ``trusted=True``;
members that would inflate far beyond their compressed size are refused before inflating;
save errors name the target file; every estimator and the index types people fit on round
trip through the data format."""

from __future__ import annotations

import copy
import errno
import hashlib
import io
import json
import os
import pickle
import warnings
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from estimator_inputs import LABELS, TARGETS, TINY, events, panel, y_frame
from sktime.base import load as sktime_load

import aaren_ts
from aaren_ts.estimators import (
    AarenClassifier,
    AarenForecaster,
    AarenPointProcess,
    AarenRegressor,
    HawkesPointProcess,
    _persistence,
    _safe_pickle,
)
from aaren_ts.estimators._portable import PortableModule


@pytest.fixture(scope="module")
def regressor():
    return AarenRegressor(**TINY).fit(panel(), TARGETS)


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rewrite(path: Path, members: dict[str, bytes], **record_changes) -> None:
    """Write ``members`` to ``path`` with a record whose checksums match them (so only
    what the members say can stop the load)."""
    record = json.loads(members["_aaren_ts"])
    record.update(record_changes)
    record["sha256"] = {
        name: hashlib.sha256(data).hexdigest()
        for name, data in members.items()
        if name != "_aaren_ts"
    }
    members = {**members, "_aaren_ts": json.dumps(record).encode()}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


# ---------------------------------------------------------------------------- hostile payloads
class _Call:
    """Pickles as ``function(*args)``: what a crafted file runs when unpickled."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _payloads(marker: Path) -> dict[str, object]:
    """Each builds a marker file when unpickled, through a different global."""
    import subprocess

    command = f"touch {marker}"
    return {
        "os.system": _Call(os.system, command),
        "builtins.eval": _Call(eval, f"open({str(marker)!r}, 'w').close()"),
        "builtins.exec": _Call(exec, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.Popen": _Call(subprocess.Popen, ["touch", str(marker)]),
        "pathlib.Path.touch": _Call(Path.touch, marker),
        "pickle.loads": _Call(pickle.loads, pickle.dumps(_Call(os.system, command))),
        "torch.load": _Call(torch.load, str(marker)),
        "pandas.read_pickle": _Call(pd.read_pickle, str(marker)),
        "numpy.load": _Call(np.load, str(marker)),
        # a pandas.core.<package>.<module> name that is no data type (pandas 2's family)
        # (written by hand: pickle would name it pandas.eval, its public home)
        "pandas.core...eval": b"cpandas.core.computation.eval\neval\n(S'1 + 1'\ntR.",
        # a hostile getattr: only (ZoneInfo, "_unpickle") is served
        "getattr": _Call(getattr, pd.DataFrame, "to_pickle"),
        # inside an otherwise valid estimator state
        "nested": {"network_": [1, 2, _Call(os.system, command)]},
    }


@pytest.mark.parametrize("name", list(_payloads(Path("x"))))
def test_crafted_payload_is_refused_without_running(name, regressor, tmp_path):
    marker = tmp_path / "pwned"
    regressor.save(tmp_path / "model").close()
    path = tmp_path / "model.zip"
    payload = _payloads(marker)[name]
    payload = payload if isinstance(payload, bytes) else pickle.dumps(payload)
    _rewrite(path, {**_members(path), "_obj": payload})
    loaders = [
        lambda: aaren_ts.load(path),
        lambda: AarenRegressor.load_from_path(path),
        lambda: sktime_load(path),  # sktime unpickles _metadata (ours), then calls ours
        lambda: AarenRegressor.load_from_serial(path.read_bytes()),
    ]
    for load in loaders:
        with pytest.raises(ValueError, match=r"cannot load .*: it names .*trusted=True"):
            load()
        assert not marker.exists(), f"{name}: the payload ran"
    with pytest.raises(ValueError, match=rf"cannot load '{path}': it names "):
        aaren_ts.load(path)


def test_the_error_names_the_refused_global(regressor, tmp_path):
    regressor.save(tmp_path / "model").close()
    path = tmp_path / "model.zip"
    _rewrite(path, {**_members(path), "_obj": pickle.dumps(_Call(os.system, "true"))})
    with pytest.raises(ValueError, match=r"it names posix\.system, which a safe load does not"):
        aaren_ts.load(path)


def test_a_hostile_tensor_member_is_refused_by_torch(regressor, tmp_path):
    marker = tmp_path / "pwned"
    regressor.save(tmp_path / "model").close()
    path = tmp_path / "model.zip"
    hostile = io.BytesIO()
    torch.save({"0": _Call(os.system, f"touch {marker}")}, hostile)
    _rewrite(path, {**_members(path), "_tensors": hostile.getvalue()})
    with pytest.raises(ValueError, match=rf"cannot load '{path}': the saved estimator is corr"):
        aaren_ts.load(path)
    assert not marker.exists()


def test_a_network_record_naming_another_class_is_refused(regressor, tmp_path):
    """PortableModule rebuilds only the four networks, whatever allowed class a file names."""
    regressor.save(tmp_path / "model").close()
    path = tmp_path / "model.zip"
    fake = PortableModule.__new__(PortableModule)
    fake.__setstate__({"cls": AarenForecaster, "kwargs": {}, "state_dict": {}, "training": {}})
    crafted = copy.copy(regressor)
    crafted.network_ = fake
    data, tensors = _safe_pickle.dumps(crafted)
    _rewrite(path, {**_members(path), "_obj": data, "_tensors": tensors})
    with pytest.raises(ValueError, match=r"corrupted.*cannot rebuild a network of type"):
        aaren_ts.load(path)


def test_metadata_is_never_unpickled_by_aaren_ts_load(regressor, tmp_path):
    marker = tmp_path / "pwned"
    regressor.save(tmp_path / "model").close()
    path = tmp_path / "model.zip"
    hostile = pickle.dumps(_Call(os.system, f"touch {marker}"))
    _rewrite(path, {**_members(path), "_metadata": hostile})
    loaded = aaren_ts.load(path)  # _metadata is only for sktime's load
    assert not marker.exists()
    np.testing.assert_array_equal(loaded.predict(panel()), regressor.predict(panel()))


# ---------------------------------------------------------------------------- full pickles
def _format_1(estimator, path: Path) -> None:
    """A file as aaren_ts wrote it before the data format: a full pickle in _obj."""
    payload, metadata = pickle.dumps(estimator), pickle.dumps(type(estimator))
    record = {
        "format": "aaren_ts-estimator", "format_version": 1, "class": "x",
        "serialization_format": "pickle", "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload), "metadata_sha256": hashlib.sha256(metadata).hexdigest(),
    }  # fmt: skip
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("_metadata", metadata)
        archive.writestr("_obj", payload)
        archive.writestr("_aaren_ts", json.dumps(record))


def test_format_1_files_need_trusted(regressor, tmp_path):
    path = tmp_path / "old.zip"
    _format_1(regressor, path)
    with pytest.raises(ValueError, match=rf"'{path}': it holds a full pickle \(save format 1"):
        aaren_ts.load(path)
    with pytest.raises(ValueError, match="trusted=True"):
        sktime_load(path)
    loaded = aaren_ts.load(path, trusted=True)
    np.testing.assert_array_equal(loaded.predict(panel()), regressor.predict(panel()))
    loaded.save(tmp_path / "new").close()  # saving again converts it to the data format
    assert json.loads(_members(tmp_path / "new.zip")["_aaren_ts"])["payload"] == "data"
    np.testing.assert_array_equal(
        aaren_ts.load(tmp_path / "new").predict(panel()), regressor.predict(panel())
    )


def test_trusted_must_be_a_bool(regressor, tmp_path):
    regressor.save(tmp_path / "m").close()
    with pytest.raises(TypeError, match="trusted must be True or False"):
        aaren_ts.load(tmp_path / "m", trusted="yes")


def test_an_estimator_holding_other_objects_is_refused_at_save(tmp_path):
    model = AarenRegressor(**TINY).fit(panel(), TARGETS)
    model.note_ = Fraction(1, 3)  # not a data type the safe format builds
    with pytest.raises(ValueError, match=r"holds fractions\.Fraction.*cloudpickle"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m.zip").exists()
    model.save(tmp_path / "m", serialization_format="cloudpickle").close()
    assert aaren_ts.load(tmp_path / "m", trusted=True).note_ == Fraction(1, 3)


# ---------------------------------------------------------------------------- bounds and names
def test_a_member_that_inflates_too_far_is_refused_before_inflating(
    regressor, tmp_path, monkeypatch
):
    regressor.save(tmp_path / "model").close()
    path = tmp_path / "model.zip"
    members = _members(path)
    bomb = b"\x80\x05" + bytes(4 * 2**20)  # 4 MiB of zeros: deflates about 1000x
    _rewrite(path, {**members, "_obj": bomb})
    monkeypatch.setattr(_persistence, "FREE_BYTES", 2**20)  # scale the bound to the test
    read = []
    original = zipfile.ZipFile.read

    def recording_read(self, name, *args):
        read.append(name)
        return original(self, name, *args)

    monkeypatch.setattr(zipfile.ZipFile, "read", recording_read)
    pattern = rf"'{path}': member _obj declares 4194306 bytes .*zip bomb"
    with pytest.raises(ValueError, match=pattern):
        aaren_ts.load(path)
    assert "_obj" not in read  # refused from the declared size, before inflating
    with pytest.raises(ValueError, match="saved estimator is corrupted"):
        aaren_ts.load(path, trusted=True)  # trusted: inflated, then found not to be a model


def test_real_saves_stay_far_below_the_inflation_bound(tmp_path):
    """A long daily series and a wide network: the bound never bites a real file."""
    y = pd.Series(np.zeros(20_000), index=pd.date_range("1970", periods=20_000, freq="D"))
    model = AarenForecaster(max_epochs=1, d_model=64, n_layers=2, random_state=0)
    model.fit(y, fh=[1, 2])
    model.save(tmp_path / "big").close()
    with zipfile.ZipFile(tmp_path / "big.zip") as archive:
        ratios = [i.file_size / max(i.compress_size, 1) for i in archive.infolist()]
    assert max(ratios) < _persistence.MAX_INFLATION / 4
    assert aaren_ts.load(tmp_path / "big").predict().equals(model.predict())


def test_save_errors_name_the_target_not_a_temporary(regressor, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"cannot save to '.*missing/m\.zip': no dir"):
        regressor.save(tmp_path / "missing" / "m")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match=rf"cannot save to '{tmp_path / 'm.zip'}': No space") as e:
        regressor.save(tmp_path / "m")
    assert ".tmp-" not in str(e.value) and e.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []  # nothing left behind


# ---------------------------------------------------------------------------- round trips
def _series(index) -> pd.Series:
    return pd.Series(np.sin(np.arange(len(index)) / 3.0), index=index, name="y")


FITS = {
    "berlin_hourly": lambda: AarenForecaster(**TINY).fit(
        _series(pd.date_range("2020-03-28", periods=40, freq="h", tz="Europe/Berlin")), fh=[1, 2]
    ),
    "utc_hourly": lambda: AarenForecaster(**TINY).fit(
        _series(pd.date_range("2020", periods=40, freq="h", tz="UTC")), fh=[1, 2]
    ),
    "monthly_period": lambda: AarenForecaster(**TINY).fit(
        _series(pd.period_range("2020", periods=40, freq="M")), fh=[1, 2]
    ),
    "business_days": lambda: AarenForecaster(**TINY).fit(
        _series(pd.bdate_range("2020", periods=40)), fh=[1, 2]
    ),
    "string_panel": lambda: AarenForecaster(**TINY).fit(
        pd.concat({"s1": y_frame(), "s2": y_frame()}), fh=[1, 2]
    ),
    "dated_panel": lambda: AarenForecaster(**TINY).fit(
        pd.DataFrame(
            {"y": np.sin(np.arange(80.0))},
            index=pd.MultiIndex.from_product([["a", "b"], pd.date_range("2020", periods=40)]),
        ),
        fh=[1, 2],
    ),
    "windowed": lambda: AarenForecaster(context_length=8, **TINY).fit(y_frame(), fh=[1, 2]),
    "classifier_str": lambda: AarenClassifier(**TINY).fit(panel(), LABELS),
    "classifier_int": lambda: AarenClassifier(**TINY).fit(panel(), np.array([3, 7] * 4)),
    "regressor": lambda: AarenRegressor(**TINY).fit(panel(), TARGETS),
    "point_process": lambda: AarenPointProcess(**TINY).fit(events()),
    "hawkes": lambda: HawkesPointProcess().fit(events()),
    "unfitted": lambda: AarenForecaster(d_model=16),
}


def _same(a, b) -> None:
    if isinstance(a, AarenForecaster) and a.is_fitted:
        pd.testing.assert_frame_equal(pd.DataFrame(b.predict()), pd.DataFrame(a.predict()))
        assert b.cutoff.equals(a.cutoff)
    elif isinstance(a, (AarenClassifier, AarenRegressor)):
        np.testing.assert_array_equal(b.predict(panel()), a.predict(panel()))
    elif isinstance(a, (AarenPointProcess, HawkesPointProcess)):
        np.testing.assert_array_equal(b.score_samples(events()), a.score_samples(events()))
    assert b.get_params() == a.get_params()


@pytest.mark.parametrize("name", list(FITS))
def test_every_estimator_round_trips_through_the_data_format(name, tmp_path):
    model = FITS[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about on the machine it was saved on
        model.save(tmp_path / "m").close()
        record = json.loads(_members(tmp_path / "m.zip")["_aaren_ts"])
        assert record["payload"] == "data"
        for load in (aaren_ts.load, sktime_load):
            _same(model, load(tmp_path / "m.zip"))
        _same(model, sktime_load(model.save()))
