"""Saving estimators as data: tensors for torch, an allowlisted pickle for the rest.

``dumps`` splits an estimator into its tensors, written with ``torch.save`` and read back
with ``torch.load(weights_only=True)``, and a pickle of everything else in which each tensor
is a reference. ``loads`` reads that pickle with an unpickler that builds only allowlisted
data types (``ALLOWED``): aaren_ts's own networks, estimators and stream states, numpy arrays
and scalars, pandas indexes, frames, offsets and dtypes, sktime's ``ForecastingHorizon``,
datetimes and time zones. Anything else a file names (``os.system``, ``builtins.eval``,
``subprocess.Popen``, ``pickle.loads``, a class of the writer's own) is refused before it is
looked up, so no code from the file runs: the same approach as ``torch.load``'s weights-only
mode (Python's documented "restricting globals"), extended to the types an estimator holds.

``loads(..., trusted=True)`` lifts the allowlist: for files you wrote yourself that hold a
type outside it.
"""

from __future__ import annotations

import importlib
import io
import pickle
from typing import Any

import torch

# module -> names a safe load may look up there. Each is a data type, or a function that
# only rebuilds one from its arguments (numpy's _reconstruct, pandas' _new_Index ...).
ALLOWED: dict[str, frozenset[str]] = {
    "builtins": frozenset({"complex", "range", "slice", "set", "frozenset", "bytearray"}),
    "collections": frozenset({"OrderedDict"}),
    "datetime": frozenset({"timedelta", "timezone", "datetime", "date", "time"}),
    "zoneinfo": frozenset({"ZoneInfo"}),
    "numpy": frozenset({"dtype", "ndarray"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),  # files from numpy 1
    "numpy._core.numeric": frozenset({"_frombuffer"}),
    "numpy.core.numeric": frozenset({"_frombuffer"}),
    "pandas": frozenset(
        (
            "DataFrame Series Index RangeIndex DatetimeIndex PeriodIndex TimedeltaIndex "
            "MultiIndex CategoricalIndex IntervalIndex Categorical Interval Period NA"
        ).split()
    ),
    "pandas.api.typing": frozenset({"FrozenList"}),  # MultiIndex names
    "pandas.core.indexes.frozen": frozenset({"FrozenList"}),
    "pandas.core.indexes.base": frozenset({"_new_Index"}),
    "pandas.core.indexes.range": frozenset({"RangeIndex"}),  # as _new_Index's argument
    "pandas.core.indexes.datetimes": frozenset({"_new_DatetimeIndex"}),
    "pandas.core.indexes.period": frozenset({"_new_PeriodIndex"}),
    "pandas.core.indexes.interval": frozenset({"_new_IntervalIndex"}),
    "pandas._libs.sparse": frozenset({"IntIndex", "BlockIndex"}),
    "pandas.core.internals.managers": frozenset({"BlockManager", "SingleBlockManager"}),
    "pandas._libs.internals": frozenset({"_unpickle_block"}),
    "pandas._libs.arrays": frozenset({"__pyx_unpickle_NDArrayBacked"}),
    "pandas._libs.tslibs.nattype": frozenset({"_nat_unpickle"}),
    "pandas._libs.tslibs.timestamps": frozenset({"_unpickle_timestamp"}),
    "pandas._libs.tslibs.timedeltas": frozenset({"_timedelta_unpickle"}),
    "pandas._libs.tslibs.period": frozenset({"Period"}),  # pandas 2's name for it
    # pandas 2's time zones: pytz rebuilds a zone from its name and offsets (no code runs)
    "pytz": frozenset({"_p", "_UTC"}),
    "pyarrow.lib": frozenset({"_restore_array", "py_buffer", "type_for_alias"}),  # pandas str
    "sktime.forecasting.base._fh": frozenset({"ForecastingHorizon"}),
    "sktime.datatypes._dtypekind": frozenset({"DtypeKind"}),
    "torch": frozenset({"device", "Size"}),
}
# families allowed by what the name resolves to (checked after import, before use)
_DTYPE_MODULES = ("pandas",)  # pandas.<X>Dtype: extension dtypes
_ARRAY_MODULES = ("pandas.arrays",)  # extension arrays
_OFFSET_MODULES = ("pandas._libs.tslibs.offsets",)  # date offsets (frequencies)
_OWN_PACKAGES = ("aaren_ts.estimators.", "aaren_ts.nn.", "aaren_ts.scan.")
_PANDAS_CORE = "pandas.core."  # pandas.core.<package>.<module>: data types by family
# bound class methods pickle as getattr(cls, name): only these pairs
_GETATTR = {("zoneinfo", "ZoneInfo", "_unpickle")}


class UnsafeContent(pickle.UnpicklingError):
    """The payload names something a safe load does not build."""


def _resolve(module: str, name: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _pandas_family(module: str) -> tuple[type, ...]:
    """The base classes a name in this pandas module must derive from; () for modules
    outside the allowed pandas families."""
    if not module.startswith("pandas"):
        return ()
    import pandas as pd
    from pandas.api.extensions import ExtensionArray, ExtensionDtype

    if module in _DTYPE_MODULES:
        return (ExtensionDtype,)
    if module in _ARRAY_MODULES:
        return (ExtensionArray,)
    if module in _OFFSET_MODULES:
        return (pd.offsets.BaseOffset,)
    if module.startswith(_PANDAS_CORE) and module.count(".") == 3:
        # pandas 2 names its data types by their defining module (pandas.core.indexes.base
        # .Index, ...); pandas 3 by "pandas". Only pandas' own containers and arrays.
        return (pd.Index, pd.Series, pd.DataFrame, ExtensionArray, ExtensionDtype)
    return ()


def _allowed_by_family(module: str, name: str) -> Any | None:
    """The object ``module.name`` when it belongs to an allowed family, else None. Only
    modules of trusted packages are imported to find out."""
    if "." in name:
        return None
    if module.startswith(_OWN_PACKAGES):
        obj = _resolve(module, name)
        return obj if isinstance(obj, type) and obj.__module__ == module else None
    kinds = _pandas_family(module)
    if kinds:
        obj = getattr(importlib.import_module(module), name, None)
        if not isinstance(obj, type) or not issubclass(obj, kinds):
            return None
        # pandas.core.<package>.<module>: the type must be defined there, not imported
        return obj if not module.startswith(_PANDAS_CORE) or obj.__module__ == module else None
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
        return getattr(torch, name)
    return None


def _safe_getattr(obj: Any, name: str) -> Any:
    if isinstance(obj, type) and (obj.__module__, obj.__name__, name) in _GETATTR:
        return getattr(obj, name)
    where = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__name__', type(obj).__name__)}"
    raise UnsafeContent(f"getattr({where}, {name!r}) (not allowed)")


class _Reader(pickle.Unpickler):
    def __init__(self, data: bytes, tensors: dict[str, torch.Tensor], trusted: bool):
        super().__init__(io.BytesIO(data))
        self._tensors = tensors
        self._trusted = trusted

    def find_class(self, module: str, name: str) -> Any:
        if self._trusted:
            return super().find_class(module, name)
        if module == "builtins" and name == "getattr":
            return _safe_getattr
        if name in ALLOWED.get(module, ()):
            return _resolve(module, name)
        found = _allowed_by_family(module, name)
        if found is None:
            raise UnsafeContent(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "tensor":
            tensor = self._tensors.get(pid[1]) if isinstance(pid[1], str) else None
            if tensor is not None:
                return tensor
        raise pickle.UnpicklingError(f"unknown tensor reference {pid!r}")


class _Writer(pickle.Pickler):
    """Pickles everything but tensors, which it collects (once per tensor object)."""

    def __init__(self, handle: io.BytesIO):
        super().__init__(handle, protocol=pickle.HIGHEST_PROTOCOL)
        self.tensors: dict[str, torch.Tensor] = {}
        self._keys: dict[int, str] = {}
        self._alive: list[torch.Tensor] = []  # keeps ids unique while pickling

    def persistent_id(self, obj: Any) -> tuple[str, str] | None:
        if not isinstance(obj, torch.Tensor):
            return None
        key = self._keys.get(id(obj))
        if key is None:
            key = self._keys[id(obj)] = str(len(self._keys))
            self._alive.append(obj)
            self.tensors[key] = obj.detach().cpu()
        return ("tensor", key)


def dumps(obj: Any) -> tuple[bytes, bytes]:
    """``(pickle without tensors, torch.save of the tensors)`` of ``obj``."""
    handle = io.BytesIO()
    writer = _Writer(handle)
    writer.dump(obj)
    tensors = io.BytesIO()
    torch.save(writer.tensors, tensors)
    return handle.getvalue(), tensors.getvalue()


def loads(data: bytes, tensor_data: bytes, trusted: bool = False) -> Any:
    """The object ``dumps`` wrote. Raises ``UnsafeContent`` naming the first thing outside
    the allowlist (unless ``trusted``); tensors are read with ``weights_only=True`` always."""
    tensors = torch.load(io.BytesIO(tensor_data), map_location="cpu", weights_only=True)
    if not isinstance(tensors, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()
    ):
        raise pickle.UnpicklingError("the tensor member is not a dict of named tensors")
    return _Reader(data, tensors, trusted).load()


def unsafe_loads(data: bytes) -> Any:
    """A plain ``pickle.loads`` (runs whatever the payload says): trusted data only."""
    return pickle.loads(data)


__all__ = ["ALLOWED", "UnsafeContent", "dumps", "loads", "unsafe_loads"]
