"""The Aaren scan core: attention of one query over every prefix, as an exact parallel scan.

Public API
----------
aaren_attention(scores, values, state=None, *, return_state=False, backend="auto")
    Many-to-many outputs for a whole sequence, optionally continuing a stream.
aaren_step(state, score, value)
    One new token in O(1) time and memory.
aaren_reduce(scores, values, state=None)
    The state after a whole block (many-to-one): the last output in O(N), no prefixes.
init_state(batch_shape, d, dtype, device)
    The empty-prefix state. ``ScanState(m, u, w)`` is documented in ``aaren_ts.scan.state``.

Backends (``backend=``): ``"naive"`` (masked softmax oracle), ``"recurrent"`` (token loop),
``"chunked"`` (parallel PyTorch, any device); ``register_backend`` adds GPU kernels.
Only torch is needed to import this package.
"""

from .dispatch import aaren_attention, available_backends, register_backend, select_backend
from .recurrent import aaren_step
from .reduce import aaren_reduce
from .state import ScanState, combine, init_state, state_output

__all__ = [
    "ScanState",
    "aaren_attention",
    "aaren_reduce",
    "aaren_step",
    "available_backends",
    "combine",
    "init_state",
    "register_backend",
    "select_backend",
    "state_output",
]
