"""``aaren_attention``: the public entry point, input checks and backend selection.

Every backend has one signature, ``fn(scores (R, N), values (R, N, D), state) ->
(outputs (R, N, D), final_state)``, on inputs already flattened to ``R`` rows and cast to the
accumulation dtype (or, for a backend registered with ``native_dtype=True``, left in their
own half or single precision, which a fused kernel reads directly). A fused GPU kernel plugs in
with ``register_backend`` and a predicate that says when it applies; ``"auto"`` takes the
first applicable backend in registration order after the GPU ones, falling back to the chunked
PyTorch path. The Triton kernels (``triton_scan``) are registered here, first in line, and
imported only when used.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from functools import cache
from typing import NamedTuple

import torch

from .checks import check_sequence_inputs, prepare_state
from .chunked_grad import chunked_attention
from .dense import (
    DENSE_FEW_ROWS,
    DENSE_FORWARD_WEIGHTS,
    DENSE_MAX_TOKENS,
    DENSE_MAX_WEIGHTS,
    DENSE_SMALL_WEIGHTS,
    dense_attention,
)
from .naive import naive_attention
from .recurrent import recurrent_attention
from .short import short_attention
from .state import ScanState, accumulation_dtype

BackendFn = Callable[[torch.Tensor, torch.Tensor, ScanState], tuple[torch.Tensor, ScanState]]


class Backend(NamedTuple):
    """A scan implementation and the predicate that says when ``"auto"`` may pick it."""

    fn: BackendFn
    applies: Callable[[torch.Tensor, torch.Tensor], bool]
    description: str
    native_dtype: bool = False


def _never(scores: torch.Tensor, values: torch.Tensor) -> bool:
    return False


def _always(scores: torch.Tensor, values: torch.Tensor) -> bool:
    return True


# Order matters for "auto": the first backend whose predicate holds is used.
_BACKENDS: dict[str, Backend] = {}
_AUTO_ORDER: list[str] = []


def register_backend(
    name: str,
    fn: BackendFn,
    applies: Callable[[torch.Tensor, torch.Tensor], bool] = _never,
    description: str = "",
    auto_priority: bool = False,
    native_dtype: bool = False,
) -> None:
    """Add a scan backend; ``auto_priority=True`` puts it first in line for ``"auto"``.

    ``applies(scores, values)`` tells ``"auto"`` whether the backend handles those inputs
    (device, dtype, size); forcing ``backend=name`` skips the predicate. ``native_dtype=True``
    hands the backend float16/bfloat16 inputs as they are (a float32 state still).
    """
    _BACKENDS[name] = Backend(fn, applies, description, native_dtype)
    if name in _AUTO_ORDER:
        _AUTO_ORDER.remove(name)
    if auto_priority:
        _AUTO_ORDER.insert(0, name)
    else:
        _AUTO_ORDER.append(name)


register_backend(
    "naive", naive_attention, _never, "masked softmax, O(N^2) time and memory: the oracle"
)
register_backend("recurrent", recurrent_attention, _never, "token loop, the paper's RNN cell")


def _dense_applies(scores: torch.Tensor, values: torch.Tensor) -> bool:
    # Small problems only: the (rows, N, N) weights stay cache-sized, and a few kernels beat
    # the chunked scan's few dozen, whose fixed cost many rows amortise
    # (benchmarks/short_sequences.py measures the crossover; dense.py has the figures).
    n = scores.shape[-1]
    weights = scores.numel() * n
    if not (torch.is_grad_enabled() and (scores.requires_grad or values.requires_grad)):
        return weights <= DENSE_FORWARD_WEIGHTS  # no backward: the chunked scan costs less
    if weights <= DENSE_SMALL_WEIGHTS:
        return True
    rows = scores.numel() // n  # n >= 1 here: an empty input has no weights
    return weights <= DENSE_MAX_WEIGHTS and (n <= DENSE_MAX_TOKENS or rows <= DENSE_FEW_ROWS)


def _short_applies(scores: torch.Tensor, values: torch.Tensor) -> bool:
    # the dense block's inputs, in training: the hand-written backward has a backward to save
    wanted = torch.is_grad_enabled() and (scores.requires_grad or values.requires_grad)
    return wanted and _dense_applies(scores, values)


register_backend(
    "short",
    short_attention,
    _short_applies,
    "the dense block with a hand-written first-order backward: training on short sequences",
)
register_backend(
    "dense",
    dense_attention,
    _dense_applies,
    "masked (N, N) softmax block per row, autograd: the fastest exact form for small inputs",
)
register_backend(
    "chunked", chunked_attention, _always, "chunked parallel scan in PyTorch, any device"
)


@cache
def triton_installed() -> bool:
    """Whether Triton can be imported (checked without importing it)."""
    return importlib.util.find_spec("triton") is not None


def _triton_applies(scores: torch.Tensor, values: torch.Tensor) -> bool:
    if scores.device.type != "cuda" or not triton_installed():
        return False
    from .triton_scan import applies

    return applies(scores, values)


def _triton_attention(
    scores: torch.Tensor, values: torch.Tensor, state: ScanState
) -> tuple[torch.Tensor, ScanState]:
    if not triton_installed():
        raise ImportError(
            "backend 'triton' needs the optional dependency triton: pip install 'aaren-ts[gpu]'"
        )
    from .triton_scan import triton_attention

    return triton_attention(scores, values, state)


register_backend(
    "triton",
    _triton_attention,
    _triton_applies,
    "fused Triton kernels (forward and backward), CUDA; float32/bfloat16/float16",
    auto_priority=True,
    native_dtype=True,
)


def available_backends() -> dict[str, str]:
    """Names and one-line descriptions of the registered backends."""
    return {name: b.description for name, b in _BACKENDS.items()}


def select_backend(scores: torch.Tensor, values: torch.Tensor) -> str:
    """The backend ``"auto"`` uses for these inputs."""
    for name in _AUTO_ORDER:
        if _BACKENDS[name].applies(scores, values):
            return name
    return "chunked"


def aaren_attention(
    scores: torch.Tensor,
    values: torch.Tensor,
    state: ScanState | None = None,
    *,
    return_state: bool = False,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, ScanState]:
    """Many-to-many attention of one query over every prefix, computed as a scan.

    ``o_k = sum_{i<=k} softmax(s_1..s_k)_i * v_i`` for every ``k``, continuing after the
    prefix summarised by ``state``.

    Parameters
    ----------
    scores : torch.Tensor
        Shape ``(..., N)``: the query-key scores ``s_i`` (scale already applied).
    values : torch.Tensor
        Shape ``(..., N, D)``.
    state : ScanState, optional
        State of an earlier prefix (from ``return_state=True``, ``aaren_step`` or
        ``init_state``). ``None`` means an empty prefix.
    return_state : bool, default False
        Also return the state after the last token, to continue the stream later.
    backend : {"auto", "triton", "short", "dense", "chunked", "recurrent", "naive"} or a name
        ``"auto"`` picks the fastest exact implementation for the inputs' device: the fused
        Triton kernels on CUDA (when Triton is installed), else the dense masked-softmax block
        for small inputs (with gradients: ``rows x N^2`` up to 65,536, or up to 131,072
        with at most 16 tokens or at most 32 rows, such as patch-token windows or one short
        series read whole; without: up to 16,384, such as a streamed update of a few rows),
        else the chunked PyTorch path. With gradients, from an empty state, the dense block
        takes its hand-written backward (``"short"``). The short and chunked paths have
        hand-written first-order backwards; for gradients of gradients use ``"dense"``,
        ``"recurrent"`` or ``"naive"`` (autograd all the way).

    Returns
    -------
    outputs : torch.Tensor
        Shape ``(..., N, D)``, dtype promoted from ``scores`` and ``values``. Accumulation is in
        float32 (float64 inputs stay float64). A prefix whose scores are all ``-inf`` gives 0;
        NaN in the inputs gives NaN from that token on.
    state : ScanState
        Only with ``return_state=True``: ``(m, u, w)`` after the last token.

    Examples
    --------
    >>> import torch
    >>> from aaren_ts.scan import aaren_attention
    >>> s, v = torch.randn(2, 8), torch.randn(2, 8, 4)
    >>> out = aaren_attention(s, v)
    >>> ref = torch.softmax(s[:, :3], -1).unsqueeze(-2) @ v[:, :3]
    >>> torch.allclose(out[:, 2], ref[:, 0], atol=1e-6)
    True

    Streaming: scanning ``a`` then ``b`` with the carried state equals one call on ``a + b``.

    >>> out_a, st = aaren_attention(s[:, :5], v[:, :5], return_state=True)
    >>> out_b = aaren_attention(s[:, 5:], v[:, 5:], st)
    >>> torch.allclose(torch.cat([out_a, out_b], 1), out, atol=1e-6)
    True
    """
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    score_shape, d, out_dtype = check_sequence_inputs(scores, values)
    batch_shape = score_shape[:-1]
    n = score_shape[-1]
    if backend == "auto":
        backend = select_backend(scores, values)
    elif backend not in _BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {['auto', *_BACKENDS]}")
    acc = accumulation_dtype(scores.dtype, values.dtype)
    state = prepare_state(state, batch_shape, d, acc, scores.device)

    rows = batch_shape.numel()
    native = _BACKENDS[backend].native_dtype and acc == torch.float32
    flat_scores = scores.reshape(rows, n) if native else scores.reshape(rows, n).to(acc)
    flat_values = values.reshape(rows, n, d) if native else values.reshape(rows, n, d).to(acc)
    flat_state = ScanState(state.m.reshape(rows), state.u.reshape(rows), state.w.reshape(rows, d))
    outputs, final = _BACKENDS[backend].fn(flat_scores, flat_values, flat_state)
    outputs = outputs.reshape(*batch_shape, n, d).to(out_dtype)
    if not return_state:
        return outputs
    final = ScanState(
        final.m.reshape(batch_shape), final.u.reshape(batch_shape), final.w.reshape(*batch_shape, d)
    )
    return outputs, final
