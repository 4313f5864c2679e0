"""Saving and loading the torch estimators: portable pickles, atomic files, checked loads.

Pickles (``pickle``, ``save()``, ``copy.deepcopy``) hold every torch module as its class, its
constructor arguments and a CPU state dict, and every tensor on the CPU: a model trained on a
GPU loads on a machine without one. ``save(path)`` writes the zip archive sktime's
``load`` reads (``_metadata``, ``_obj``) plus an ``_aaren_ts`` member with a checksum,
through a temporary file renamed into place, so a crash mid-save leaves the previous file
intact. Loading checks the archive and names the file when it is truncated, corrupted or not
an aaren_ts save.

Loading runs ``pickle``: load only files you trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import secrets
import warnings
import weakref
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._forecast_net import ForecastNet
from ._panel_net import PanelNet
from ._tpp_net import TPPNet

FORMAT = "aaren_ts-estimator"
FORMAT_VERSION = 1
# _metadata and _obj are what sktime's save() writes and sktime.base.load reads
MEMBERS = ("_metadata", "_obj", "_aaren_ts")
SERIALIZATION_FORMATS = ("pickle", "cloudpickle")


# ---------------------------------------------------------------------------- modules
def _backbone_kwargs(backbone: nn.Module) -> dict[str, Any]:
    """``make_backbone`` arguments that rebuild ``backbone`` (its parameter shapes and
    dropout), read from the module itself."""
    from ..nn import Aaren, CausalTransformer, GRUStack

    if isinstance(backbone, Aaren):
        block = backbone.layers[0]
        return {
            "backbone": "aaren",
            "d_model": backbone.d_model,
            "n_layers": len(backbone.layers),
            "n_heads": block.attn.n_heads,
            "dropout": block.dropout.p,
            "recency": block.attn.recency_rate is not None,
        }
    if isinstance(backbone, CausalTransformer):
        return {
            "backbone": "transformer",
            "d_model": backbone.d_model,
            "n_layers": len(backbone.layers),
            "n_heads": backbone.n_heads,
            "dropout": backbone.layers[0].dropout.p,
        }
    if isinstance(backbone, GRUStack):
        return {
            "backbone": "gru",
            "d_model": backbone.d_model,
            "n_layers": backbone.n_layers,
            "n_heads": 1,  # the GRU ignores it
            "dropout": backbone.gru.dropout,
        }
    raise TypeError(f"cannot persist a backbone of type {type(backbone).__name__}")


def network_kwargs(module: nn.Module) -> dict[str, Any]:
    """Constructor arguments that rebuild ``module`` (a ForecastNet, PanelNet or TPPNet) with
    the same parameter and buffer shapes; the state dict then restores the values."""
    if isinstance(module, ForecastNet):
        kwargs = _backbone_kwargs(module.backbone)
        kwargs.pop("recency", None)  # ForecastNet builds its backbone without it
        return {
            **kwargs,
            "n_inputs": module.embed.in_features,
            "n_targets": module.n_targets,
            "horizon": module.horizon,
            "quantiles": module.quantiles.tolist(),
            "n_future": module.n_future,
            "context_length": module.context_length,
        }
    if isinstance(module, PanelNet):
        return {
            **_backbone_kwargs(module.backbone),
            "n_channels": module.n_channels,
            "n_outputs": module.head.out_features,
            "kernel_size": module.kernel_size,
            "dropout": module.dropout.p,
        }
    if isinstance(module, TPPNet):
        kwargs = _backbone_kwargs(module.encoder)
        kwargs.pop("recency", None)
        return {
            **kwargs,
            "n_marks": module.n_marks,
            "n_components": module.n_components,
            "log_tau_mean": float(module.log_tau_mean),
            "log_tau_std": float(module.log_tau_std),
            "min_inter_time": module.min_inter_time,
            "mark_conditional": module.mark_conditional,
            "recency": module.recency,
        }
    raise TypeError(f"cannot persist a torch module of type {type(module).__name__}")


class PortableModule:
    """A torch module that pickles as (class, constructor kwargs, CPU state dict).

    One wrapper per live module (see ``portable``), so that an estimator and its streams,
    which share one network, share it again after loading. The state is read when pickling,
    never cached: later training is never lost. ``build(device)`` rebuilds the module once
    per device.
    """

    def __init__(self, module: nn.Module) -> None:
        self._module = weakref.ref(module)
        self._payload: dict | None = None
        self._built: dict[str, nn.Module] = {}

    def __getstate__(self) -> dict:
        if self._payload is not None:  # an unpickled wrapper pickled again
            return self._payload
        module = self._module()
        if module is None:
            raise RuntimeError("the module was garbage-collected before it was pickled")
        return {
            "cls": type(module),
            "kwargs": network_kwargs(module),
            "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            "training": {name: m.training for name, m in module.named_modules()},
        }

    def __setstate__(self, payload: dict) -> None:
        self._module = lambda: None
        self._payload = payload
        self._built = {}

    def build(self, device: torch.device) -> nn.Module:
        """The module rebuilt from the payload on ``device`` (once per device)."""
        key = str(device)
        if key not in self._built:
            payload = self._payload
            # construction draws random initial weights: keep the caller's RNG untouched
            with torch.random.fork_rng(devices=[]):
                module = payload["cls"](**payload["kwargs"])
            # assign=True keeps the saved dtypes (a copy would cast into the fresh parameters)
            module.load_state_dict(payload["state_dict"], strict=True, assign=True)
            for name, sub in module.named_modules():
                sub.training = payload["training"].get(name, sub.training)
            self._built[key] = module.to(device)
        return self._built[key]


_WRAPPERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def portable(module: nn.Module) -> PortableModule:
    """The (shared) ``PortableModule`` of a live module."""
    wrapper = _WRAPPERS.get(module)
    if wrapper is None:
        wrapper = _WRAPPERS[module] = PortableModule(module)
    return wrapper


class DeviceTensor:
    """A tensor that lived on an accelerator, pickled on the CPU; it goes back to the loading
    device (tensors that lived on the CPU stay plain CPU tensors)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def __repr__(self) -> str:
        return f"DeviceTensor(shape={tuple(self.tensor.shape)}, dtype={self.tensor.dtype})"


def to_portable(value: Any) -> Any:
    """``value`` with modules as ``PortableModule`` and accelerator tensors on the CPU,
    through dicts, lists, tuples and NamedTuples."""
    if isinstance(value, nn.Module):
        return portable(value)
    if isinstance(value, torch.Tensor):
        return value if value.device.type == "cpu" else DeviceTensor(value.detach().cpu())
    if isinstance(value, dict):
        return {k: to_portable(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple
        return type(value)(*(to_portable(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(to_portable(v) for v in value)
    return value


def from_portable(value: Any, device: torch.device) -> Any:
    """Undo ``to_portable``: modules rebuilt and accelerator tensors moved to ``device``."""
    if isinstance(value, PortableModule):
        return value.build(device)
    if isinstance(value, DeviceTensor):
        return value.tensor.to(device)
    if isinstance(value, dict):
        return {k: from_portable(v, device) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(from_portable(v, device) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(from_portable(v, device) for v in value)
    return value


def move_tensors(value: Any, source: torch.device, device: torch.device) -> Any:
    """``value`` with the tensors on ``source`` moved to ``device`` (same nesting)."""
    if isinstance(value, torch.Tensor):
        return value.to(device) if value.device == source else value
    if isinstance(value, dict):
        return {k: move_tensors(v, source, device) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(move_tensors(v, source, device) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(move_tensors(v, source, device) for v in value)
    return value


def loading_device(requested: Any, owner: str) -> torch.device:
    """Where a loaded model goes: ``"auto"`` means CUDA when present, else the CPU; a CUDA
    device that does not exist here falls back to the CPU with a ``UserWarning``."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (TypeError, RuntimeError):
        return torch.device("cpu")  # an invalid setting: fit will name it; load on the CPU
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(
            f"{owner} was saved with device={str(requested)!r}, but no CUDA device is "
            "available here: loading it on the CPU instead. Refitting with this device "
            "setting still needs CUDA (set device='auto' or 'cpu' to refit here).",
            UserWarning,
            stacklevel=3,
        )
        return torch.device("cpu")
    return device


# ---------------------------------------------------------------------------- pickling
class PortableStateMixin:
    """``__getstate__`` / ``__setstate__`` that store modules as CPU state dicts and tensors
    on the CPU, and rebuild them on the loading device.

    Estimators load on the device their ``device`` parameter resolves to here; objects
    without one (streams) on the device they were saved from, or the CPU with a warning
    when it was a CUDA device and none exists.
    """

    def __getstate__(self) -> dict:
        return {key: to_portable(value) for key, value in self.__dict__.items()}

    def __setstate__(self, state: dict) -> None:
        fitted = "_device" in state  # before fit there is nothing on any device
        requested = state.get("device", state.get("_device", "cpu")) if fitted else "cpu"
        device = loading_device(
            str(requested) if isinstance(requested, torch.device) else requested,
            type(self).__name__,
        )
        self.__dict__.update({key: from_portable(value, device) for key, value in state.items()})
        if fitted:
            self._device = device

    def __copy__(self):
        # copy.copy would go through __getstate__ and rebuild the network: keep it shallow
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new


def relink_streams(streams, network: nn.Module, device: torch.device) -> None:
    """Point loaded streams at their estimator's loaded network and device (each stream
    loads on its own saved device first; the estimator's may differ, e.g. ``"auto"``)."""
    for stream in streams:
        if stream._net is network and stream._device == device:
            continue
        source = stream._device
        for key, value in list(stream.__dict__.items()):
            stream.__dict__[key] = move_tensors(value, source, device)
        stream._net, stream._device = network, device


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
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "serialization_format": serialization_format,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
        "torch": torch.__version__,
    }
    members = {
        "_metadata": _dumps(cls, serialization_format),
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
            record = None if missing else archive.read("_aaren_ts")
            payload = None if missing else archive.read("_obj")
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
    if hashlib.sha256(payload).hexdigest() != info.get("sha256"):
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
        """Load an estimator saved by ``save(path)`` (the ``.zip`` file, or its ``ZipFile``).

        Raises ``ValueError`` naming the file when it is truncated, corrupted, not an
        aaren_ts save, or holds another class. Runs ``pickle``: only for files you trust.
        """
        obj = read_archive(serial)
        name = serial.filename if isinstance(serial, zipfile.ZipFile) else os.fspath(serial)
        return _check_class(obj, cls, f"'{name}'")

    @classmethod
    def load_from_serial(cls, serial):
        """Load an estimator from the bytes of ``save()`` (the second item of its tuple).

        Runs ``pickle``: only for data you trust.
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
