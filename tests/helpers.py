"""Independent references and error measures used across the tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

# The shared benchmark data: AAREN_TS_DATA, else ../shared/data beside the checkout.
DATA = Path(os.environ.get("AAREN_TS_DATA") or Path(__file__).resolve().parents[2] / "shared/data")
needs_data = pytest.mark.skipif(
    not (DATA / "forecasting").is_dir(),
    reason="benchmark data not found: set AAREN_TS_DATA (CI sets it to ../shared/data)",
)


def numpy_reference(scores, values):
    """Independent float64 reference in NumPy: a plain softmax over each prefix, row by row.

    ``scores`` ``(R, N)``, ``values`` ``(R, N, D)`` (tensors or arrays) -> ``(R, N, D)``.
    """
    s = np.asarray(torch.as_tensor(scores).detach().cpu().double())
    v = np.asarray(torch.as_tensor(values).detach().cpu().double())
    out = np.empty_like(v)
    for k in range(s.shape[-1]):
        logits = s[:, : k + 1]
        p = np.exp(logits - logits.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        out[:, k] = np.einsum("rn,rnd->rd", p, v[:, : k + 1])
    return torch.from_numpy(out)


def rel_err(actual: torch.Tensor, expected: torch.Tensor, scale: float = 0.0) -> float:
    """Max-norm relative error ``max|a - e| / max(max|e|, scale)`` (computed in float64).

    ``scale`` is the natural size of the quantity when ``expected`` may be all but zero (the
    score gradient of a saturated softmax is ~1e-300 while rounding noise is ~eps * |v|).
    """
    a = actual.detach().double().cpu()
    e = expected.detach().double().cpu()
    return float((a - e).abs().max() / e.abs().max().clamp_min(max(scale, 1e-300)))
