"""How many CPU threads an estimator's torch work uses (the ``n_threads`` parameter).

torch's default (one intra-op thread per core) suits large matrix products. The networks
here are small (``d_model`` 32 or 64 by default): splitting their products over several
threads costs more in synchronisation than it saves, and when anything else runs on the
machine (a second job, the workers of a parallel grid search) the threads oversubscribe the
cores and a fit can take 10-30x longer. So by default (``n_threads=None``) a small network
runs on one thread, and so does any estimator inside a parallel worker (joblib/loky, dask,
ray, a multiprocessing pool), where the cores belong to the other workers too.

Every public method of an estimator runs under ``estimator_threads``: the setting is
process-wide in torch, so it is applied for the call and the previous value restored after
it (a user's own ``torch.set_num_threads`` outside those calls is left as it was).
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import numbers
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .._checks import Int, InvalidParameterError, Options, check_params

# widest network run on one thread by default. benchmarks/threads.py on 2 cores (fit, 1
# thread vs 2): idle, one thread is as fast up to d_model 64 and 12% slower at 128; beside
# one busy process it is 3.3x faster at 128 (2.3x at 256), where two threads stall
# (benchmarks/RESULTS.md, "A new user's first hour")
SMALL_WIDTH = 128

# what n_threads may be: automatic (None), torch's setting (-1), or a count
THREADS = (Options(None, -1), Int(1))

# torch's thread count is process-wide. Calls on several estimators from several threads
# may overlap; the lock keeps each read-and-set whole, and an overlap can only leave a call
# running with another call's count (a matter of speed, never of results)
_LOCK = threading.Lock()


def in_parallel_worker() -> bool:
    """Whether this process is a worker of a parallel backend that owns the other cores:
    a daemonic multiprocessing / loky process, a dask worker, or a ray task.

    >>> in_parallel_worker()
    False
    """
    if multiprocessing.current_process().daemon:
        return True
    if "distributed" in sys.modules:  # only asked when dask.distributed is already in use
        try:
            sys.modules["distributed"].get_worker()
            return True
        except (ValueError, AttributeError):
            pass
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        try:
            context = ray.get_runtime_context()
            return context.worker.mode == ray.WORKER_MODE
        except (AttributeError, RuntimeError):
            pass
    return False


def resolve_threads(n_threads: int | None, d_model: int | None) -> int | None:
    """The intra-op thread count to run with, or None for torch's current setting.

    ``n_threads``: None (automatic: 1 for networks up to ``SMALL_WIDTH`` wide and inside
    parallel workers, else torch's setting), -1 (torch's setting, all cores by default),
    or a positive count.

    >>> resolve_threads(None, 64), resolve_threads(None, 512), resolve_threads(3, 64)
    (1, None, 3)
    >>> resolve_threads(-1, 64) is None
    True
    """
    if not any(constraint.accepts(n_threads) for constraint in THREADS):
        allowed = " or ".join(constraint.description for constraint in THREADS)
        raise InvalidParameterError(f"n_threads must be {allowed}, got {n_threads!r}")
    if n_threads is None:
        if in_parallel_worker() or (d_model is not None and d_model <= SMALL_WIDTH):
            return 1
        return None
    if n_threads == -1:
        return None
    return int(n_threads)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads (None: unchanged), then restore."""
    if count is None:
        yield
        return
    with _LOCK:
        before = torch.get_num_threads()
        if before != count:
            torch.set_num_threads(count)
    if before == count:  # the common case on a warm stream: nothing to set or restore
        yield
        return
    try:
        yield
    finally:
        with _LOCK:
            torch.set_num_threads(before)


# the context of a call that needs no change (a do-nothing ``with``)
_UNCHANGED = contextlib.nullcontext()


def estimator_threads(estimator: Any):
    """``torch_threads`` for ``estimator``'s ``n_threads`` and width (its ``d_model``).

    A bad ``n_threads`` raises the ``InvalidParameterError`` that ``fit``'s parameter check
    would (naming the estimator); a bad ``d_model`` is left for that check to name.
    """
    check_params(estimator, {"n_threads": THREADS})
    d_model = getattr(estimator, "d_model", None)
    valid_width = isinstance(d_model, numbers.Integral) and not isinstance(d_model, bool)
    count = resolve_threads(estimator.n_threads, d_model if valid_width else None)
    if count is None or count == torch.get_num_threads():
        return _UNCHANGED  # nothing to set or restore
    return torch_threads(count)


def threaded(method: Callable) -> Callable:
    """``method`` run under its instance's ``estimator_threads``; name and docstring kept."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        threads = estimator_threads(self)
        if threads is _UNCHANGED:  # a warm stream's usual call: no context to enter
            return method(self, *args, **kwargs)
        with threads:
            return method(self, *args, **kwargs)

    return wrapper
