"""``AarenBlock`` and the ``Aaren`` stack: Transformer blocks with Aaren attention.

As in the paper (``aaren_math.md`` section 6) the whole Transformer block is kept: pre-norm
attention and feed-forward sublayers with residuals; only the attention is replaced, by
``AarenAttention`` with a learned query. A stack streams with one state per layer; a new token
costs O(n_layers * d_model^2) and no history is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._checks import positive_int
from ._fast import call
from .attention import AarenAttention, AttentionState
from .base import Backbone


def feed_forward(d_model: int, d_ff: int, dropout: float) -> nn.Sequential:
    """The position-wise feed-forward sublayer shared by the Aaren and Transformer blocks."""
    return nn.Sequential(
        nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
    )


def feed_forward_without_dropout(layers: dict[str, nn.Module], h: torch.Tensor) -> torch.Tensor:
    """A block's ``ff(norm_ff(h))`` with its dropout layers skipped (identities outside
    training, or at p = 0), each plain layer one call (``_fast``): ``layers`` is the
    block's ``_modules``. A stream's step and an inference pass over a few tokens run a
    dozen such tiny layers, where ``Module.__call__`` costs more than the arithmetic."""
    f = call(layers["norm_ff"], h)
    for layer in layers["ff"]:
        if not isinstance(layer, nn.Dropout):
            f = call(layer, f)
    return f


def pre_norm_block(
    block: nn.Module, x: torch.Tensor, attend: Callable, last_only: bool
) -> tuple[torch.Tensor, Any]:
    """``x + attn(norm_attn(x))`` then ``h + ff(norm_ff(h))``, dropout on each sublayer:
    the forward of ``AarenBlock`` and ``TransformerBlock``, whose ``attend(y)`` returns the
    attention output and its new state. Where dropout is an identity (outside training, or
    p = 0) the plain layers run as single calls and the dropout layers are skipped."""
    layers = block._modules  # see _fast
    dropout = layers["dropout"]
    if block.training and dropout.p > 0:
        a, state = attend(layers["norm_attn"](x))
        h = (x[:, -1] if last_only else x) + dropout(a)
        return h + dropout(layers["ff"](layers["norm_ff"](h))), state
    a, state = attend(call(layers["norm_attn"], x))
    h = (x[:, -1] if last_only else x) + a
    return h + feed_forward_without_dropout(layers, h), state


class AarenBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))`` then ``h + ffn(norm(h))``.

    Parameters
    ----------
    d_model, n_heads, d_ff : int
        Width, heads, feed-forward width (default ``4 * d_model``).
    dropout : float, default 0.0
        Dropout on each sublayer's output and inside the feed-forward.
    recency : bool, default False
        Learnable per-head recency term (see ``AarenAttention``).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        recency: bool = False,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(d_model)
        self.attn = AarenAttention(d_model, n_heads, recency=recency, scan_backend=scan_backend)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = feed_forward(d_model, d_ff or 4 * d_model, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        state: AttentionState | None = None,
        times: torch.Tensor | None = None,
        *,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, AttentionState]:
        """``x`` ``(batch, time, d_model)`` -> ``(y, state)``; with ``last_only``, ``y`` is the
        last position's ``(batch, d_model)``: the feed-forward reads that token only."""
        attn = self._modules["attn"]
        return pre_norm_block(
            self, x, lambda y: attn(y, state, times, last_only=last_only), last_only
        )

    def step(
        self,
        x_t: torch.Tensor,
        state: AttentionState | None = None,
        time: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, AttentionState]:
        layers = self._modules  # see _fast: attribute reads of submodules cost a raise each
        a, state = layers["attn"].step(call(layers["norm_attn"], x_t), state, time)
        dropout = layers["dropout"]
        if self.training and dropout.p > 0:
            h = x_t + dropout(a)
            return h + dropout(layers["ff"](layers["norm_ff"](h))), state
        # the dropout layers are identities here: a stream's step skips their calls
        h = x_t + a
        return h + feed_forward_without_dropout(layers, h), state


class Aaren(Backbone):
    """A stack of ``AarenBlock`` layers with a final LayerNorm.

    Parameters
    ----------
    d_model : int
        Width of inputs and outputs.
    n_layers : int, default 2
    n_heads : int, default 4
    d_ff : int, optional
        Feed-forward width (default ``4 * d_model``).
    dropout : float, default 0.0
    recency : bool, default False
        Learnable per-head recency term in every layer, on positions or on the ``times``
        passed to ``forward`` / ``step``.
    scan_backend : str, default "auto"
        Scan implementation (see ``aaren_ts.scan.aaren_attention``).

    Examples
    --------
    >>> import torch
    >>> from aaren_ts.nn import Aaren
    >>> model = Aaren(d_model=16, n_layers=2, n_heads=4).eval()
    >>> x = torch.randn(3, 20, 16)
    >>> y, state = model(x)                     # parallel over the 20 steps
    >>> y_next, state = model.step(torch.randn(3, 16), state)   # then O(1) per new step
    >>> y.shape, y_next.shape
    (torch.Size([3, 20, 16]), torch.Size([3, 16]))
    """

    _state_per_layer = True

    def __init__(
        self,
        d_model: int,
        n_layers: int = 2,
        n_heads: int = 4,
        d_ff: int | None = None,
        dropout: float = 0.0,
        recency: bool = False,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        self.d_model = d_model = positive_int(d_model, "d_model")
        n_layers = positive_int(n_layers, "n_layers", minimum=0)  # 0: the final norm alone
        self.layers = nn.ModuleList(
            AarenBlock(d_model, n_heads, d_ff, dropout, recency, scan_backend)
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def init_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> tuple[AttentionState, ...]:
        """One empty ``AttentionState`` per layer."""
        return tuple(layer.attn.init_state(batch, device, dtype) for layer in self.layers)

    def forward(
        self,
        x: torch.Tensor,
        state: tuple[AttentionState, ...] | None = None,
        times: torch.Tensor | None = None,
        *,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, tuple[AttentionState, ...]]:
        """``x`` ``(batch, time, d_model)`` -> ``(y, state)``; ``times``: ``(batch, time)``.

        ``last_only``: ``y`` is the last position's output ``(batch, d_model)`` only (the
        state is the same). The lower layers still give every position (the layer above
        reads them all); the top layer reduces its tokens instead of scanning them and runs
        its feed-forward on the last one.
        """
        self._check_input(x, 3, "x")
        self._check_last_only(x, last_only)
        if times is not None and (
            not isinstance(times, torch.Tensor) or tuple(times.shape) != tuple(x.shape[:2])
        ):
            shape = tuple(times.shape) if isinstance(times, torch.Tensor) else type(times).__name__
            raise ValueError(f"times must be a tensor of shape {tuple(x.shape[:2])}, got {shape}")
        state = self._default_state(x, state)
        new_state = []
        top = len(self.layers) - 1
        if last_only and top < 0:  # no layer: the norm of the last token
            x = x[:, -1]
        for i, (layer, layer_state) in enumerate(zip(self.layers, state, strict=False)):
            x, layer_state = layer(x, layer_state, times, last_only=last_only and i == top)
            new_state.append(layer_state)
        return self.norm(x), tuple(new_state)

    def step(
        self,
        x_t: torch.Tensor,
        state: tuple[AttentionState, ...] | None = None,
        time: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[AttentionState, ...]]:
        """``x_t`` ``(batch, d_model)`` -> ``(y_t, state)`` in O(1); ``time``: ``(batch,)``."""
        self._check_input(x_t, 2, "x_t")
        state = self._default_state(x_t, state)
        new_state = []
        modules = self._modules  # see _fast
        for layer, layer_state in zip(modules["layers"], state, strict=False):
            x_t, layer_state = layer.step(x_t, layer_state, time)
            new_state.append(layer_state)
        return call(modules["norm"], x_t), tuple(new_state)
