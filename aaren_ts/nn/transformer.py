"""``CausalTransformer``: the Transformer baseline with the backbone interface.

Pre-norm blocks identical to ``AarenBlock`` except for the attention: causal multi-head
self-attention (``scaled_dot_product_attention``) whose queries come from the tokens. Streaming
keeps a KV cache, so each new token costs O(context) time and memory: the cost Aaren removes.
Positions enter through sinusoidal encodings of the absolute step index (kept in the state, so
``step`` and chunked ``forward`` see the same positions as one call).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import positive_int
from ._fast import call
from .aaren import feed_forward, pre_norm_block
from .base import Backbone


class KVCache(NamedTuple):
    """Keys and values of every token seen so far: ``(batch, n_heads, context, d_head)``."""

    keys: torch.Tensor
    values: torch.Tensor


class TransformerState(NamedTuple):
    """Per-layer KV caches and the number of tokens seen (``position``, a tensor scalar)."""

    caches: tuple[KVCache, ...]
    position: torch.Tensor


def sinusoidal_encoding(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """The classic sin/cos encoding of integer ``positions`` ``(n,)`` -> ``(n, d_model)``."""
    half = (d_model + 1) // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half
    )
    angles = positions.to(torch.float32).unsqueeze(-1) * freqs
    enc = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    return enc[:, :d_model]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention that attends over a KV cache plus the new tokens."""

    def __init__(self, d_model: int, n_heads: int, bias: bool = True) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.qkv_proj = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(
        self, x: torch.Tensor, cache: KVCache, *, last_only: bool = False
    ) -> tuple[torch.Tensor, KVCache]:
        """``x`` ``(batch, n, d_model)`` -> outputs and the extended cache; ``last_only``: the
        last token's output ``(batch, d_model)`` only (its query alone is projected)."""
        batch, n, d_model = x.shape
        if last_only:
            return self._last(x, cache)
        q, k, v = (
            t.view(batch, n, self.n_heads, self.d_head).transpose(1, 2)
            for t in call(self._modules["qkv_proj"], x).chunk(3, dim=-1)
        )
        keys, values = self._extend(cache, k, v)
        past = cache.keys.shape[2]
        if past == 0:
            out = F.scaled_dot_product_attention(q, keys, values, is_causal=True)
        else:
            # New token j sees every cached token and new tokens up to itself.
            visible = torch.ones(n, past + n, dtype=torch.bool, device=x.device).tril(past)
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=visible)
        out = out.transpose(1, 2).reshape(batch, n, d_model)
        return call(self._modules["out_proj"], out), KVCache(keys, values)

    @staticmethod
    def _extend(cache: KVCache, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if cache.keys.shape[2] == 0:  # nothing to copy in front: an empty cache's dtype too
            return k, v
        keys = torch.cat([cache.keys.to(k.dtype), k], 2)
        return keys, torch.cat([cache.values.to(v.dtype), v], 2)

    def _last(self, x: torch.Tensor, cache: KVCache) -> tuple[torch.Tensor, KVCache]:
        batch, n, d_model = x.shape
        weight, bias = self.qkv_proj.weight, self.qkv_proj.bias
        q = F.linear(x[:, -1:], weight[:d_model], None if bias is None else bias[:d_model])
        kv = F.linear(x, weight[d_model:], None if bias is None else bias[d_model:])
        k, v = kv.view(batch, n, 2, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        keys, values = self._extend(cache, k, v)
        q = q.view(batch, 1, self.n_heads, self.d_head).transpose(1, 2)
        # the last token sees every cached and new token: no mask
        out = F.scaled_dot_product_attention(q, keys, values)  # (batch, heads, 1, d_head)
        return call(self._modules["out_proj"], out.reshape(batch, d_model)), KVCache(keys, values)


class TransformerBlock(nn.Module):
    """Pre-norm Transformer block, the same layout as ``AarenBlock``."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None, dropout: float) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = feed_forward(d_model, d_ff or 4 * d_model, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, cache: KVCache, *, last_only: bool = False
    ) -> tuple[torch.Tensor, KVCache]:
        attn = self._modules["attn"]
        return pre_norm_block(self, x, lambda y: attn(y, cache, last_only=last_only), last_only)


class CausalTransformer(Backbone):
    """Causal Transformer stack with a KV cache, interchangeable with ``Aaren``.

    Parameters
    ----------
    d_model : int
    n_layers : int, default 2
    n_heads : int, default 4
    d_ff : int, optional
        Feed-forward width (default ``4 * d_model``).
    dropout : float, default 0.0
    positional : {"sinusoidal", None}, default "sinusoidal"
        Absolute position encoding added to the input (``None``: no positions).

    Examples
    --------
    >>> import torch
    >>> from aaren_ts.nn import CausalTransformer
    >>> model = CausalTransformer(d_model=16, n_layers=2, n_heads=4).eval()
    >>> y, state = model(torch.randn(3, 20, 16))
    >>> y_next, state = model.step(torch.randn(3, 16), state)
    >>> state.caches[0].keys.shape      # the cache grows with the stream
    torch.Size([3, 4, 21, 4])
    """

    def __init__(
        self,
        d_model: int,
        n_layers: int = 2,
        n_heads: int = 4,
        d_ff: int | None = None,
        dropout: float = 0.0,
        positional: str | None = "sinusoidal",
    ) -> None:
        super().__init__()
        if positional not in ("sinusoidal", None):
            raise ValueError(f"positional must be 'sinusoidal' or None, got {positional!r}")
        self.d_model = d_model = positive_int(d_model, "d_model")
        self.n_heads = n_heads = positive_int(n_heads, "n_heads")
        n_layers = positive_int(n_layers, "n_layers", minimum=0)
        self.positional = positional
        self.layers = nn.ModuleList(
            TransformerBlock(d_model, n_heads, d_ff, dropout) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def init_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> TransformerState:
        """Empty KV caches (context 0) for ``batch`` streams."""
        ref = self.norm.weight
        device = device if device is not None else ref.device
        dtype = dtype or ref.dtype
        d_head = self.d_model // self.n_heads
        empty = torch.zeros(batch, self.n_heads, 0, d_head, device=device, dtype=dtype)
        caches = tuple(KVCache(empty, empty) for _ in self.layers)
        return TransformerState(caches, torch.zeros((), dtype=torch.long, device=device))

    def forward(
        self, x: torch.Tensor, state: TransformerState | None = None, *, last_only: bool = False
    ) -> tuple[torch.Tensor, TransformerState]:
        """``x`` ``(batch, time, d_model)`` -> ``(y, state)`` with the caches extended.

        ``last_only``: ``y`` is the last position's output ``(batch, d_model)`` only (the
        caches are the same): the top layer projects one query and runs its feed-forward on
        the last token.
        """
        self._check_input(x, 3, "x")
        self._check_last_only(x, last_only)
        state = self._default_state(x, state)
        n = x.shape[1]
        if self.positional is not None:
            positions = state.position + torch.arange(n, device=x.device)
            x = x + sinusoidal_encoding(positions, self.d_model).to(x.dtype)
        caches = []
        top = len(self.layers) - 1
        if last_only and top < 0:  # no layer: the norm of the last token
            x = x[:, -1]
        for i, (layer, cache) in enumerate(zip(self.layers, state.caches, strict=False)):
            x, cache = layer(x, cache, last_only=last_only and i == top)
            caches.append(cache)
        return self.norm(x), TransformerState(tuple(caches), state.position + n)

    def step(
        self, x_t: torch.Tensor, state: TransformerState | None = None
    ) -> tuple[torch.Tensor, TransformerState]:
        """One token ``(batch, d_model)``: attends over the whole cache, O(context)."""
        self._check_input(x_t, 2, "x_t")
        y, state = self.forward(x_t.unsqueeze(1), state)
        return y.squeeze(1), state
