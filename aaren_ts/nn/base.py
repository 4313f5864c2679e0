"""The interface every sequence backbone shares, and helpers for its explicit state.

A backbone maps ``(batch, time, d_model)`` to the same shape, causally, and can continue:

- ``forward(x, state=None) -> (y, state)``: a whole block of time steps in parallel;
  ``forward(x, state, last_only=True)`` gives the last step's ``y`` ``(batch, d_model)``
  only, and the same state, by the cheapest exact route the backbone has (a model whose
  head reads the last step, such as a windowed forecast, needs no more);
- ``step(x_t, state) -> (y_t, state)``: one time step ``(batch, d_model)``;
- ``init_state(batch, device=None, dtype=None)``: the state before any input.

State is a (nested) tuple of tensors passed in and returned; nothing is kept on the module
between calls, so one module serves many independent streams. The contracts (tested for every
backbone): ``step`` token by token equals ``forward``, and ``forward`` over consecutive blocks
with the carried state equals one call over the concatenation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class Backbone(nn.Module):
    """Base class of the causal sequence backbones (see the module docstring)."""

    d_model: int
    # the state is a tuple with one entry per layer in ``self.layers`` (checked on entry)
    _state_per_layer = False

    def forward(
        self, x: torch.Tensor, state: Any = None, *, last_only: bool = False
    ) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def step(self, x_t: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def init_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Any:
        raise NotImplementedError

    def _check_input(self, x: torch.Tensor, ndim: int, what: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != ndim or x.shape[-1] != self.d_model:
            layout = "(batch, time, d_model)" if ndim == 3 else "(batch, d_model)"
            raise ValueError(
                f"{what} must have shape {layout} with d_model={self.d_model}, got {tuple(x.shape)}"
            )

    @staticmethod
    def _check_last_only(x: torch.Tensor, last_only: bool) -> None:
        if not isinstance(last_only, bool):
            raise TypeError(f"last_only must be a bool, got {type(last_only).__name__}")
        if last_only and x.shape[1] == 0:
            raise ValueError("last_only needs at least one time step: x has none")

    def _default_state(self, x: torch.Tensor, state: Any) -> Any:
        if state is None:
            return self.init_state(x.shape[0], x.device, x.dtype)
        layers = self._modules.get("layers") if self._state_per_layer else None
        if layers is not None and not (isinstance(state, tuple) and len(state) == len(layers)):
            raise TypeError(
                f"state must be the tuple of {len(layers)} layer states that init_state, "
                f"forward or step returns, got {type(state).__name__}"
            )
        return state


def map_state(fn: Callable[[torch.Tensor], torch.Tensor], state: Any) -> Any:
    """Apply ``fn`` to every tensor of a nested state (tuples, NamedTuples, lists).

    Non-tensor leaves (such as a step counter) are kept as they are.

    Examples
    --------
    >>> import torch
    >>> from aaren_ts.nn import Aaren, map_state
    >>> model = Aaren(d_model=8, n_layers=2, n_heads=2)
    >>> _, state = model(torch.randn(3, 5, 8))
    >>> state = map_state(torch.Tensor.detach, state)  # cut the graph between training chunks
    """
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # NamedTuple
        return type(state)(*(map_state(fn, s) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(fn, s) for s in state)
    return state


def detach_state(state: Any) -> Any:
    """The state with every tensor detached from the autograd graph."""
    return map_state(torch.Tensor.detach, state)
