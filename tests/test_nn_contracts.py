"""Layer contracts for every backbone: step == forward, chunked forward == one call,
explicit state, and the Aaren block's size against the paper's Transformer block."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import rel_err
from torch import nn

from aaren_ts.estimators._optim import adam
from aaren_ts.nn import (
    BACKBONES,
    Aaren,
    AarenAttention,
    AarenBlock,
    CausalTransformer,
    GRUStack,
    detach_state,
    make_backbone,
    map_state,
)
from aaren_ts.nn.transformer import KVCache, TransformerBlock
from aaren_ts.scan import init_state

CONFIGS = [
    ("aaren", {}),
    ("aaren", {"recency": True}),
    ("transformer", {}),
    ("transformer", {"positional": None}),
    ("gru", {}),
]


def build(name, kwargs, d_model=16, dropout=0.1):
    torch.manual_seed(0)
    model = make_backbone(name, d_model, n_layers=2, n_heads=4, dropout=dropout, **kwargs)
    if kwargs.get("recency"):
        with torch.no_grad():  # non-zero rates of both signs, so recency really acts
            for layer in model.layers:
                layer.attn.recency_rate.copy_(torch.tensor([0.3, -0.2, 0.05, 1.0]))
    return model.eval()


@pytest.mark.parametrize(("name", "kwargs"), CONFIGS)
def test_step_equals_forward(rng, name, kwargs):
    model = build(name, kwargs)
    x = torch.randn(3, 40, 16, generator=rng)
    with torch.no_grad():
        y, final = model(x)
        state, ys = model.init_state(3), []
        for t in range(40):
            y_t, state = model.step(x[:, t], state)
            ys.append(y_t)
        assert rel_err(torch.stack(ys, 1), y) <= 1e-5
        # the stepped state continues exactly like the parallel one
        nxt = torch.randn(3, 5, 16, generator=rng)
        assert rel_err(model(nxt, state)[0], model(nxt, final)[0]) <= 1e-5


@pytest.mark.parametrize("bias", [True, False])
def test_a_step_without_gradients_follows_every_parameter_change(rng, bias):
    """The no-gradient step folds the value and score projections once and keeps them: the
    result must be the gradient step's, and must follow in-place parameter updates (an
    optimiser step, load_state_dict) and replaced parameters, and never enter the module's
    state dict or copies."""
    torch.manual_seed(0)
    attn = AarenAttention(16, 4, recency=True, bias=bias)
    with torch.no_grad():
        attn.recency_rate.copy_(torch.tensor([0.3, -0.2, 0.05, 1.0]))
    x = torch.randn(3, 16, generator=rng)
    state = detach_state(attn(torch.randn(3, 7, 16, generator=rng))[1])

    def agree() -> None:
        with torch.no_grad():
            fast, fast_state = attn.step(x, state)
        slow, slow_state = attn.step(x, state)  # the gradient path: no folded weights kept
        assert slow.requires_grad
        assert rel_err(fast, slow.detach()) <= 1e-6
        assert rel_err(fast_state.scan.w, slow_state.scan.w.detach()) <= 1e-6

    agree()
    # every parameter written in place; fused kernels (aaren_ts's own training takes them)
    # leave the version counters where they were
    fused = adam(attn.parameters(), lr=0.1, weight_decay=0.01)
    assert fused.defaults["fused"]  # (torch >= 2.4 on a CPU, as CI installs)
    for optimizer in (torch.optim.Adam(attn.parameters(), lr=0.1, foreach=True), fused):
        optimizer.zero_grad()
        attn.step(x, state)[0].square().sum().backward()
        optimizer.step()
        agree()
    attn.load_state_dict(AarenAttention(16, 4, recency=True, bias=bias).state_dict())
    agree()
    with torch.no_grad():
        attn.query.mul_(2.0)  # the query alone: the folded scores must change
    agree()
    attn.k_proj.weight = nn.Parameter(torch.randn(16, 16, generator=rng))  # replaced
    agree()
    attn.v_proj.weight.data = torch.randn(16, 16, generator=rng)  # new storage, same object
    agree()
    assert set(attn.state_dict()) == set(copy.deepcopy(attn).state_dict())
    assert not any("fold" in key or "projection" in key for key in attn.state_dict())
    assert not any(isinstance(v, tuple) for v in vars(copy.deepcopy(attn)).values())


def test_steps_with_gradients_train_every_weight_even_with_a_frozen_query(rng):
    """Only a step without gradients takes the kept, folded projection."""
    attn = AarenAttention(16, 4)
    attn.query.requires_grad_(False)
    with torch.no_grad():  # a prefix to attend over, so that the new token's score matters
        state = attn(torch.randn(3, 5, 16, generator=rng))[1]
    out, _ = attn.step(torch.randn(3, 16, generator=rng), state)
    out.square().sum().backward()
    for p in (attn.v_proj.weight, attn.k_proj.weight, attn.q_proj.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_a_block_step_in_training_mode_keeps_dropout():
    """Steps skip the dropout layers only where they are identities (eval, or p = 0)."""
    torch.manual_seed(0)
    block = AarenBlock(16, 4, dropout=0.5)
    x = torch.randn(64, 16)
    state = block.attn.init_state(64)
    with torch.no_grad():
        eval_out = block.eval().step(x, state)[0]
        assert torch.equal(block.step(x, state)[0], eval_out)  # deterministic in eval
        train_out = block.train().step(x, state)[0]
    assert not torch.allclose(train_out, eval_out)


@pytest.mark.parametrize(("name", "kwargs"), CONFIGS)
@pytest.mark.parametrize("splits", [[1, 39], [13, 14, 13], [39, 1]])
def test_chunked_forward_equals_one_call(rng, name, kwargs, splits):
    model = build(name, kwargs)
    x = torch.randn(2, 40, 16, generator=rng)
    with torch.no_grad():
        full, _ = model(x)
        outs, state, start = [], None, 0
        for size in splits:
            y, state = model(x[:, start : start + size], state)
            outs.append(y)
            start += size
    assert rel_err(torch.cat(outs, 1), full) <= 1e-5


@pytest.mark.parametrize("name", BACKBONES)
def test_causal_outputs_ignore_the_future(rng, name):
    model = build(name, {})
    x = torch.randn(2, 30, 16, generator=rng)
    x2 = x.clone()
    x2[:, 20:] = torch.randn(2, 10, 16, generator=rng)
    with torch.no_grad():
        assert torch.allclose(model(x)[0][:, :20], model(x2)[0][:, :20], atol=1e-6)


@pytest.mark.parametrize("name", BACKBONES)
def test_no_state_is_kept_on_the_module(rng, name):
    model = build(name, {})
    before = copy.deepcopy(model.state_dict())
    attrs = set(vars(model))
    x = torch.randn(2, 10, 16, generator=rng)
    with torch.no_grad():
        a, _ = model(x)
        model(torch.randn(2, 10, 16, generator=rng))  # another stream in between
        b, _ = model(x)
    assert torch.equal(a, b)
    assert set(vars(model)) == attrs
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_aaren_state_is_constant_size_transformer_cache_grows(rng):
    aaren, transformer = build("aaren", {}), build("transformer", {})
    with torch.no_grad():
        _, sa = aaren(torch.randn(2, 10, 16, generator=rng))
        _, st = transformer(torch.randn(2, 10, 16, generator=rng))
        size_a = sum(t.numel() for t in _tensors(sa))
        size_t = sum(t.numel() for t in _tensors(st))
        for _ in range(20):
            _, sa = aaren.step(torch.randn(2, 16, generator=rng), sa)
            _, st = transformer.step(torch.randn(2, 16, generator=rng), st)
    assert sum(t.numel() for t in _tensors(sa)) == size_a
    assert sum(t.numel() for t in _tensors(st)) > size_t
    assert int(st.position) == 30


def _tensors(state):
    found = []
    map_state(lambda t: found.append(t) or t, state)
    return found


def test_recency_uses_timestamps_and_stays_precise_on_long_clocks(rng):
    """Timestamps 1e9 apart from zero: scores only see differences, so a shifted clock gives
    the same outputs, and step/forward agree with explicit times."""
    model = build("aaren", {"recency": True})
    x = torch.randn(2, 25, 16, generator=rng)
    times = torch.cumsum(torch.rand(2, 25, generator=rng, dtype=torch.float64) * 3, 1)
    with torch.no_grad():
        y, _ = model(x, times=times)
        y_shift, _ = model(x, times=times + 1e9)
        state, ys = None, []
        for t in range(25):
            y_t, state = model.step(x[:, t], state, time=times[:, t] + 1e9)
            ys.append(y_t)
        y_pos, _ = model(x)
    assert rel_err(y_shift, y) <= 1e-6
    assert rel_err(torch.stack(ys, 1), y) <= 1e-5
    assert rel_err(y_pos, y) > 1e-3  # the timestamps really change the weighting


def test_recency_rate_is_learned_and_off_by_default(rng):
    assert AarenAttention(16, 4).recency_rate is None
    attn = AarenAttention(16, 4, recency=True)
    assert torch.equal(attn.recency_rate, torch.zeros(4))
    y, _ = attn(torch.randn(2, 12, 16, generator=rng))
    y.square().sum().backward()
    assert attn.recency_rate.grad is not None and attn.recency_rate.grad.abs().sum() > 0


def test_learned_query_receives_gradient(rng):
    model = Aaren(16, n_layers=2, n_heads=4)
    y, _ = model(torch.randn(2, 12, 16, generator=rng))
    y.square().sum().backward()
    for layer in model.layers:
        assert isinstance(layer.attn.query, nn.Parameter)
        assert layer.attn.query.grad is not None and layer.attn.query.grad.abs().sum() > 0


def test_truncated_backprop_through_detached_state(rng):
    model = Aaren(16, n_layers=1, n_heads=2)
    x = torch.randn(2, 20, 16, generator=rng)
    _, state = model(x[:, :10])
    y, _ = model(x[:, 10:], detach_state(state))
    y.sum().backward()  # does not reach back into the first chunk's graph
    assert all(not t.requires_grad for t in _tensors(detach_state(state)))


def test_block_sizes_match_the_paper():
    """Paper: 3,152,896 parameters for an Aaren block vs 3,152,384 for
    nn.TransformerEncoderLayer(512, nhead, 2048): one 512-wide learned query apart."""
    aaren = AarenBlock(512, n_heads=8, d_ff=2048)
    torch_block = nn.TransformerEncoderLayer(512, 8, 2048)
    ours = CausalTransformer(512, n_layers=1, n_heads=8, d_ff=2048).layers[0]
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(aaren) == 3_152_896
    assert count(torch_block) == 3_152_384 == count(ours)


def test_training_a_tiny_aaren_reduces_loss(rng):
    """Learn the running mean of a noisy sequence: what one learned query can express."""
    torch.manual_seed(0)
    model = nn.ModuleDict(
        {"inp": nn.Linear(1, 16), "body": Aaren(16, 2, 2), "out": nn.Linear(16, 1)}
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.randn(32, 50, 1, generator=rng)
    target = torch.cumsum(x, 1) / torch.arange(1, 51).view(1, 50, 1)
    losses = []
    for _ in range(150):
        y = model["out"](model["body"](model["inp"](x))[0])
        loss = (y - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


@pytest.mark.parametrize("name", BACKBONES)
def test_bad_inputs_are_named(name):
    model = build(name, {})
    with pytest.raises(ValueError, match=r"x must have shape \(batch, time, d_model\)"):
        model(torch.randn(2, 16))
    with pytest.raises(ValueError, match="d_model=16"):
        model(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"x_t must have shape \(batch, d_model\)"):
        model.step(torch.randn(2, 3, 16))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        model(None)


def test_constructor_errors():
    with pytest.raises(ValueError, match="backbone must be one of"):
        make_backbone("lstm", 16)
    with pytest.raises(ValueError, match="must divide d_model"):
        Aaren(10, n_heads=4)
    with pytest.raises(ValueError, match="must divide d_model"):
        CausalTransformer(10, n_heads=4)
    with pytest.raises(ValueError, match="positional"):
        CausalTransformer(16, positional="rotary")
    assert isinstance(make_backbone("gru", 8), GRUStack)
    # sizes named at construction (torch said "negative dimension -8" from a LayerNorm)
    for build_one, kwargs, error, says in [
        (Aaren, {"d_model": -8}, ValueError, "d_model must be >= 1, got -8"),
        (Aaren, {"d_model": 16, "n_layers": 2.0}, TypeError, "n_layers must be an int"),
        (CausalTransformer, {"d_model": 16, "n_heads": 0}, ValueError, "n_heads must be >= 1"),
        (GRUStack, {"d_model": 8, "n_layers": 0}, ValueError, "n_layers must be >= 1"),
        (AarenAttention, {"d_model": 0, "n_heads": 1}, ValueError, "d_model must be >= 1"),
        (AarenAttention, {"d_model": "8", "n_heads": 1}, TypeError, "d_model must be an int"),
    ]:
        with pytest.raises(error, match=says):
            build_one(**kwargs)


def test_bad_states_times_and_sublayer_inputs_are_named():
    """What reached torch's internals as an unpacking or broadcasting error is named."""
    model = Aaren(8, n_layers=2, n_heads=2, recency=True)
    with pytest.raises(TypeError, match="state must be the tuple of 2 layer states"):
        model.step(torch.randn(3, 8), "state")
    with pytest.raises(TypeError, match="state must be the tuple of 2 layer states"):
        model(torch.randn(3, 4, 8), model.init_state(3)[:1])
    with pytest.raises(ValueError, match=r"times must be a tensor of shape \(3, 4\), got \(3, 5\)"):
        model(torch.randn(3, 4, 8), times=torch.randn(3, 5))
    attention = AarenAttention(8, 2)
    for x in (torch.randn(2, 5, 7), torch.randn(5, 8), torch.ones(2, 5, 8, dtype=torch.long)):
        with pytest.raises(ValueError, match=r"x must be a floating-point tensor of shape"):
            attention(x)
    for shape, d, error in (((2,), -1, ValueError), (("2",), 3, TypeError), (2.5, 3, TypeError)):
        with pytest.raises(error, match="batch_shape"):
            init_state(shape, d)


def test_fast_layer_calls_equal_module_calls_and_keep_hooks():
    """The streaming step's direct calls of plain layers give the module's numbers bit for
    bit, and any hook (on the layer or global) or a subclass sends the call through the
    module, so hooks still run."""
    from aaren_ts.nn._fast import call

    torch.manual_seed(0)
    x = torch.randn(3, 8)
    layers = [nn.Linear(8, 5), nn.Linear(8, 5, bias=False), nn.LayerNorm(8),
              nn.LayerNorm(8, elementwise_affine=False), nn.GELU(), nn.GELU("tanh")]  # fmt: skip
    for layer in layers:
        assert torch.equal(call(layer, x), layer(x))
    seen = []
    hooked = nn.Linear(8, 5)
    hooked.register_forward_hook(lambda module, args, out: seen.append("layer"))
    call(hooked, x)
    handle = nn.modules.module.register_module_forward_hook(
        lambda module, args, out: seen.append("global")
    )
    try:
        call(nn.LayerNorm(8), x)
    finally:
        handle.remove()

    class Doubled(nn.Linear):
        def forward(self, inputs):
            return 2 * super().forward(inputs)

    sub = Doubled(8, 5)
    assert torch.equal(call(sub, x), 2 * nn.functional.linear(x, sub.weight, sub.bias))
    assert seen == ["layer", "global"]


def test_a_hooked_layer_inside_a_streamed_block_still_sees_every_step():
    from aaren_ts.nn import Aaren

    model = Aaren(d_model=8, n_layers=1, n_heads=2, recency=True).eval()
    calls = []
    model.layers[0].norm_ff.register_forward_hook(lambda module, args, out: calls.append(1))
    with torch.no_grad():
        state = None
        for _ in range(3):
            _, state = model.step(torch.randn(2, 8), state)
    assert len(calls) == 3


# torch's GRU has no zero-layer form; the attention stacks do (the final norm alone)
STACKS = [(n, k, layers) for n, k in CONFIGS for layers in (0, 1, 2) if n != "gru" or layers]


@pytest.mark.parametrize(("name", "kwargs", "n_layers"), STACKS)
@pytest.mark.parametrize("carried", [False, True])
def test_last_only_is_the_last_position_of_forward_with_the_same_state_and_gradients(
    rng, name, kwargs, n_layers, carried
):
    """``forward(x, state, last_only=True)`` (the top layer reduced, its feed-forward on one
    token) gives ``forward(x, state)[0][:, -1]``, the same state, and the same gradients
    with respect to the input and every parameter, in float64 (training mode, no dropout)."""
    torch.manual_seed(0)
    model = make_backbone(name, 16, n_layers=n_layers, n_heads=4, **kwargs).double().train()
    if kwargs.get("recency"):
        with torch.no_grad():
            for layer in model.layers:
                layer.attn.recency_rate.copy_(torch.tensor([0.3, -0.2, 0.05, 1.0]))
    x = torch.randn(3, 13, 16, generator=rng, dtype=torch.float64, requires_grad=True)
    state = None
    if carried:
        with torch.no_grad():
            _, state = model(torch.randn(3, 6, 16, generator=rng, dtype=torch.float64))
    weight = torch.randn(3, 16, generator=rng, dtype=torch.float64)
    params = [x, *model.parameters()]

    full, full_state = model(x, state)
    want = torch.autograd.grad((full[:, -1] * weight).sum(), params, allow_unused=True)
    last, last_state = model(x, state, last_only=True)
    got = torch.autograd.grad((last * weight).sum(), params, allow_unused=True)

    assert last.shape == (3, 16)
    assert rel_err(last, full[:, -1]) <= 1e-12
    leaves = torch.utils._pytree.tree_leaves
    for a, b in zip(leaves(last_state), leaves(full_state), strict=True):
        assert a.shape == b.shape and rel_err(a, b, scale=1.0) <= 1e-12
    for g, w in zip(got, want, strict=True):
        if w is None or g is None:  # a parameter that cannot reach the last position
            assert g is None or not g.any()
            continue
        assert rel_err(g, w, scale=1e-6) <= 1e-8


@pytest.mark.parametrize("name", BACKBONES)
def test_last_only_streams_on_and_refuses_what_it_cannot_do(rng, name):
    model = build(name, {})
    x = torch.randn(2, 9, 16, generator=rng)
    with torch.no_grad():
        full, _ = model(torch.cat([x, x], 1))
        _, state = model(x, last_only=True)  # the state carries on like forward's
        again, _ = model(x, state, last_only=True)
    assert rel_err(again, full[:, -1]) <= 1e-5
    with pytest.raises(TypeError, match="last_only must be a bool"):
        model(x, last_only="yes")
    with pytest.raises(ValueError, match="at least one time step"):
        model(x[:, :0], last_only=True)


@pytest.mark.parametrize("name", ["aaren", "transformer"])
def test_attention_captured_under_last_only_is_forwards(rng, name):
    from aaren_ts.nn.inspect import capture_attention

    model = build(name, {})
    x = torch.randn(2, 11, 16, generator=rng)
    with torch.no_grad(), capture_attention(model) as full:
        model(x)
    with torch.no_grad(), capture_attention(model) as last:
        model(x, last_only=True)
    assert len(last.weights) == len(full.weights) == 2
    for a, b in zip(last.weights, full.weights, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("recency", [False, True])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("last_only", [False, True])
def test_a_few_tokens_without_gradients_equal_the_parallel_pass(
    rng, monkeypatch, recency, n, last_only
):
    """Up to four tokens without gradients (a policy's act: 2-3 per call) are absorbed as
    one small block (``absorb_tokens``), five and more go through the parallel scan; either
    way the outputs and the state are the gradient path's (float64, carried state)."""
    torch.manual_seed(0)
    model = make_backbone("aaren", 16, n_layers=2, n_heads=4, recency=recency).double().eval()
    if recency:
        with torch.no_grad():
            for layer in model.layers:
                layer.attn.recency_rate.copy_(torch.tensor([0.3, -0.2, 0.05, 1.0]))
    with torch.no_grad():
        _, state = model(torch.randn(3, 6, 16, generator=rng, dtype=torch.float64))
    x = torch.randn(3, n, 16, generator=rng, dtype=torch.float64)
    want, want_state = model(x, state, last_only=last_only)  # gradients on: the scan
    assert want.requires_grad
    import aaren_ts.nn.attention as attention

    scans = []
    scan = attention.aaren_attention
    monkeypatch.setattr(
        attention, "aaren_attention", lambda *a, **k: scans.append(1) or scan(*a, **k)
    )
    with torch.no_grad():
        got, got_state = model(x, state, last_only=last_only)
    # the parallel scan runs in the layers that give every position: stepped up to 4 tokens
    assert len(scans) == (0 if n <= 4 else 2 - last_only)
    assert rel_err(got, want.detach()) <= 1e-12
    leaves = torch.utils._pytree.tree_leaves
    for a, b in zip(leaves(got_state), leaves(want_state), strict=True):
        assert a.shape == b.shape and rel_err(a, b.detach(), scale=1.0) <= 1e-12


@pytest.mark.parametrize("block", [AarenBlock, TransformerBlock])
def test_a_block_outside_training_skips_dropout_and_keeps_hooks(rng, block):
    """Outside training a block runs its plain layers as single calls and skips its dropout
    layers: bit-equal to composing the layers as modules, and a hook on a layer still
    fires (that layer then goes through its module call)."""
    torch.manual_seed(0)
    layer = block(16, 4, d_ff=None, dropout=0.5).eval()
    x = torch.randn(2, 5, 16, generator=rng)
    if block is AarenBlock:
        empty = layer.attn.init_state(2)
    else:
        empty = KVCache(*[torch.zeros(2, 4, 0, 4)] * 2)
    a, _ = layer.attn(layer.norm_attn(x), empty)
    h = x + a
    want = h + layer.ff(layer.norm_ff(h))
    got, _ = layer(x, empty)
    assert torch.equal(got, want)
    calls, dropouts = [], []
    layer.ff[0].register_forward_hook(lambda module, args, out: calls.append(out.shape))
    for dropout in (layer.dropout, layer.ff[2]):
        dropout.register_forward_hook(lambda module, args, out: dropouts.append(1))
    assert torch.equal(layer(x, empty)[0], want) and calls == [(2, 5, 64)]
    assert not dropouts  # skipped, not called as identities
    assert not torch.equal(layer.train()(x, empty)[0], want)  # training keeps dropout


def test_a_few_tokens_after_a_state_of_another_dtype_take_the_general_path(rng):
    """A carried state that does not fit the layer (float64 for a float32 layer) is cast by
    the general path, as before: the few-token block declines it."""
    attn = AarenAttention(8, 2, recency=True).eval()
    state = attn.init_state(2, dtype=torch.float64)
    x = torch.randn(2, 3, 8, generator=rng)
    with torch.no_grad():
        assert attn._forward_few(x, state, False) is None
        got, got_state = attn(x, state)
    want, want_state = attn(x, state)  # gradients on: the general path
    assert got_state.scan.m.dtype == torch.float32
    assert rel_err(got, want.detach()) <= 1e-6
    assert rel_err(got_state.scan.w, want_state.scan.w.detach()) <= 1e-6
