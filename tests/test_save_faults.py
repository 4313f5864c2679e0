"""``save`` under faults: a writer killed mid-save (SIGKILL) or failing mid-save leaves the
previous file intact, and damaged files (truncated, flipped bytes, missing members, not a zip,
a bad pickle) give a ``ValueError`` naming the file instead of a traceback from zipfile or
pickle. What ``sktime.base.load``, which opens the zip before our code runs, does with each is
pinned too."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from sktime.base import BaseObject
from sktime.base import load as sktime_load

import aaren_ts
from aaren_ts.estimators import AarenRegressor

REPO = Path(__file__).resolve().parents[1]
X = np.random.default_rng(0).normal(size=(10, 2, 12))
Y = X.mean(axis=(1, 2))
TINY = {"d_model": 8, "n_layers": 1, "n_heads": 2, "max_epochs": 1}


@pytest.fixture(scope="module")
def models():
    """Two regressors that predict differently (a replaced file would show)."""
    first = AarenRegressor(random_state=0, **TINY).fit(X, Y)
    second = AarenRegressor(random_state=1, **TINY).fit(X, Y)
    assert not np.array_equal(first.predict(X), second.predict(X))
    return first, second


def _predicts_like(path: Path, model) -> bool:
    return np.array_equal(aaren_ts.load(path).predict(X), model.predict(X)) and np.array_equal(
        sktime_load(path).predict(X), model.predict(X)
    )


# ---------------------------------------------------------------------------- killed writer
_SLOW_WRITER = textwrap.dedent(
    """
    import pickle, sys, time, zipfile
    model = pickle.load(open(sys.argv[1], "rb"))
    original = zipfile.ZipFile.writestr

    def slow_writestr(self, name, data, *args, **kwargs):
        original(self, name, data, *args, **kwargs)
        self.fp.flush()  # the first member is on disk in the temporary file
        print("WRITING", flush=True)
        time.sleep(300)  # killed here, mid-save

    zipfile.ZipFile.writestr = slow_writestr
    model.save(sys.argv[2])
    print("FINISHED", flush=True)
    """
)


def test_writer_killed_mid_save_leaves_the_previous_file(models, tmp_path):
    first, second = models
    first.save(tmp_path / "model").close()
    target = tmp_path / "model.zip"
    before = target.read_bytes()
    with open(tmp_path / "second.pkl", "wb") as handle:
        pickle.dump(second, handle)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writer = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(tmp_path / "second.pkl"), str(tmp_path / "model")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    watchdog = threading.Timer(240, writer.kill)
    watchdog.start()
    try:
        line = writer.stdout.readline().strip()
        assert line == "WRITING", writer.stderr.read()
        partial = list(tmp_path.glob(f".model.zip.tmp-{writer.pid}-*"))
        assert len(partial) == 1 and partial[0].stat().st_size > 0  # the save was under way
        os.kill(writer.pid, signal.SIGKILL)
        assert writer.wait(timeout=60) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        writer.kill()
    # the previous file is untouched and still loads and predicts as before
    assert target.read_bytes() == before
    assert _predicts_like(target, first)
    assert partial[0].exists()  # the killed writer's temporary file, recognisably named
    # the next save removes it (its writer is gone) and replaces the file
    second.save(tmp_path / "model").close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.zip", "second.pkl"]
    assert _predicts_like(target, second)


def test_writer_failing_mid_save_leaves_the_previous_file(models, tmp_path, monkeypatch):
    first, second = models
    first.save(tmp_path / "model").close()
    before = (tmp_path / "model.zip").read_bytes()
    original = zipfile.ZipFile.writestr
    calls = []

    def failing_writestr(self, name, data, *args, **kwargs):
        calls.append(name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return original(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_writestr)
    with pytest.raises(OSError, match="No space left"):
        second.save(tmp_path / "model")
    monkeypatch.undo()
    assert (tmp_path / "model.zip").read_bytes() == before
    assert os.listdir(tmp_path) == ["model.zip"]  # its temporary file was removed
    assert _predicts_like(tmp_path / "model.zip", first)


def test_only_temporaries_of_dead_writers_of_that_file_are_removed(models, tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    dead = int(finished.stdout)
    stale = tmp_path / f".model.zip.tmp-{dead}-0a1b2c3d"
    alive = tmp_path / f".model.zip.tmp-{os.getpid()}-0a1b2c3d"  # a save under way here
    other = tmp_path / f".other.zip.tmp-{dead}-0a1b2c3d"  # another file's
    for path in (stale, alive, other):
        path.write_bytes(b"partial")
    models[0].save(tmp_path / "model").close()
    assert not stale.exists() and alive.exists() and other.exists()


# ---------------------------------------------------------------------------- damaged files
def _member_data_offset(path: Path, name: str) -> tuple[int, int]:
    """Where member ``name``'s (compressed) bytes start in the zip, and how many there are."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    with open(path, "rb") as handle:
        handle.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", handle.read(4))
    return info.header_offset + 30 + name_length + extra_length, info.compress_size


def _write_members(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _damage(kind: str, path: Path, models) -> None:
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "truncated_tail":
        path.write_bytes(data[:-10])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_a_zip":
        path.write_text("these are not the weights you are looking for\n")
    elif kind == "flipped_bytes":
        start, size = _member_data_offset(path, "_obj")
        middle = start + size // 2
        damaged = bytes(b ^ 0xFF for b in data[middle : middle + 16])
        path.write_bytes(data[:middle] + damaged + data[middle + 16 :])
    elif kind == "flipped_metadata":  # what sktime.base.load reads first
        start, size = _member_data_offset(path, "_metadata")
        path.write_bytes(data[:start] + bytes(b ^ 0xFF for b in data[start : start + 4])
                         + data[start + 4 :])  # fmt: skip
    elif kind == "foreign_zip":
        _write_members(path, {"hello.txt": b"hello"})
    elif kind == "sktime_layout":  # what sktime's own save() writes: no _aaren_ts record
        path.unlink()
        BaseObject.save(models[0], path.with_suffix("")).close()
    elif kind == "bad_record":
        _write_members(path, {**members, "_aaren_ts": b"{not json"})
    elif kind == "bad_pickle":  # consistent checksum, payload that is no pickle
        payload = b"\x80\x04garbage"
        record = json.loads(members["_aaren_ts"])
        record["sha256"]["_obj"] = hashlib.sha256(payload).hexdigest()
        _write_members(path, {**members, "_obj": payload, "_aaren_ts": json.dumps(record).encode()})
    elif kind == "checksum_mismatch":  # another model's valid pickle under the old record
        _write_members(path, {**members, "_obj": pickle.dumps(models[1])})
    elif kind == "metadata_mismatch":  # another class under the old record
        _write_members(path, {**members, "_metadata": pickle.dumps(BaseObject)})
    else:
        raise AssertionError(kind)


# kind -> (what our error says, what sktime.base.load raises: its own error or ours)
DAMAGE = {
    "truncated": ("truncated, corrupted or not a zip", zipfile.BadZipFile),
    "truncated_tail": ("truncated, corrupted or not a zip", zipfile.BadZipFile),
    "empty": ("truncated, corrupted or not a zip", zipfile.BadZipFile),
    "not_a_zip": ("truncated, corrupted or not a zip", zipfile.BadZipFile),
    "flipped_bytes": ("truncated, corrupted or not a zip", ValueError),
    "flipped_metadata": ("truncated, corrupted or not a zip", (zipfile.BadZipFile, zlib.error)),
    "foreign_zip": ("not an aaren_ts save", KeyError),
    "sktime_layout": ("not an aaren_ts save.*lacks _aaren_ts", ValueError),
    "bad_record": ("corrupted", ValueError),
    "bad_pickle": ("saved estimator is corrupted, truncated", ValueError),
    "checksum_mismatch": ("corrupted.*checksum mismatch", ValueError),
    # sktime dispatches to the class in _metadata: BaseObject's own loader, none of our checks,
    # which unpickles _obj with plain pickle and fails on its tensor references
    "metadata_mismatch": ("corrupted.*checksum mismatch", pickle.UnpicklingError),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_file_gives_a_clear_error(kind, models, tmp_path):
    models[0].save(tmp_path / "model").close()
    path = tmp_path / "model.zip"
    _damage(kind, path, models)
    message, _ = DAMAGE[kind]
    pattern = rf"cannot load '{path}': .*{message}"
    with pytest.raises(ValueError, match=pattern):
        AarenRegressor.load_from_path(path)
    with pytest.raises(ValueError, match=pattern):
        aaren_ts.load(tmp_path / "model")


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_what_sktime_load_does_with_a_damaged_file(kind, models, tmp_path):
    """sktime's ``load`` opens the zip and unpickles ``_metadata`` itself, then calls our
    ``load_from_path``: damage it meets first raises its own error (``BadZipFile``,
    ``zlib.error`` or ``KeyError``); everything else reaches our checks, unless ``_metadata``
    names another class, whose loader then runs instead (and fails on the data payload)."""
    models[0].save(tmp_path / "model").close()
    _damage(kind, tmp_path / "model.zip", models)
    raised = DAMAGE[kind][1]
    with pytest.raises(raised) as caught:
        sktime_load(str(tmp_path / "model"))
    if raised is ValueError:
        assert "cannot load" in str(caught.value) and "model.zip" in str(caught.value)
