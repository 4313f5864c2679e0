"""Saving and loading the torch estimators: data files, atomic writes, checked loads.

``save(path)`` writes the zip archive sktime's ``load`` reads (``_metadata``, ``_obj``) with
two more members: ``_tensors``, every tensor of the estimator written by ``torch.save``, and
``_aaren_ts``, a JSON record (format, class, parameters, versions and a SHA-256 per member).
``_obj`` holds the rest of the estimator as a pickle in which tensors are references, and is
read by an unpickler that builds only allowlisted data types (``_safe_pickle``); the tensors
are read with ``torch.load(weights_only=True)``. So loading a file never runs code from it.
Networks are stored as CPU state dicts (``_portable``): a model trained on a GPU loads on a
machine without one.

Full pickles (``serialization_format="cloudpickle"``, and files written by aaren_ts before the
data format, format version 1) load only with ``trusted=True``: unpickling them can run any
code. So does lifting the allowlist for a data file that holds a type outside it.

Writing goes through a temporary file renamed into place, so a crash mid-save leaves the
previous file intact. Loading names the file when it is truncated, corrupted, not an aaren_ts
save, or declares a member that would inflate beyond a bound (``MAX_INFLATION``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import secrets
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import _safe_pickle
from ._portable import PortableStateMixin

FORMAT = "aaren_ts-estimator"
FORMAT_VERSION = 2  # 1: a full pickle in _obj; 2: data pickle + _tensors
# _metadata and _obj are what sktime's save() writes and sktime.base.load reads
MEMBERS = ("_metadata", "_obj", "_aaren_ts")
TENSORS = "_tensors"
SERIALIZATION_FORMATS = ("pickle", "cloudpickle")
# payload kinds in the record: "data" is safe to load, the others run pickle
SAFE_PAYLOAD = "data"
# a member may inflate to MAX_INFLATION times its compressed size (plus FREE_BYTES):
# deflate reaches about 1000x on crafted data, weights and indexes stay far below 100x
MAX_INFLATION = 100
FREE_BYTES = 64 * 2**20


# ---------------------------------------------------------------------------- files
def archive_path(path: str | os.PathLike) -> Path:
    """The zip file ``save(path)`` writes: ``path`` + ``.zip`` as sktime names it, or
    ``path`` itself when it already ends in ``.zip``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or a path-like object, got {type(path).__name__}")
    path = Path(path)
    return path if path.suffix == ".zip" else path.with_name(path.name + ".zip")


_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]+$")


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no cheap, safe check: keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(target: Path) -> None:
    """Delete temporary files a killed writer left for ``target`` (their pid is gone)."""
    for candidate in target.parent.glob(f".{target.name}.tmp-*"):
        match = _TEMP.match(candidate.name)
        if match and match["name"] == target.name and not _pid_alive(int(match["pid"])):
            candidate.unlink(missing_ok=True)


def _write_zip(handle, members: dict[str, bytes]) -> None:
    """The archive of ``members`` written to the open binary file ``handle``."""
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    handle = io.BytesIO()
    _write_zip(handle, members)
    return handle.getvalue()


def write_atomic(target: Path, members: dict[str, bytes]) -> None:
    """Write a zip of ``members`` to ``target`` so that it is never seen half-written.

    The zip goes to ``.<name>.tmp-<pid>-<random>`` in the same directory, is flushed and
    fsynced, then ``os.replace``-d over ``target``: a writer killed at any moment leaves
    the previous ``target`` intact (and at worst its temporary file, removed by the next
    save once its process is gone). An ``OSError`` names ``target``, not the temporary.
    """
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot save to '{target}': no directory '{target.parent}'")
    _remove_stale_temporaries(target)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(temporary, "wb") as handle:
            _write_zip(handle, members)  # straight into the file: no copy of it in memory
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            # the same OSError subclass (PermissionError ...), about the file asked for
            raise OSError(exc.errno, f"cannot save to '{target}': {exc.strerror}") from exc
        raise
    if os.name == "posix":  # make the rename itself durable
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _plain(value: Any) -> Any:
    """``value`` as JSON data (for the record; the estimator itself is in ``_obj``)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def _members(estimator: Any, serialization_format: str) -> dict[str, bytes]:
    """The archive members of ``estimator``; a data payload is checked to load safely."""
    cls = type(estimator)
    if serialization_format == "cloudpickle":
        import cloudpickle

        payloads = {"_obj": cloudpickle.dumps(estimator)}
        kind = "cloudpickle"
    else:
        data, tensors = _safe_pickle.dumps(estimator)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. a CUDA model read back on a CPU
                _safe_pickle.loads(data, tensors)
        except _safe_pickle.UnsafeContent as exc:
            raise ValueError(
                f"cannot save this {cls.__name__} as data: it holds {exc}, which a safe "
                "load does not build. Save it with serialization_format='cloudpickle' and "
                "load that file with aaren_ts.load(path, trusted=True)"
            ) from exc
        payloads = {"_obj": data, TENSORS: tensors}
        kind = SAFE_PAYLOAD
    metadata = pickle.dumps(cls)  # what sktime.base.load unpickles to find the class
    members = {"_metadata": metadata, **payloads}
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "payload": kind,
        "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in members.items()},
        "params": _plain(params),
        "torch": torch.__version__,
    }
    return {**members, "_aaren_ts": json.dumps(record, indent=1).encode()}


def save_estimator(estimator: Any, path, serialization_format: str = "pickle"):
    """``estimator.save``: see ``PersistenceMixin.save``."""
    if serialization_format not in SERIALIZATION_FORMATS:
        raise ValueError(
            f"serialization_format must be one of {SERIALIZATION_FORMATS}, "
            f"got {serialization_format!r}"
        )
    target = None if path is None else archive_path(path)
    members = _members(estimator, serialization_format)
    if target is None:
        return (type(estimator), _zip_bytes(members))
    write_atomic(target, members)
    return zipfile.ZipFile(target)


def _corrupted(source: str, what: str, exc: BaseException | None = None) -> ValueError:
    detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return ValueError(f"cannot load {source}: {what}{detail}")


def _untrusted(source: str, what: str) -> ValueError:
    return ValueError(
        f"cannot load {source}: {what}, and unpickling it can run any code the file holds. "
        "If you trust the file (you wrote it), load it with aaren_ts.load(path, trusted=True)"
    )


def _check_sizes(archive: zipfile.ZipFile, names, source: str) -> None:
    """Refuse members that declare more than ``MAX_INFLATION`` x their compressed size
    (plus ``FREE_BYTES``) before any is inflated."""
    for name in names:
        info = archive.getinfo(name)
        bound = MAX_INFLATION * info.compress_size + FREE_BYTES
        if info.file_size > bound:
            raise _corrupted(
                source,
                f"member {name} declares {info.file_size} bytes uncompressed from "
                f"{info.compress_size} compressed, more than {MAX_INFLATION}x (a zip bomb?): "
                "refused before inflating it (aaren_ts.load(path, trusted=True) reads it)",
            )


def _read_members(handle, source: str, trusted: bool) -> tuple[dict, dict[str, bytes]]:
    """The record and the members of an aaren_ts archive, checked (names the source)."""
    try:
        with zipfile.ZipFile(handle) as archive:
            names = archive.namelist()
            if len(names) != len(set(names)):
                raise _corrupted(source, "the zip holds two members of the same name")
            if "_aaren_ts" not in names:
                missing = [m for m in MEMBERS if m not in names]
                raise _corrupted(
                    source, f"it is not an aaren_ts save (the zip lacks {', '.join(missing)})"
                )
            if not trusted:
                _check_sizes(archive, ["_aaren_ts"], source)
            record = archive.read("_aaren_ts")
            info = _record(record, source)
            wanted = [*MEMBERS[:2], *([TENSORS] if info["payload"] == SAFE_PAYLOAD else [])]
            missing = [m for m in wanted if m not in names]
            if missing:
                raise _corrupted(
                    source, f"it is not an aaren_ts save (the zip lacks {', '.join(missing)})"
                )
            if not trusted:
                _check_sizes(archive, wanted, source)
            members = {m: archive.read(m) for m in wanted}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
        raise _corrupted(
            source, "the file is truncated, corrupted or not a zip archive", exc
        ) from exc
    sums = info["sha256"]
    for name, data in members.items():
        if hashlib.sha256(data).hexdigest() != sums.get(name):
            raise _corrupted(source, "the file is corrupted (checksum mismatch)")
    return info, members


def _record(raw: bytes, source: str) -> dict:
    """The ``_aaren_ts`` record, normalised (format 1 kept one checksum per member name)."""
    try:
        info = json.loads(raw)
    except ValueError as exc:  # JSON and UTF-8 errors
        raise _corrupted(
            source, "the file is corrupted (unreadable _aaren_ts record)", exc
        ) from exc
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise _corrupted(source, "it is not an aaren_ts save (unknown _aaren_ts record)")
    version = info.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise _corrupted(source, "the file is corrupted (bad format_version)")
    if version > FORMAT_VERSION:
        raise _corrupted(
            source,
            f"it was written in save format {version}, newer than this "
            f"aaren_ts reads ({FORMAT_VERSION}): upgrade aaren_ts",
        )
    if version == 1:  # a full pickle; checksums under "sha256" and "metadata_sha256"
        info = {
            **info,
            "payload": info.get("serialization_format", "pickle"),
            "sha256": {"_obj": info.get("sha256"), "_metadata": info.get("metadata_sha256")},
        }
    if not isinstance(info.get("sha256"), dict) or not isinstance(info.get("payload"), str):
        raise _corrupted(source, "the file is corrupted (incomplete _aaren_ts record)")
    return info


def read_archive(path, trusted: bool = False, source: str | None = None) -> Any:
    """The estimator saved in the zip at ``path`` (a path, ``ZipFile`` or file object),
    after checking that it is whole and an aaren_ts save (``ValueError`` naming it
    otherwise). Data files are read without running code from them; full pickles only
    with ``trusted=True``."""
    if isinstance(path, zipfile.ZipFile):
        path = path.filename
    if isinstance(path, (str, os.PathLike)):
        source = source or f"'{os.fspath(path)}'"
        if not Path(path).is_file():
            raise FileNotFoundError(f"no saved estimator at {source}")
    elif not hasattr(path, "read"):
        raise TypeError(f"path must be a str or a path-like object, got {type(path).__name__}")
    source = source or "the serial"
    info, members = _read_members(path, source, trusted)
    if info["payload"] != SAFE_PAYLOAD:
        if not trusted:
            how = (
                f"saved with serialization_format={info['payload']!r}"
                if info["format_version"] > 1
                else "save format 1, written by aaren_ts before the data format"
            )
            raise _untrusted(source, f"it holds a full {info['payload']} ({how})")
        try:
            return _safe_pickle.unsafe_loads(members["_obj"])
        except Exception as exc:  # any failure inside pickle: a damaged or foreign payload
            raise _corrupted(source, _DAMAGED, exc) from exc
    try:
        return _safe_pickle.loads(members["_obj"], members[TENSORS], trusted=trusted)
    except _safe_pickle.UnsafeContent as exc:
        raise _untrusted(
            source, f"it names {exc}, which a safe load does not build (not a data type)"
        ) from exc
    except Exception as exc:  # pickle, torch and rebuild errors: a damaged or foreign payload
        raise _corrupted(source, _DAMAGED, exc) from exc


_DAMAGED = "the saved estimator is corrupted, truncated or from an incompatible version"


def _check_class(obj: Any, cls: type, source: str) -> Any:
    if not isinstance(obj, cls):
        raise ValueError(f"{source} holds a {type(obj).__name__}, not a {cls.__name__}")
    return obj


def _serial_bytes(serial: Any) -> bytes:
    if not isinstance(serial, (bytes, bytearray, memoryview)):
        raise TypeError(
            "serial must be the bytes of save() (the second item of its tuple), "
            f"got {type(serial).__name__}"
        )
    return bytes(serial)


class PersistenceMixin(PortableStateMixin):
    """sktime's ``save`` / ``load_from_path`` / ``load_from_serial``, made atomic and checked,
    on top of portable pickling (``PortableStateMixin``)."""

    def save(self, path=None, serialization_format: str = "pickle"):
        """Save the estimator in memory or to a zip file, atomically, as data.

        The tensors (CPU state dicts of the networks, stream states) are written by
        ``torch.save``; the rest (parameters, fitted attributes, pandas indexes) as a pickle
        that loading reads with an allowlist of data types, so loading never runs code from
        the file. The file loads on a machine without the GPU it was trained on. Writing
        goes to a temporary file in the same directory, renamed over ``path`` only once
        complete: a crash mid-save leaves any previous file intact.

        Parameters
        ----------
        path : str or path-like, optional
            None: return an in-memory serial ``(class, bytes)`` for ``load_from_serial`` or
            ``sktime.base.load``. Otherwise the zip ``path + ".zip"`` is written (``path``
            itself when it ends in ``.zip``), with sktime's members ``_metadata`` and
            ``_obj``, the tensors in ``_tensors`` and a JSON record ``_aaren_ts`` (class,
            parameters, versions, a SHA-256 per member).
        serialization_format : {"pickle", "cloudpickle"}, default "pickle"
            "pickle": the data format above. "cloudpickle": a full cloudpickle, which
            loads only with ``aaren_ts.load(path, trusted=True)``.

        Returns
        -------
        tuple or zipfile.ZipFile
            The serial, or the written zip (as sktime's ``save`` returns).

        Raises
        ------
        ValueError
            When the estimator holds an object the data format does not store (the
            message names it): save it with ``serialization_format="cloudpickle"``.
        OSError
            Naming ``path`` when it cannot be written.

        Notes
        -----
        ``aaren_ts.load``, ``load_from_path`` and ``load_from_serial`` never unpickle
        anything but allowlisted data types. ``sktime.base.load(path)`` first unpickles the
        ``_metadata`` member itself (to find the class) before calling ``load_from_path``:
        for a file you did not write, use ``aaren_ts.load``.

        Examples
        --------
        >>> import tempfile, os
        >>> from sktime.base import load
        >>> from sktime.datasets import load_airline
        >>> from aaren_ts.estimators import AarenForecaster
        >>> y = load_airline()
        >>> forecaster = AarenForecaster(max_epochs=1, d_model=8, n_layers=1, random_state=0)
        >>> forecaster = forecaster.fit(y, fh=[1, 2, 3])
        >>> folder = tempfile.mkdtemp()
        >>> _ = forecaster.save(os.path.join(folder, "model"))     # writes model.zip
        >>> loaded = load(os.path.join(folder, "model"))
        >>> loaded.predict().equals(forecaster.predict())
        True
        >>> serial = forecaster.save()                            # in memory
        >>> load(serial).predict().equals(forecaster.predict())
        True
        """
        return save_estimator(self, path, serialization_format)

    @classmethod
    def load_from_path(cls, serial, trusted: bool = False):
        """Load an estimator saved by ``save(path)``, checking the file first.

        ``sktime.base.load(path)`` dispatches here. Reads the data format without running
        code from the file.

        Parameters
        ----------
        serial : str, path-like or zipfile.ZipFile
            The ``.zip`` file ``save`` wrote (or the ``ZipFile`` it returned).
        trusted : bool, default False
            Also load full pickles (``serialization_format="cloudpickle"``, files from
            aaren_ts before the data format) and types outside the allowlist. Unpickling
            can run any code: only for files you trust.

        Returns
        -------
        The estimator (see ``aaren_ts.load`` for the device it loads on).

        Raises
        ------
        ValueError
            Naming the file, when it is truncated, corrupted, not an aaren_ts save, holds
            another class, or would need ``trusted=True``.
        """
        obj = read_archive(serial, trusted=trusted)
        name = serial.filename if isinstance(serial, zipfile.ZipFile) else os.fspath(serial)
        return _check_class(obj, cls, f"'{name}'")

    @classmethod
    def load_from_serial(cls, serial, trusted: bool = False):
        """Load an estimator from the bytes of ``save()``.

        ``sktime.base.load(serial)`` dispatches here. Reads the data format without running
        code from the bytes.

        Parameters
        ----------
        serial : bytes
            The second item of the tuple ``save()`` returns.
        trusted : bool, default False
            As in ``load_from_path``.

        Returns
        -------
        The estimator.
        """
        data = io.BytesIO(_serial_bytes(serial))
        return _check_class(read_archive(data, trusted=trusted), cls, "the serial")


def load(serial, trusted: bool = False):
    """Load an aaren_ts estimator saved with ``save``, checking the file first.

    Like ``sktime.base.load``, but it never unpickles anything from the file except
    allowlisted data types (sktime's ``load`` unpickles the ``_metadata`` member itself),
    and a truncated, corrupted or foreign file gives a ``ValueError`` naming it.

    Parameters
    ----------
    serial : str, path-like or tuple
        A path given to ``save`` (with or without ``.zip``), or the ``(class, bytes)`` tuple
        returned by ``save()``.
    trusted : bool, default False
        Also load full pickles (``serialization_format="cloudpickle"``, files written by
        aaren_ts before the data format), types outside the allowlist, and members beyond
        the inflation bound. Unpickling can run any code: only for files you trust.

    Returns
    -------
    The estimator, its networks on its ``device`` (CUDA when ``"auto"`` finds one; a
    ``"cuda"`` estimator loads on the CPU with a ``UserWarning`` where no CUDA exists).

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> import aaren_ts
    >>> from aaren_ts.estimators import AarenRegressor
    >>> X = np.random.default_rng(0).normal(size=(8, 2, 12))
    >>> y = X.mean(axis=(1, 2))
    >>> model = AarenRegressor(d_model=8, n_layers=1, n_heads=2, max_epochs=1, random_state=0)
    >>> model = model.fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "regressor")
    >>> _ = model.save(path)
    >>> loaded = aaren_ts.load(path)
    >>> bool((loaded.predict(X) == model.predict(X)).all())
    True
    >>> _ = model.save(path, serialization_format="cloudpickle")   # a full pickle
    >>> aaren_ts.load(path)
    Traceback (most recent call last):
    ...
    ValueError: cannot load '...regressor.zip': it holds a full cloudpickle ... trusted=True)
    >>> with open(path + ".zip", "r+b") as f:            # damage it
    ...     _ = f.truncate(100)
    >>> aaren_ts.load(path)
    Traceback (most recent call last):
    ...
    ValueError: cannot load '...regressor.zip': the file is truncated, corrupted or not a zip ...
    """
    if not isinstance(trusted, bool):
        raise TypeError(f"trusted must be True or False, got {trusted!r}")
    if isinstance(serial, tuple):
        if len(serial) != 2:
            raise ValueError(
                f"serial must be the (class, bytes) tuple of save(), got a tuple of {len(serial)}"
            )
        cls, payload = serial
        obj = read_archive(io.BytesIO(_serial_bytes(payload)), trusted=trusted)
        return _check_class(obj, cls, "the serial") if isinstance(cls, type) else obj
    if not isinstance(serial, (str, os.PathLike)):
        raise TypeError(
            "serial must be a path given to save() or the tuple save() returned, "
            f"got {type(serial).__name__}"
        )
    path = Path(serial)
    if not path.is_file():
        path = archive_path(serial)
    return read_archive(path, trusted=trusted)


__all__ = ["PersistenceMixin", "PortableStateMixin", "load"]
