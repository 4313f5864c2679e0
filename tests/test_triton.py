"""The fused Triton kernels (``backend="triton"``) against the float64 oracle and the
PyTorch path: outputs, gradients, states, dtypes, lengths, the split-sequence path.

Without CUDA the kernels run through Triton's CPU interpreter (``conftest.py`` sets
``TRITON_INTERPRET=1``) on small sizes; on a GPU the same tests run on CUDA, plus the long
lengths marked ``gpu``. Inputs are fresh random numbers every run (the seed is in every
failure message) and every buffer a kernel writes starts as NaN, so an element it fails to
write cannot pass.
"""

from __future__ import annotations

import math
import os
import secrets

import pytest
import torch
from helpers import rel_err

from aaren_ts.scan import ScanState, aaren_attention, init_state

if os.environ.get("CI"):
    import triton  # noqa: F401  (CI installs it: these checks must run, never skip)
else:
    pytest.importorskip("triton", reason="the optional dependency triton is not installed")

from aaren_ts.scan import triton_scan

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
# The interpreter runs every program in Python: a few rows keep a test to about a second.
ROWS = 6 if CUDA else 2


@pytest.fixture(autouse=True)
def poisoned_buffers(monkeypatch):
    """Every kernel output starts as NaN (and half-precision ones too)."""

    def poisoned(shape, dtype, device):
        return torch.full(shape, math.nan, dtype=dtype, device=device)

    monkeypatch.setattr(triton_scan, "new_buffer", poisoned)


@pytest.fixture
def gen():
    """A generator with a fresh seed (``gen.initial_seed()`` reproduces a failure)."""
    return torch.Generator().manual_seed(secrets.randbits(31))


def _inputs(gen, rows, n, d, scale=1.0, offset=0.0):
    """float64 inputs that float32 holds exactly (the oracle must see what the kernel sees:
    at 1e4 a float32 score is rounded by 5e-4)."""
    s = torch.randn(rows, n, generator=gen, dtype=torch.float64) * scale + offset
    v = torch.randn(rows, n, d, generator=gen, dtype=torch.float64)
    return s.float().double(), v.float().double()


def _prior(gen, rows, d, scale=1.0, offset=0.0):
    m = torch.randn(rows, generator=gen, dtype=torch.float64) * scale + offset
    u = torch.rand(rows, generator=gen, dtype=torch.float64) + 0.5
    w = torch.randn(rows, d, generator=gen, dtype=torch.float64)
    return ScanState(*(t.float().double() for t in (m, u, w)))


def _run(s64, v64, prior, dtype, backend, upstream, segments=None, device=DEVICE, split=None):
    """Outputs and gradients w.r.t. scores, values and the prior's m, u and w, through the
    outputs and the final state (m: the level a recency shift moves)."""
    s = s64.to(device, dtype).requires_grad_()
    v = v64.to(device, dtype).requires_grad_()
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    u0 = prior.u.to(device, acc).requires_grad_()
    w0 = prior.w.to(device, acc).requires_grad_()
    m0 = prior.m.to(device, acc).requires_grad_()
    state = ScanState(m0, u0, w0)
    if backend == "triton-split":
        out, final = triton_scan.triton_attention(s, v, state, segments=segments, split=split)
    else:
        out, final = aaren_attention(s, v, state, return_state=True, backend=backend)
    d_out, d_u, d_w = (t.to(device, out.dtype if t.dim() == 3 else acc) for t in upstream)
    loss = (out * d_out).sum() + (final.u * d_u).sum() + (final.w * d_w).sum()
    grads = torch.autograd.grad(loss, (s, v, m0, u0, w0), allow_unused=True)
    grads = tuple(torch.zeros_like(m0) if g is None else g for g in grads)
    return out.detach(), final, grads


def _upstream(gen, rows, n, d):
    return (
        torch.randn(rows, n, d, generator=gen, dtype=torch.float64),
        torch.randn(rows, generator=gen, dtype=torch.float64),
        torch.randn(rows, d, generator=gen, dtype=torch.float64),
    )


def _check(got, ref, seed, out_tol, grad_tol):
    (out, final, grads), (ref_out, ref_final, ref_grads) = got, ref
    msg = f"seed {seed}"
    assert not torch.isnan(out).any(), f"unwritten or NaN outputs ({msg})"
    assert rel_err(out, ref_out) <= out_tol, msg
    assert rel_err(final.w / final.u.unsqueeze(-1), ref_final.w / ref_final.u.unsqueeze(-1)) <= (
        out_tol
    ), msg
    names = ("scores", "values", "m0", "u0", "w0")
    for name, g, r in zip(names, grads, ref_grads, strict=True):
        assert not torch.isnan(g).any(), f"NaN gradient of {name} ({msg})"
        # Score gradients can be all but zero where the softmax saturates: measure them on
        # the natural scale of the values (1), as the chunked backend's tests do.
        assert rel_err(g, r, scale=1.0) <= grad_tol, f"gradient of {name}: {msg}"


# 4097 through the interpreter costs ~20 s a case: one case below covers it on CPU.
LENGTHS = [1, 2, 17, 100, 1000] if not CUDA else [1, 2, 17, 1000, 4097]


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_float32_outputs_and_gradients_match_float64_oracle(gen, n, scale):
    d = 20  # not a power of two: the value block is masked
    s, v = _inputs(gen, ROWS, n, d, scale)
    prior = _prior(gen, ROWS, d, scale)
    up = _upstream(gen, ROWS, n, d)
    got = _run(s, v, prior, torch.float32, "triton", up)
    # Beyond 1000 the O(N^2) oracle is slow: float64 chunked (itself checked against it).
    oracle = "naive" if n <= 1000 else "chunked"
    ref = _run(s, v, prior, torch.float64, oracle, up, device="cpu")
    _check(got, ref, gen.initial_seed(), 1e-5, 1e-4)


def test_length_4097_on_one_row_with_a_split(gen):
    """The issue's 4097 on CPU too: one row, scores at 1e4 scale, cut into 3 segments."""
    n, d = 4097, 20
    s, v = _inputs(gen, 1, n, d, 1e4)
    prior = _prior(gen, 1, d, 1e4)
    up = _upstream(gen, 1, n, d)
    got = _run(s, v, prior, torch.float32, "triton-split", up, segments=3)
    ref = _run(s, v, prior, torch.float64, "chunked", up, device="cpu")
    _check(got, ref, gen.initial_seed(), 1e-5, 1e-4)


# Inputs of the test above on which float32 suffix carries failed it: a token leads 2156
# (3608) rows and is then overtaken, so its score gradient subtracts two sums over those rows
# that cancel to ~1e-13; float32 carries left 1.0e-4 (2.1e-4) of rounding, float64 ones 7e-6.
@pytest.mark.parametrize("seed", [532329973, 1400730005])
def test_a_long_leader_keeps_its_score_gradient(seed):
    gen = torch.Generator().manual_seed(seed)
    n, d = 4097, 20
    s, v = _inputs(gen, 1, n, d, 1e4)
    prior = _prior(gen, 1, d, 1e4)
    up = _upstream(gen, 1, n, d)
    run_max = torch.cummax(s[0], 0).indices
    assert int(torch.bincount(run_max).max()) > 2000  # the inputs are still what they were
    got = _run(s, v, prior, torch.float32, "triton-split", up, segments=3)
    ref = _run(s, v, prior, torch.float64, "chunked", up, device="cpu")
    _check(got, ref, seed, 1e-5, 2e-5)


@pytest.mark.parametrize("n", [17, 333])
def test_matches_the_pytorch_path(gen, n):
    s, v = _inputs(gen, ROWS, n, 32, 3.0)
    prior = _prior(gen, ROWS, 32)
    up = _upstream(gen, ROWS, n, 32)
    got = _run(s, v, prior, torch.float32, "triton", up)
    ref = _run(s, v, prior, torch.float32, "chunked", up)
    _check(got, ref, gen.initial_seed(), 1e-5, 1e-4)


@pytest.mark.parametrize("split", triton_scan.SPLITS)
@pytest.mark.parametrize("segments", [2, 3, 7])
@pytest.mark.parametrize("n", [50, 257])
def test_sequence_split_across_programs(gen, segments, n, split):
    """The long-sequence paths: segment summaries, their scan, then every segment from its
    carry, or the same in one pass with look-back (forward); right to left (backward)."""
    s, v = _inputs(gen, ROWS, n, 16, 10.0)
    prior = _prior(gen, ROWS, 16, 10.0)
    up = _upstream(gen, ROWS, n, 16)
    got = _run(s, v, prior, torch.float32, "triton-split", up, segments=segments, split=split)
    ref = _run(s, v, prior, torch.float64, "naive", up, device="cpu")
    _check(got, ref, gen.initial_seed(), 1e-5, 1e-4)


@pytest.mark.parametrize("n", [40, 333])
def test_lookback_walks_the_chain_of_aggregates(gen, n):
    """With only segment 0 publishing an inclusive prefix, every segment combines all the
    aggregates before it (the path a program takes when its predecessors are still running;
    the interpreter runs programs in order, so it is forced here)."""
    s, v = _inputs(gen, ROWS, n, 24, 30.0)
    prior = _prior(gen, ROWS, 24, 30.0)
    state = ScanState(*(t.to(DEVICE, torch.float32) for t in prior))
    out, lm, ll, final, _ = triton_scan.forward(
        s.float().to(DEVICE), v.float().to(DEVICE), state, segments=5, split="lookback",
        publish_inclusive=False,
    )  # fmt: skip
    ref = aaren_attention(s, v, prior, backend="naive")
    assert rel_err(out, ref) <= 1e-5, gen.initial_seed()
    assert rel_err(final.w / final.u.unsqueeze(-1), ref[:, -1]) <= 1e-5
    lse = lm.double() + ll.double()
    ref_lse = torch.logaddexp(
        (prior.m + prior.u.log()).unsqueeze(-1), torch.logcumsumexp(s, -1)
    )  # the prior counts in every prefix
    assert (lse.cpu() - ref_lse).abs().max() <= 1e-5 * ref_lse.abs().max() + 1e-5


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="split must be one of"):
        triton_scan.forward(
            torch.randn(1, 4), torch.randn(1, 4, 16), init_state(1, 16), split="magic"
        )


def test_split_is_chosen_for_few_long_rows(monkeypatch):
    device = torch.device("cpu")
    assert triton_scan.choose_segments(1, 100_000, device) > 1
    assert triton_scan.choose_segments(10_000, 100_000, device) == 1
    assert triton_scan.choose_segments(1, 500, device) == 1  # too short to be worth it
    # The shapes on a 132-multiprocessor GPU: the throughput family stays one pass.
    monkeypatch.setattr(triton_scan, "_multiprocessors", lambda device: 132)
    assert triton_scan.choose_segments(512, 1 << 16, device) == 1
    assert triton_scan.choose_segments(128, 1 << 12, device) == 4
    assert triton_scan.choose_segments(8, 1 << 20, device) == 66


@pytest.mark.parametrize("d", [16, 64, 256])
def test_value_sizes(gen, d):
    s, v = _inputs(gen, ROWS, 40, d, 5.0)
    prior = _prior(gen, ROWS, d)
    up = _upstream(gen, ROWS, 40, d)
    got = _run(s, v, prior, torch.float32, "triton", up)
    ref = _run(s, v, prior, torch.float64, "naive", up, device="cpu")
    _check(got, ref, gen.initial_seed(), 1e-5, 1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_accumulate_in_float32(gen, dtype):
    s, v = _inputs(gen, ROWS, 300, 32, 5.0)
    s, v = s.to(dtype).double(), v.to(dtype).double()  # the oracle sees the rounded inputs
    prior = init_state(ROWS, 32, torch.float64)
    up = tuple(t.to(dtype).double() for t in _upstream(gen, ROWS, 300, 32))
    out, _, grads = _run(s, v, prior, dtype, "triton", up)
    assert out.dtype == dtype
    assert grads[0].dtype == dtype and grads[1].dtype == dtype
    ref_out, _, ref_grads = _run(s, v, prior, torch.float64, "naive", up, device="cpu")
    assert rel_err(out, ref_out) <= 1e-2, gen.initial_seed()
    assert rel_err(grads[1], ref_grads[1]) <= 1e-2, gen.initial_seed()
    assert rel_err(grads[0], ref_grads[0], scale=1.0) <= 1e-2, gen.initial_seed()


@pytest.mark.parametrize("offset", [1e4, -1e4])
def test_large_shared_offset_keeps_float32_precision(gen, offset):
    """Scores at +-1e4: the kernels never form ``s - L`` in one float32."""
    s, v = _inputs(gen, ROWS, 300, 16, 1.0, offset)
    prior = _prior(gen, ROWS, 16, 1.0, offset)
    up = _upstream(gen, ROWS, 300, 16)
    got = _run(s, v, prior, torch.float32, "triton", up)
    ref = _run(s, v, prior, torch.float64, "naive", up, device="cpu")
    _check(got, ref, gen.initial_seed(), 1e-5, 1e-4)


def test_extreme_jumps_and_empty_prefixes(gen):
    """-1e4 ... 1e4 jumps inside one block, and rows whose first scores are -inf."""
    n, d = 70, 8
    s = torch.randn(ROWS, n, generator=gen, dtype=torch.float64) * 1e4
    s[0, :20] = -math.inf
    v = torch.randn(ROWS, n, d, generator=gen, dtype=torch.float64)
    f32 = torch.float32
    out = aaren_attention(s.to(DEVICE, f32), v.to(DEVICE, f32), backend="triton")
    ref = aaren_attention(s, v, backend="naive")
    assert not torch.isnan(out).any()
    assert torch.all(out[0, :20] == 0)  # empty prefix reads as 0, as with SDPA
    assert rel_err(out, ref) <= 1e-5, gen.initial_seed()


def test_nan_is_causal(gen):
    """A NaN score makes its token's output and every later one NaN, never an earlier one."""
    s, v = _inputs(gen, ROWS, 60, 8, 3.0)
    s[0, 37] = math.nan
    out = aaren_attention(s.float().to(DEVICE), v.float().to(DEVICE), backend="triton").cpu()
    ref = aaren_attention(s, v, backend="naive")
    assert rel_err(out[0, :37], ref[0, :37]) <= 1e-5
    assert torch.isnan(out[0, 37:]).all()
    assert rel_err(out[1:], ref[1:]) <= 1e-5


def test_batch_shapes_and_stream_continuation(gen):
    """(B, H, N) inputs through ``aaren_attention``; a stream cut in three equals one call."""
    s = torch.randn(2, 3, 90, generator=gen).to(DEVICE)
    v = torch.randn(2, 3, 90, 24, generator=gen).to(DEVICE)
    full = aaren_attention(s, v, backend="triton")
    ref = aaren_attention(s.double().cpu(), v.double().cpu(), backend="naive")
    assert full.shape == (2, 3, 90, 24)
    assert rel_err(full, ref) <= 1e-5, gen.initial_seed()
    pieces, state = [], None
    for a, b in [(0, 1), (1, 33), (33, 90)]:
        out, state = aaren_attention(
            s[..., a:b], v[..., a:b, :], state, return_state=True, backend="triton"
        )
        pieces.append(out)
    assert rel_err(torch.cat(pieces, -2), ref) <= 1e-5, gen.initial_seed()


def test_strided_values_and_gradients(gen):
    """Values as a transposed view (as attention heads produce them): read through strides."""
    s = torch.randn(ROWS, 50, generator=gen).to(DEVICE).requires_grad_()
    base = torch.randn(ROWS, 24, 50, generator=gen).to(DEVICE).requires_grad_()
    v = base.transpose(1, 2)
    assert not v.is_contiguous()
    out, _ = triton_scan.triton_attention(s, v, init_state(ROWS, 24, device=DEVICE))
    up = torch.randn(out.shape, generator=gen).to(DEVICE)
    grads = torch.autograd.grad(out, (s, base), up)
    s64 = s.detach().double().cpu().requires_grad_()
    b64 = base.detach().double().cpu().requires_grad_()
    ref = aaren_attention(s64, b64.transpose(1, 2), backend="naive")
    ref_grads = torch.autograd.grad(ref, (s64, b64), up.double().cpu())
    assert rel_err(out, ref) <= 1e-5, gen.initial_seed()
    assert rel_err(grads[1], ref_grads[1]) <= 1e-4, gen.initial_seed()
    assert rel_err(grads[0], ref_grads[0], scale=1.0) <= 1e-4, gen.initial_seed()


def test_empty_sequence_returns_the_state(gen):
    s = torch.randn(3, 0, device=DEVICE)
    v = torch.randn(3, 0, 8, device=DEVICE)
    prior = ScanState(torch.zeros(3), torch.ones(3), torch.randn(3, 8, generator=gen))
    prior = ScanState(*(t.to(DEVICE) for t in prior))
    out, final = aaren_attention(s, v, prior, return_state=True, backend="triton")
    assert out.shape == (3, 0, 8)
    assert torch.equal(final.w, prior.w) and torch.equal(final.u, prior.u)


def test_unsupported_inputs_raise_clear_errors():
    s, v = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match="float64 runs on the 'chunked' backend"):
        aaren_attention(s.to(DEVICE), v.to(DEVICE), backend="triton")
    with pytest.raises(ValueError, match="value sizes up to 256"):
        aaren_attention(torch.randn(2, 5), torch.randn(2, 5, 300), backend="triton")


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.setattr(triton_scan, "interpreting", lambda: False)
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        aaren_attention(torch.randn(2, 5), torch.randn(2, 5, 4), backend="triton")


def test_auto_never_sends_cpu_tensors_to_triton():
    from aaren_ts.scan import select_backend

    assert select_backend(torch.randn(2, 5), torch.randn(2, 5, 4)) == "dense"  # small
    assert select_backend(torch.randn(64, 512), torch.randn(64, 512, 4)) == "chunked"


@pytest.mark.gpu
@pytest.mark.parametrize("n", [65536])
def test_cuda_long_sequences_match_oracle(gen, n):
    """The issue's longest length, on few rows (so the split path runs), against float64
    chunked (the O(N^2) oracle does not fit) and the float32 PyTorch path."""
    d = 64
    s, v = _inputs(gen, 2, n, d, 3.0)
    prior = _prior(gen, 2, d)
    up = _upstream(gen, 2, n, d)
    got = _run(s, v, prior, torch.float32, "triton", up)
    ref = _run(s, v, prior, torch.float64, "chunked", up)
    _check(got, ref, gen.initial_seed(), 1e-5, 1e-4)


@pytest.mark.gpu
def test_cuda_auto_selects_triton_for_layers(gen):
    from aaren_ts.nn import Aaren
    from aaren_ts.scan import select_backend

    s = torch.randn(4, 100, device="cuda")
    v = torch.randn(4, 100, 32, device="cuda")
    assert select_backend(s, v) == "triton"
    assert select_backend(s.bfloat16(), v.bfloat16()) == "triton"
    torch.manual_seed(gen.initial_seed())
    model = Aaren(32, n_layers=2, n_heads=4).cuda()
    x = torch.randn(3, 200, 32, device="cuda", requires_grad=True)
    y, _ = model(x)
    y.square().sum().backward()
    ref_model = Aaren(32, n_layers=2, n_heads=4, scan_backend="chunked").cuda()
    ref_model.load_state_dict(model.state_dict())
    x2 = x.detach().clone().requires_grad_()
    y2, _ = ref_model(x2)
    y2.square().sum().backward()
    assert rel_err(y, y2) <= 1e-5
    assert rel_err(x.grad, x2.grad) <= 1e-4
