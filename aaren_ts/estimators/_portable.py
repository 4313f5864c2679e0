"""Portable pickling of the torch estimators and their streams.

A pickle (``pickle``, ``save()``, ``copy.deepcopy``) holds every torch module as its class,
its constructor arguments (read from the module) and a CPU state dict, and every tensor on
the CPU, marked when it lived on an accelerator. Loading rebuilds the modules on the loading
device: CUDA for ``device="auto"`` when present, and the CPU, with a ``UserWarning``, for a
model saved with ``device="cuda"`` where no CUDA exists.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import torch
from torch import nn

from ._forecast_net import ForecastNet
from ._panel_net import PanelEnsemble, PanelNet
from ._stream_net import StreamNet
from ._stream_table import StreamTable
from ._tpp_net import TPPNet

NETWORKS = (ForecastNet, StreamNet, PanelNet, PanelEnsemble, TPPNet)  # what PortableModule rebuilds


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
    """Constructor arguments that rebuild ``module`` (a ForecastNet, StreamNet, PanelNet,
    PanelEnsemble or TPPNet) with the same parameter and buffer shapes; the state dict then
    restores the values."""
    if isinstance(module, StreamNet):
        core = network_kwargs(module.core)
        return {
            **{k: core[k] for k in ("backbone", "d_model", "n_layers", "n_heads", "dropout")},
            "recency": core.get("recency", False),
            "n_targets": module.n_targets,
            "horizon": module.horizon,
            "quantiles": core["quantiles"],
            "n_lags": module.n_lags,
            "local_window": module.local_window,
            "n_exog": module.n_exog,
            "n_future": module.n_future,
        }
    if isinstance(module, ForecastNet):
        kwargs = _backbone_kwargs(module.backbone)
        return {
            **kwargs,
            "n_inputs": module.embed.in_features,
            "n_targets": module.n_targets,
            "horizon": module.horizon,
            "quantiles": module.quantiles.tolist(),
            "n_future": module.n_future,
            "context_length": module.context_length,
        }
    if isinstance(module, PanelEnsemble):  # members of one shape: the first's arguments
        return {
            **network_kwargs(module.members[0]),
            "n_networks": len(module.members),
            "combine": module.combine,
        }
    if isinstance(module, PanelNet):
        return {
            **_backbone_kwargs(module.backbone),
            "n_channels": module.n_channels,
            "n_outputs": module.head.out_features,
            "kernel_size": (
                list(module.kernel_sizes)
                if len(getattr(module, "kernel_sizes", ())) > 1  # absent: pickled before tuples
                else module.kernel_size
            ),
            "dropout": module.dropout.p,
            "readout": getattr(module, "readout", "last"),  # absent: pickled before readouts
            "positional": getattr(module, "positional", False),  # absent: before the option
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

    Examples
    --------
    >>> import pickle
    >>> import torch
    >>> from aaren_ts.estimators._panel_net import PanelNet
    >>> from aaren_ts.estimators._portable import portable
    >>> net = PanelNet(n_channels=2, n_outputs=3, d_model=8, n_layers=1, n_heads=2)
    >>> loaded = pickle.loads(pickle.dumps(portable(net)))   # class, kwargs, CPU state dict
    >>> sorted(loaded._payload)
    ['cls', 'kwargs', 'state_dict', 'training']
    >>> rebuilt = loaded.build(torch.device("cpu"))
    >>> all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
    ...                                       rebuilt.state_dict().values()))
    True
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
            if payload.get("cls") not in NETWORKS:  # a file could name any allowed class
                raise TypeError(f"cannot rebuild a network of type {payload.get('cls')!r}")
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
    if isinstance(value, StreamTable):
        return value.with_tensors(to_portable)
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
    if isinstance(value, StreamTable):
        return value.with_tensors(lambda v: from_portable(v, device))
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
