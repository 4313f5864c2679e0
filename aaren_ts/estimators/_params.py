"""Parameter checks and device resolution shared by every estimator.

Each estimator lists what its parameters may be (``constraints``: the shared groups below
plus its own) and calls ``check_params`` at the start of ``fit``, before any state changes,
so ``n_layers=0``, ``batch_size=True``, ``random_state="abc"``, ``recency="False"`` or
``device="tpu"`` fail with an ``InvalidParameterError`` (a ``ValueError`` and a
``TypeError``) naming the parameter, not as an error from deep inside torch. numpy integers,
floats and bools are accepted wherever Python ones are.
"""

from __future__ import annotations

from typing import Any

import torch

from .._checks import (
    Bool,
    Constraint,
    InstanceOf,
    Int,
    InvalidParameterError,
    Options,
    Real,
    Seed,
    check_params,
)
from ..nn import BACKBONES
from ._distributed import STRATEGIES
from ._threads import THREADS  # torch threads per call: automatic, torch's, or a count


class Device(Constraint):
    """ "auto" or a device name torch understands ("cpu", "cuda", "cuda:1", "mps")."""

    description = "'auto' or a torch device name such as 'cpu', 'cuda' or 'cuda:1'"

    def accepts(self, value: Any) -> bool:
        if value == "auto" and isinstance(value, str):
            return True
        if not isinstance(value, str):
            return False
        try:
            torch.device(value)
        except (RuntimeError, ValueError):
            return False
        return True


POSITIVE_INT = Int(1)
OPTIONAL_POSITIVE_INT = (Options(None), Int(1))
FRACTION = Real(0.0, 1.0, open={"high"})  # [0, 1)


class KernelSizes(Constraint):
    """A positive int, or a non-empty tuple or list of distinct positive ints (one causal
    convolution per size: a multi-scale embedding)."""

    description = "a positive int or a tuple of distinct positive ints, such as (3, 7)"

    def accepts(self, value: Any) -> bool:
        if POSITIVE_INT.accepts(value):
            return True
        if not isinstance(value, (tuple, list)) or not value:
            return False
        return all(POSITIVE_INT.accepts(k) for k in value) and len(set(value)) == len(value)


# the network every torch estimator builds (make_backbone)
# deeper stacks than any time-series model here uses; a bound, so that n_layers=10**5 is
# a named error at once instead of minutes spent building the layers to size them
MAX_LAYERS = 256
NETWORK = {
    "backbone": Options(*BACKBONES),
    "d_model": POSITIVE_INT,
    "n_layers": Int(1, MAX_LAYERS),
    "n_heads": POSITIVE_INT,
    "dropout": FRACTION,
    "recency": Bool(),
}
# the training loop
TRAINING = {
    "max_epochs": POSITIVE_INT,
    "batch_size": POSITIVE_INT,
    "lr": Real(0.0, open={"low"}),
    "validation_size": FRACTION,
    "patience": POSITIVE_INT,
    "random_state": Seed(),
    "verbose": (Bool(), Int(0)),
}
# where it runs
PLACEMENT = {
    "device": Device(),
    "devices": (POSITIVE_INT, Options("auto")),
    "strategy": Options(*STRATEGIES),
    "n_threads": THREADS,
}


def check_network_params(owner: Any, constraints: dict) -> None:
    """``check_params`` plus what ties the network's parameters together."""
    check_params(owner, constraints)
    if owner.backbone != "gru" and owner.d_model % owner.n_heads:
        raise InvalidParameterError(
            f"{type(owner).__name__}: n_heads={owner.n_heads} must divide d_model={owner.d_model}"
        )


def resolve_device(device: str) -> torch.device:
    """The torch device of a checked ``device`` parameter ("auto": CUDA when present)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not Device().accepts(device):
        raise InvalidParameterError(f"device must be {Device.description}, got {device!r}")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for, but no CUDA device is available")
    return resolved


__all__ = [
    "FRACTION", "NETWORK", "OPTIONAL_POSITIVE_INT", "PLACEMENT", "POSITIVE_INT", "THREADS",
    "TRAINING",
    "Bool", "Device", "InstanceOf", "Int", "InvalidParameterError", "KernelSizes", "Options",
    "Real", "Seed",
    "check_network_params", "check_params", "resolve_device",
]  # fmt: skip
