"""Input checks shared by every entry point: clear errors before any arithmetic."""

from __future__ import annotations

import torch

from .state import ScanState, canonical, cast_state, init_state


def check_inputs(
    scores: torch.Tensor,
    values: torch.Tensor,
    score_name: str = "scores",
    value_name: str = "values",
    value_layout: str = "(..., N, D)",
) -> tuple[torch.Size, int, torch.dtype]:
    """Validate a score tensor against a value tensor with one more (last) dimension.

    Returns the score shape, the value size ``D`` and the output dtype.
    """
    for name, t in ((score_name, scores), (value_name, values)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if values.dim() < scores.dim() + 1 or values.dim() == 0:
        raise ValueError(
            f"{value_name} must have shape {value_layout} (one more dimension than "
            f"{score_name}), got shape {tuple(values.shape)}"
        )
    if scores.shape != values.shape[:-1]:
        raise ValueError(
            f"{score_name} shape {tuple(scores.shape)} must equal {value_name} shape without its "
            f"last dimension, {tuple(values.shape[:-1])}"
        )
    if scores.device != values.device:
        raise ValueError(
            f"{score_name} is on {scores.device} but {value_name} is on {values.device}"
        )
    return scores.shape, values.shape[-1], torch.promote_types(scores.dtype, values.dtype)


def check_sequence_inputs(
    scores: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Size, int, torch.dtype]:
    """``check_inputs`` for a block of tokens: scores ``(..., N)`` must have a token axis."""
    if isinstance(scores, torch.Tensor) and scores.dim() == 0:
        raise ValueError("scores must have shape (..., N): got a 0-dimensional tensor")
    return check_inputs(scores, values)


def prepare_state(
    state: ScanState | None,
    batch_shape: torch.Size,
    d: int,
    dtype: torch.dtype,
    device: torch.device,
) -> ScanState:
    """The empty state when ``state`` is None, else ``state`` checked and cast to ``dtype``."""
    if state is None:
        return init_state(batch_shape, d, dtype, device)
    if not isinstance(state, tuple) or len(state) != 3:
        raise TypeError(
            "state must be a ScanState (m, u, w) as returned with return_state=True or by "
            f"init_state; got {type(state).__name__}"
        )
    if not all(isinstance(t, torch.Tensor) for t in state):
        raise TypeError("state must hold three tensors (m, u, w)")
    m, u, w = state
    if m.shape != batch_shape or u.shape != batch_shape or w.shape != (*batch_shape, d):
        raise ValueError(
            f"state shapes m{tuple(m.shape)}, u{tuple(u.shape)}, w{tuple(w.shape)} do not match "
            f"the inputs: expected m and u of shape {tuple(batch_shape)} and w of shape "
            f"{(*batch_shape, d)}"
        )
    return cast_state(canonical(ScanState(m, u, w)), dtype, device)
