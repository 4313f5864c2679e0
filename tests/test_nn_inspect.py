"""``aaren_ts.nn.inspect``: the attention weights it reads are a softmax that sums to 1, equal
an independent float64 softmax(q.k / sqrt(d)) over the same keys, and are the weights each layer
uses: its output is the projected weighted sum of its values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aaren_ts.nn import Aaren, AarenAttention, CausalTransformer, GRUStack
from aaren_ts.nn.inspect import attention_layers, attention_weights, capture_attention
from aaren_ts.nn.transformer import CausalSelfAttention


def _record_calls(model, kind):
    """Forward hooks that record each ``kind`` layer's inputs (float64 copies) and output."""
    calls = []

    def hook(layer, args, kwargs, output):
        calls.append((layer, [a for a in args], output[0].detach().double()))

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in model.modules()
               if isinstance(m, kind)]  # fmt: skip
    return calls, handles


def _np(t):
    return t.detach().double().numpy()


def _softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _aaren_reference(layer: AarenAttention, x, times=None):
    """Scores of every token from the layer's parameters, in NumPy float64."""
    x = _np(x)
    batch, n, _ = x.shape
    h, dh = layer.n_heads, layer.d_head
    query = (_np(layer.q_proj.weight) @ _np(layer.query) + _np(layer.q_proj.bias)).reshape(h, dh)
    keys = (x @ _np(layer.k_proj.weight).T + _np(layer.k_proj.bias)).reshape(batch, n, h, dh)
    scores = np.einsum("bnhd,hd->bhn", keys, query) / math.sqrt(dh)
    if layer.recency_rate is not None:
        t = np.arange(n, dtype=np.float64)[None] if times is None else _np(times)
        scores = scores + _np(layer.recency_rate)[None, :, None] * t[:, None, :]
    return scores


def _values(layer, x):
    x = _np(x)
    batch, n, _ = x.shape
    v = x @ _np(layer.v_proj.weight).T + _np(layer.v_proj.bias)
    return v.reshape(batch, n, layer.n_heads, layer.d_head)


@pytest.mark.parametrize("recency", [False, True])
def test_aaren_weights_match_a_float64_softmax_and_reproduce_each_layer_output(recency):
    torch.manual_seed(0)
    model = Aaren(d_model=16, n_layers=3, n_heads=4, recency=recency).eval()
    if recency:  # non-zero rates, so the recency term really enters the scores
        for layer in model.layers:
            layer.attn.recency_rate.data = torch.tensor([0.3, -0.2, 0.05, 0.0])
    x = torch.randn(2, 37, 16)
    times = torch.cumsum(torch.rand(2, 37) + 0.1, dim=1) if recency else None
    calls, handles = _record_calls(model, AarenAttention)
    with capture_attention(model) as captured, torch.no_grad():
        model(x, times=times)
    for handle in handles:
        handle.remove()
    assert len(captured.weights) == len(calls) == 3
    for weights, (layer, args, output) in zip(captured.weights, calls, strict=True):
        w = weights.numpy()
        assert w.shape == (2, 4, 37) and w.dtype == np.float64
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-12)
        expected = _softmax(_aaren_reference(layer, args[0], times))
        np.testing.assert_allclose(w, expected, rtol=1e-5, atol=1e-7)
        # the layer's own output at the last step is out_proj(sum_i w_i v_i)
        mixed = np.einsum("bhn,bnhd->bhd", w, _values(layer, args[0])).reshape(2, 16)
        out = mixed @ _np(layer.out_proj.weight).T + _np(layer.out_proj.bias)
        np.testing.assert_allclose(out, output[:, -1].numpy(), rtol=1e-4, atol=1e-5)


def test_aaren_weights_at_an_earlier_position_are_that_prefix_softmax():
    torch.manual_seed(1)
    model = Aaren(d_model=8, n_layers=1, n_heads=2).eval()
    x = torch.randn(1, 20, 8)
    calls, handles = _record_calls(model, AarenAttention)
    (w,) = attention_weights(model, x, position=5)
    handles[0].remove()
    layer, args, output = calls[0]
    expected = _softmax(_aaren_reference(layer, args[0])[..., :6])
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-5, atol=1e-7)
    mixed = np.einsum("bhn,bnhd->bhd", w.numpy(), _values(layer, args[0])[:, :6]).reshape(1, 8)
    out = mixed @ _np(layer.out_proj.weight).T + _np(layer.out_proj.bias)
    np.testing.assert_allclose(out, output[:, 5].numpy(), rtol=1e-4, atol=1e-5)


def test_transformer_weights_are_the_last_tokens_causal_attention():
    torch.manual_seed(2)
    model = CausalTransformer(d_model=12, n_layers=2, n_heads=3).eval()
    x = torch.randn(2, 15, 12)
    calls, handles = _record_calls(model, CausalSelfAttention)
    weights = attention_weights(model, x)
    for handle in handles:
        handle.remove()
    assert len(weights) == 2
    for w, (layer, args, output) in zip(weights, calls, strict=True):
        h, dh = layer.n_heads, layer.d_head
        qkv = _np(args[0]) @ _np(layer.qkv_proj.weight).T + _np(layer.qkv_proj.bias)
        q, k, v = (a.reshape(2, 15, h, dh) for a in np.split(qkv, 3, axis=-1))
        expected = _softmax(np.einsum("bhd,bnhd->bhn", q[:, -1], k) / math.sqrt(dh))
        np.testing.assert_allclose(w.numpy(), expected, rtol=1e-5, atol=1e-7)
        mixed = np.einsum("bhn,bnhd->bhd", w.numpy(), v).reshape(2, 12)
        out = mixed @ _np(layer.out_proj.weight).T + _np(layer.out_proj.bias)
        np.testing.assert_allclose(out, output[:, -1].numpy(), rtol=1e-4, atol=1e-5)


def test_errors_name_the_problem():
    with pytest.raises(TypeError, match=r"no attention layer.*GRU"):
        attention_layers(GRUStack(d_model=8, n_layers=1))
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        attention_layers("aaren")
    model = Aaren(d_model=8, n_layers=1, n_heads=2).eval()
    _, state = model(torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match="non-empty state"):
        attention_weights(model, torch.randn(1, 3, 8), state)
    transformer = CausalTransformer(d_model=8, n_layers=1, n_heads=2).eval()
    _, cache = transformer(torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match="non-empty KV cache"):
        attention_weights(transformer, torch.randn(1, 3, 8), cache)
    with pytest.raises(ValueError, match="position=9 is outside the 4 tokens"):
        attention_weights(model, torch.randn(1, 4, 8), position=9)
    # the hooks are removed, also after an error: the model runs untouched afterwards
    assert not any(layer._forward_hooks for layer in attention_layers(model))
