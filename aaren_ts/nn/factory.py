"""``make_backbone``: one constructor for every backbone, so estimators can take ``backbone=``."""

from __future__ import annotations

from .aaren import Aaren
from .base import Backbone
from .gru import GRUStack
from .transformer import CausalTransformer

BACKBONES = ("aaren", "transformer", "gru")


def make_backbone(
    name: str,
    d_model: int,
    n_layers: int = 2,
    n_heads: int = 4,
    d_ff: int | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> Backbone:
    """Build the backbone ``name`` (``"aaren"``, ``"transformer"`` or ``"gru"``).

    The same size arguments give the Aaren and Transformer stacks the same block layout (the
    GRU ignores ``n_heads`` and ``d_ff``). Extra keyword arguments go to the backbone's class
    (``recency`` and ``scan_backend`` for Aaren, ``positional`` for the Transformer).

    Examples
    --------
    >>> from aaren_ts.nn import make_backbone
    >>> a = make_backbone("aaren", d_model=32, n_layers=2, n_heads=4)
    >>> t = make_backbone("transformer", d_model=32, n_layers=2, n_heads=4)
    >>> n_a = sum(p.numel() for p in a.parameters())
    >>> n_t = sum(p.numel() for p in t.parameters())
    >>> n_a - n_t   # one learned 32-wide query per layer
    64
    """
    if not isinstance(name, str) or name not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {name!r}")
    if name == "aaren":
        return Aaren(d_model, n_layers, n_heads, d_ff, dropout, **kwargs)
    if name == "transformer":
        return CausalTransformer(d_model, n_layers, n_heads, d_ff, dropout, **kwargs)
    return GRUStack(d_model, n_layers, dropout, **kwargs)
