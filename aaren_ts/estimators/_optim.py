"""The optimiser every estimator trains with: Adam or AdamW on torch's fused kernel.

torch's default Adam on a CPU loops over the parameters in Python, a dozen small kernels per
tensor and step; its multi-tensor ("foreach") path batches those kernels per operation, and
its fused path (CPU since torch 2.4) does the whole update of each tensor in one kernel. The
networks here hold a few dozen small tensors, so the optimiser step was 15-20% of a short
fit's step on the multi-tensor path, and about a third of that fused. Fused is the same
update computed in a different order: weights agree with the per-parameter loop to the last
bit or two of float rounding (``tests/test_optim.py``). Where torch or the device has no fused
kernel (torch < 2.4 on a CPU, some accelerators) the multi-tensor path is taken instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def adam(
    parameters: Iterable[torch.nn.Parameter], lr: float, weight_decay: float | None = None
) -> torch.optim.Optimizer:
    """Adam (``weight_decay=None``) or AdamW (decoupled decay), fused where torch can.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(3, 1)
    >>> optimizer = adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    >>> type(optimizer).__name__, optimizer.defaults["weight_decay"]
    ('AdamW', 0.0001)
    """
    parameters = list(parameters)  # read twice where the fused kernel is refused
    if weight_decay is None:
        kind, options = torch.optim.Adam, {"lr": lr}
    else:
        kind, options = torch.optim.AdamW, {"lr": lr, "weight_decay": weight_decay}
    try:
        return kind(parameters, fused=True, **options)
    except (RuntimeError, ValueError):
        # torch checks the parameters' devices and dtypes when the optimiser is made
        return kind(parameters, foreach=True, **options)
