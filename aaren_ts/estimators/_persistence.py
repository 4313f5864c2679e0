"""Saving and loading the torch estimators: atomic files, checked loads.

The pickles hold CPU state dicts (``_portable``): a model trained on a GPU loads on a machine
without one. ``save(path)`` writes the zip archive sktime's ``load`` reads (``_metadata``,
``_obj``) plus an ``_aaren_ts`` member with a checksum, through a temporary file renamed into
place, so a crash mid-save leaves the previous file intact. Loading checks the archive and
names the file when it is truncated, corrupted or not an aaren_ts save.

Loading runs ``pickle``: load only files you trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import secrets
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

from ._portable import PortableStateMixin

FORMAT = "aaren_ts-estimator"
FORMAT_VERSION = 1
# _metadata and _obj are what sktime's save() writes and sktime.base.load reads
MEMBERS = ("_metadata", "_obj", "_aaren_ts")
SERIALIZATION_FORMATS = ("pickle", "cloudpickle")


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


def write_atomic(target: Path, members: dict[str, bytes]) -> None:
    """Write a zip of ``members`` to ``target`` so that it is never seen half-written.

    The zip goes to ``.<name>.tmp-<pid>-<random>`` in the same directory, is flushed and
    fsynced, then ``os.replace``-d over ``target``: a writer killed at any moment leaves
    the previous ``target`` intact (and at worst its temporary file, removed by the next
    save once its process is gone).
    """
    _remove_stale_temporaries(target)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(temporary, "wb") as handle:
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for name, data in members.items():
                    archive.writestr(name, data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _dumps(obj: Any, serialization_format: str) -> bytes:
    if serialization_format == "cloudpickle":
        import cloudpickle

        return cloudpickle.dumps(obj)
    return pickle.dumps(obj)


def save_estimator(estimator: Any, path, serialization_format: str = "pickle"):
    """``estimator.save``: see ``PersistenceMixin.save``."""
    if serialization_format not in SERIALIZATION_FORMATS:
        raise ValueError(
            f"serialization_format must be one of {SERIALIZATION_FORMATS}, "
            f"got {serialization_format!r}"
        )
    if path is None:
        return (type(estimator), _dumps(estimator, serialization_format))
    target = archive_path(path)
    payload = _dumps(estimator, serialization_format)
    cls = type(estimator)
    metadata = _dumps(cls, serialization_format)
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "serialization_format": serialization_format,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
        "metadata_sha256": hashlib.sha256(metadata).hexdigest(),  # what sktime.base.load reads
        "torch": torch.__version__,
    }
    members = {
        "_metadata": metadata,
        "_obj": payload,
        "_aaren_ts": json.dumps(info, indent=1).encode(),
    }
    write_atomic(target, members)
    return zipfile.ZipFile(target)


def _corrupted(source: str, what: str, exc: BaseException | None = None) -> ValueError:
    detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return ValueError(f"cannot load {source}: {what}{detail}")


def _unpickle(payload: bytes, source: str) -> Any:
    try:
        return pickle.loads(payload)
    except Exception as exc:  # any failure inside pickle means a damaged or foreign payload
        raise _corrupted(
            source,
            "the pickled estimator is corrupted, truncated or from an incompatible version",
            exc,
        ) from exc


def read_archive(path: str | os.PathLike | zipfile.ZipFile) -> Any:
    """The estimator saved in the zip at ``path``, after checking that the zip is whole and
    is an aaren_ts save (``ValueError`` naming the file otherwise). Runs ``pickle``: only
    for files you trust."""
    if isinstance(path, zipfile.ZipFile):
        path = path.filename
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or a path-like object, got {type(path).__name__}")
    source = f"'{os.fspath(path)}'"
    if not Path(path).is_file():
        raise FileNotFoundError(f"no saved estimator at {source}")
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [m for m in MEMBERS if m not in archive.namelist()]
            if not missing:
                metadata, payload, record = (archive.read(m) for m in MEMBERS)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
        raise _corrupted(
            source, "the file is truncated, corrupted or not a zip archive", exc
        ) from exc
    if missing:
        raise _corrupted(source, f"it is not an aaren_ts save (the zip lacks {', '.join(missing)})")
    try:
        info = json.loads(record)
    except ValueError as exc:  # JSON and UTF-8 errors
        raise _corrupted(
            source, "the file is corrupted (unreadable _aaren_ts record)", exc
        ) from exc
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise _corrupted(source, "it is not an aaren_ts save (unknown _aaren_ts record)")
    if info.get("format_version", 0) > FORMAT_VERSION:
        raise _corrupted(
            source,
            f"it was written in save format {info['format_version']}, newer than this "
            f"aaren_ts reads ({FORMAT_VERSION}): upgrade aaren_ts",
        )
    for data, key in ((payload, "sha256"), (metadata, "metadata_sha256")):
        if hashlib.sha256(data).hexdigest() != info.get(key):
            raise _corrupted(source, "the file is corrupted (checksum mismatch)")
    return _unpickle(payload, source)


def _check_class(obj: Any, cls: type, source: str) -> Any:
    if not isinstance(obj, cls):
        raise ValueError(f"{source} holds a {type(obj).__name__}, not a {cls.__name__}")
    return obj


class PersistenceMixin(PortableStateMixin):
    """sktime's ``save`` / ``load_from_path`` / ``load_from_serial``, made atomic and checked,
    on top of portable pickling (``PortableStateMixin``)."""

    def save(self, path=None, serialization_format: str = "pickle"):
        """Save the estimator in memory or to a zip file, atomically.

        The torch weights are stored as CPU state dicts, so the file loads on a machine
        without the GPU it was trained on. Writing goes to a temporary file in the same
        directory, renamed over ``path`` only once complete: a crash mid-save leaves any
        previous file intact.

        Parameters
        ----------
        path : str or path-like, optional
            None: return an in-memory serial ``(class, bytes)`` for ``load_from_serial`` or
            ``sktime.base.load``. Otherwise the zip ``path + ".zip"`` is written (``path``
            itself when it ends in ``.zip``), with sktime's members ``_metadata`` and
            ``_obj`` and an ``_aaren_ts`` record holding a SHA-256 checksum.
        serialization_format : {"pickle", "cloudpickle"}, default "pickle"

        Returns
        -------
        tuple or zipfile.ZipFile
            The serial, or the written zip (as sktime's ``save`` returns).

        Notes
        -----
        Loading (``sktime.base.load``, ``load_from_path``, ``aaren_ts.load``) runs
        ``pickle``: load only files you trust. ``aaren_ts.load`` checks the file before
        sktime would open it and names what is wrong with a damaged one.

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
    def load_from_path(cls, serial):
        """Load an estimator saved by ``save(path)``, checking the file first.

        ``sktime.base.load(path)`` dispatches here. Runs ``pickle``: only for files you trust.

        Parameters
        ----------
        serial : str, path-like or zipfile.ZipFile
            The ``.zip`` file ``save`` wrote (or the ``ZipFile`` it returned).

        Returns
        -------
        The estimator (see ``aaren_ts.load`` for the device it loads on).

        Raises
        ------
        ValueError
            Naming the file, when it is truncated, corrupted, not an aaren_ts save, or holds
            another class.
        """
        obj = read_archive(serial)
        name = serial.filename if isinstance(serial, zipfile.ZipFile) else os.fspath(serial)
        return _check_class(obj, cls, f"'{name}'")

    @classmethod
    def load_from_serial(cls, serial):
        """Load an estimator from the bytes of ``save()``.

        ``sktime.base.load(serial)`` dispatches here. Runs ``pickle``: only for data you
        trust.

        Parameters
        ----------
        serial : bytes
            The second item of the tuple ``save()`` returns.

        Returns
        -------
        The estimator.
        """
        if not isinstance(serial, (bytes, bytearray, memoryview)):
            raise TypeError(
                "serial must be the bytes of save() (the second item of its tuple), "
                f"got {type(serial).__name__}"
            )
        return _check_class(_unpickle(bytes(serial), "the serial"), cls, "the serial")


def load(serial):
    """Load an aaren_ts estimator saved with ``save``, checking the file first.

    Like ``sktime.base.load``, but a truncated, corrupted or foreign file gives a
    ``ValueError`` naming it (sktime's ``load`` opens the zip itself and raises
    ``zipfile.BadZipFile`` or ``KeyError`` before any estimator code runs). Runs ``pickle``:
    load only files you trust.

    Parameters
    ----------
    serial : str, path-like or tuple
        A path given to ``save`` (with or without ``.zip``), or the ``(class, bytes)`` tuple
        returned by ``save()``.

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
    >>> with open(path + ".zip", "r+b") as f:            # damage it
    ...     _ = f.truncate(100)
    >>> aaren_ts.load(path)
    Traceback (most recent call last):
    ...
    ValueError: cannot load '...regressor.zip': the file is truncated, corrupted or not a zip ...
    """
    if isinstance(serial, tuple):
        if len(serial) != 2:
            raise ValueError(
                f"serial must be the (class, bytes) tuple of save(), got a tuple of {len(serial)}"
            )
        cls, payload = serial
        obj = _unpickle(bytes(payload), "the serial")
        return _check_class(obj, cls, "the serial") if isinstance(cls, type) else obj
    if not isinstance(serial, (str, os.PathLike)):
        raise TypeError(
            "serial must be a path given to save() or the tuple save() returned, "
            f"got {type(serial).__name__}"
        )
    path = Path(serial)
    if not path.is_file():
        path = archive_path(serial)
    return read_archive(path)


__all__ = ["PersistenceMixin", "PortableStateMixin", "load"]
