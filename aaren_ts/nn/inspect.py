"""Attention weights of a network's attention layers, read from the layers' own parameters.

An Aaren layer's output at position ``p`` is ``sum_{i<=p} a_i v_i`` with ``a = softmax(s_1..s_p)``
and ``s_i = <q, k_i> / sqrt(d_head)``, ``q`` the layer's single learned query: the weights say
which past tokens the layer reads at ``p``. The scan never forms them (that is what makes it an
RNN), so they are recomputed here: forward hooks capture each attention layer's input during a
normal forward pass, and the keys and the query are projected from it with the layer's own
weights. For the Transformer baseline (``CausalSelfAttention``) the query is the token at ``p``.

Only torch is needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .attention import AarenAttention, AttentionState
from .transformer import CausalSelfAttention, KVCache

__all__ = ["attention_layers", "attention_weights", "capture_attention"]


def attention_layers(model: nn.Module) -> list[nn.Module]:
    """The attention layers of ``model`` (``AarenAttention``, ``CausalSelfAttention``) in
    registration order, i.e. from the first layer of a stack to the last.

    Raises ``TypeError`` when there is none (a GRU backbone has no attention to show).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layers = [m for m in model.modules() if isinstance(m, (AarenAttention, CausalSelfAttention))]
    if not layers:
        kinds = sorted({type(m).__name__ for m in model.modules() if m is not model})
        raise TypeError(
            f"{type(model).__name__} has no attention layer (AarenAttention or "
            f"CausalSelfAttention) whose weights could be read; its modules are {kinds}. "
            "A GRU backbone has no attention weights."
        )
    return layers


def _arg(args: tuple, kwargs: dict, index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def _aaren_scores(layer: AarenAttention, args: tuple, kwargs: dict) -> torch.Tensor:
    """Scores ``(batch, n_heads, n)`` of every token of one ``AarenAttention`` call."""
    x = _arg(args, kwargs, 0, "x")
    state: AttentionState | None = _arg(args, kwargs, 1, "state")
    times = _arg(args, kwargs, 2, "times")
    if state is not None and bool(torch.isfinite(state.scan.m).any()):
        # The state summarises earlier tokens as (m, u, w) only: their weights are gone.
        raise ValueError(
            "the attention layer was called with a non-empty state: the weights of the tokens "
            "absorbed before this call cannot be recovered from it; pass the whole history in "
            "one call, from an empty state"
        )
    batch, n, _ = x.shape
    scores = layer.scores(x).transpose(1, 2)  # (batch, n_heads, n), as the layer computes them
    if layer.recency_rate is not None and n:
        # as AarenAttention.forward: lambda_h * (t_i - t_last), positions when no times
        if times is None:
            age = torch.arange(n, device=x.device, dtype=torch.float64) - (n - 1)
            age = age.expand(batch, n)
        else:
            times = times.to(device=x.device, dtype=torch.float64)
            age = times - times[:, -1:]
        scores = scores + layer.recency_rate.view(1, -1, 1) * age.to(scores.dtype).unsqueeze(1)
    return scores


def _transformer_scores(layer: CausalSelfAttention, args: tuple, kwargs: dict, position: int):
    """Scores ``(batch, n_heads, position + 1)`` of the query at ``position``."""
    x = _arg(args, kwargs, 0, "x")
    cache: KVCache = _arg(args, kwargs, 1, "cache")
    if cache is not None and cache.keys.shape[2] > 0:
        raise ValueError(
            "the attention layer was called with a non-empty KV cache: pass the whole history "
            "in one call, from an empty state, so that every key is seen"
        )
    batch, n, _ = x.shape
    q, k, _ = (
        t.view(batch, n, layer.n_heads, layer.d_head).transpose(1, 2)
        for t in layer.qkv_proj(x).chunk(3, dim=-1)
    )
    query = q[:, :, position]  # (batch, heads, d_head)
    return torch.einsum("bhd,bhnd->bhn", query, k[:, :, : position + 1]) / math.sqrt(layer.d_head)


class CapturedAttention:
    """What ``capture_attention`` collects: ``weights``, one tensor per attention-layer call
    (in call order), each ``(batch, n_heads, position + 1)`` in float64, summing to 1 over
    the last axis."""

    def __init__(self) -> None:
        self.weights: list[torch.Tensor] = []


@contextmanager
def capture_attention(model: nn.Module, position: int = -1) -> Iterator[CapturedAttention]:
    """Collect the attention weights of every attention layer of ``model`` while the block runs.

    Each call of an attention layer inside the block appends the softmax weights of the query at
    ``position`` (default: the last token) over the tokens up to it, as computed from the
    layer's input and parameters (in float64). The layer must see the whole sequence in one
    call, from an empty state; a layer with a carried state raises ``ValueError``.

    Parameters
    ----------
    model : torch.nn.Module
        Any module containing ``AarenAttention`` or ``CausalSelfAttention`` layers.
    position : int, default -1
        The position whose weights are collected (negative counts from the end).

    Yields
    ------
    CapturedAttention
        Its ``weights`` list fills as the layers run.

    Examples
    --------
    >>> import torch
    >>> from aaren_ts.nn import Aaren
    >>> from aaren_ts.nn.inspect import capture_attention
    >>> model = Aaren(d_model=8, n_layers=2, n_heads=2).eval()
    >>> with capture_attention(model) as captured:
    ...     y, state = model(torch.randn(3, 10, 8))
    >>> [tuple(w.shape) for w in captured.weights]    # per layer: (batch, heads, tokens)
    [(3, 2, 10), (3, 2, 10)]
    >>> bool(torch.allclose(captured.weights[0].sum(-1), torch.ones(3, 2, dtype=torch.float64)))
    True
    """
    if not isinstance(position, int):
        raise TypeError(f"position must be an int, got {type(position).__name__}")
    layers = attention_layers(model)
    captured = CapturedAttention()

    def hook(layer: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        n = _arg(args, kwargs, 0, "x").shape[1]
        if not -n <= position < n:
            raise ValueError(f"position={position} is outside the {n} tokens of the call")
        p = position % n
        with torch.no_grad():
            if isinstance(layer, AarenAttention):
                scores = _aaren_scores(layer, args, kwargs)[..., : p + 1]
            else:
                scores = _transformer_scores(layer, args, kwargs, p)
            captured.weights.append(torch.softmax(scores.double(), dim=-1))

    handles = [layer.register_forward_hook(hook, with_kwargs=True) for layer in layers]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def attention_weights(
    model: nn.Module, x: torch.Tensor, *args: Any, position: int = -1, **kwargs: Any
) -> list[torch.Tensor]:
    """Run ``model(x, *args, **kwargs)`` without gradients and return each attention layer's
    weights at ``position``: one ``(batch, n_heads, position + 1)`` float64 tensor per layer.

    See ``capture_attention`` (to collect them while running anything else).

    Examples
    --------
    >>> import torch
    >>> from aaren_ts.nn import CausalTransformer
    >>> from aaren_ts.nn.inspect import attention_weights
    >>> model = CausalTransformer(d_model=8, n_layers=1, n_heads=2).eval()
    >>> weights = attention_weights(model, torch.randn(1, 6, 8), position=3)
    >>> tuple(weights[0].shape)            # the query at position 3 sees tokens 0..3
    (1, 2, 4)
    """
    with capture_attention(model, position) as captured, torch.no_grad():
        model(x, *args, **kwargs)
    return captured.weights
