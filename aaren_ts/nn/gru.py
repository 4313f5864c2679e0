"""``GRUStack``: the classic-RNN baseline with the backbone interface."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import positive_int
from .base import Backbone


class GRUStack(Backbone):
    """Stacked GRU (``torch.nn.GRU``) with a final LayerNorm, interchangeable with ``Aaren``.

    Parameters
    ----------
    d_model : int
        Input, hidden and output width.
    n_layers : int, default 2
    dropout : float, default 0.0
        Dropout between GRU layers.

    Examples
    --------
    >>> import torch
    >>> from aaren_ts.nn import GRUStack
    >>> model = GRUStack(d_model=16, n_layers=2)
    >>> y, h = model(torch.randn(3, 20, 16))
    >>> h.shape     # (n_layers, batch, d_model): constant in the stream length
    torch.Size([2, 3, 16])
    """

    def __init__(self, d_model: int, n_layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model = d_model = positive_int(d_model, "d_model")
        self.n_layers = n_layers = positive_int(n_layers, "n_layers")
        self.gru = nn.GRU(
            d_model, d_model, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0
        )
        self.norm = nn.LayerNorm(d_model)

    def init_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Zero hidden state ``(n_layers, batch, d_model)``."""
        ref = self.norm.weight
        device = device if device is not None else ref.device
        return torch.zeros(
            self.n_layers, batch, self.d_model, device=device, dtype=dtype or ref.dtype
        )

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None, *, last_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(batch, time, d_model)`` -> ``(y, h)``; ``last_only``: ``y`` of the last
        step only, ``(batch, d_model)`` (the top layer's final hidden state, normed)."""
        self._check_input(x, 3, "x")
        self._check_last_only(x, last_only)
        y, h = self.gru(x, self._default_state(x, state))
        return self.norm(h[-1] if last_only else y), h

    def step(
        self, x_t: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step ``(batch, d_model)`` -> ``(y_t, h)``."""
        self._check_input(x_t, 2, "x_t")
        y, h = self.forward(x_t.unsqueeze(1), state)
        return y.squeeze(1), h
