"""A network's size checked before it is built.

``max_horizon=10**6``, ``d_model=10**6`` or ``n_lags=10**8`` describe networks of billions of
parameters: built directly, torch allocated them (6.7 GB for the first on a 40-row series),
and on a machine that overcommits memory the process was killed or swapped for minutes
before any message. Here the network is built once on torch's ``meta`` device (shapes, no
memory), its parameters and buffers counted, and a named ``ValueError`` raised when they,
with their gradients and two optimiser moments, would take more than half the machine's
memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from .._checks import InvalidParameterError
from ..nn import map_state

# float32 weights, their gradients and AdamW's two moments
BYTES_PER_PARAMETER = 4 * 4
# where the machine's memory cannot be read (no sysconf): an assumed 16 GiB
FALLBACK_MEMORY = 16 * 2**30


def machine_memory() -> int:
    """Physical memory in bytes (``FALLBACK_MEMORY`` where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return FALLBACK_MEMORY


def check_network_size(
    build: Callable[[], torch.nn.Module], owner: str, sizes: dict[str, Any]
) -> None:
    """A named error when what ``build()`` builds, sized on the meta device, would not fit in
    memory with its gradients and optimiser state.

    ``sizes`` names the parameters that set the network's size, for the message. The probe
    draws no random numbers from the CPU generator (meta tensors are not initialised), so
    a seeded build after it is unchanged.
    """
    with torch.device("meta"):
        probe = build()
    count = sum(t.numel() for t in (*probe.parameters(), *probe.buffers()))
    need, memory = count * BYTES_PER_PARAMETER, machine_memory()
    if need > memory // 2:
        named = ", ".join(f"{k}={v!r}" for k, v in sizes.items())
        raise InvalidParameterError(
            f"{owner}: these settings describe a network of {count:,} parameters, about "
            f"{need / 2**30:.1f} GiB with its gradients and optimiser state, more than half "
            f"this machine's memory ({memory / 2**30:.1f} GiB); lower some of {named}"
        )


def checked_build(build: Callable[[], torch.nn.Module], owner: str, sizes: dict[str, Any]):
    """``build()``, after ``check_network_size`` of what it builds."""
    check_network_size(build, owner, sizes)
    return build()


def check_stream_count(net: torch.nn.Module, n_streams: int, owner: str) -> None:
    """A named error when ``n_streams`` streams' state would take more than half the
    machine's memory (``start_stream(10**9)`` allocated 80 GB before failing)."""
    sizes: list[int] = []
    map_state(lambda t: sizes.append(t.numel() * t.element_size()) or t,
              net.init_state(1, torch.device("meta")))  # fmt: skip
    per_stream = sum(sizes)
    memory = machine_memory()
    if per_stream * n_streams > memory // 2:
        raise ValueError(
            f"{owner}: {n_streams:,} streams would hold {per_stream * n_streams / 2**30:.1f} GiB "
            f"of state ({per_stream:,} bytes each), more than half this machine's memory "
            f"({memory / 2**30:.1f} GiB); start fewer streams"
        )
