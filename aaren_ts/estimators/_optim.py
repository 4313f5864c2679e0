"""The optimiser every estimator trains with: Adam or AdamW on torch's multi-tensor path.

torch takes its multi-tensor ("foreach") implementation by default only when every parameter
is on a GPU; on a CPU it loops over the parameters in Python, a dozen small kernels per
tensor and step. The networks here hold a few dozen small tensors, so that loop was about 10%
of a short fit. The multi-tensor path computes the same update (bit-identical weights:
``tests/test_optim.py``), so every estimator asks for it on every device.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def adam(
    parameters: Iterable[torch.nn.Parameter], lr: float, weight_decay: float | None = None
) -> torch.optim.Optimizer:
    """Adam (``weight_decay=None``) or AdamW (decoupled decay), multi-tensor.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(3, 1)
    >>> optimizer = adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    >>> type(optimizer).__name__, optimizer.defaults["foreach"]
    ('AdamW', True)
    """
    if weight_decay is None:
        return torch.optim.Adam(parameters, lr=lr, foreach=True)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, foreach=True)
