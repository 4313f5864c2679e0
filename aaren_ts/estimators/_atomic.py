"""All-or-nothing, one-at-a-time public methods.

sktime's ``fit`` resets the estimator before checking the data, ``update`` moves the cutoff
before ``_update`` runs and ``predict`` stores a new ``fh`` before ``_predict`` runs; a
failure half-way would leave a live estimator unusable or subtly changed. Our own methods
rebind attributes instead of mutating them; sktime also edits some of its dicts in place,
so the snapshot copies ``__dict__`` and the built-in containers in it (not the arrays,
frames or networks they hold). The stored ``fh`` is also read back later in sktime's
``predict_interval``, so two threads predicting different horizons on one estimator would
mix them up: the wrapped methods of one estimator therefore run one at a time (a re-entrant
lock per instance, kept outside the instance so that it pickles and deep-copies as before).
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd


@contextmanager
def restored_on_error(obj: Any) -> Iterator[None]:
    """Put every attribute of ``obj`` back as it was if the block raises.

    Examples
    --------
    >>> class Box:
    ...     value = None
    >>> box = Box()
    >>> box.value = 1
    >>> try:
    ...     with restored_on_error(box):
    ...         box.value = 2
    ...         raise ValueError("bad input")
    ... except ValueError:
    ...     pass
    >>> box.value
    1

    Containers changed in place come back too (sktime writes into its own dicts, such as
    ``_converter_store_y``, during ``update``):

    >>> box.store = {"name": "a", "seen": ["a"]}
    >>> try:
    ...     with restored_on_error(box):
    ...         box.store["name"] = "b"
    ...         box.store["seen"].append("b")
    ...         raise ValueError("bad input")
    ... except ValueError:
    ...     pass
    >>> box.store
    {'name': 'a', 'seen': ['a']}
    """
    saved = _snapshot(obj)
    try:
        yield
    except BaseException:
        _restore(obj, saved)
        raise


def _snapshot(obj: Any) -> tuple[dict, list]:
    """What ``_restore`` needs to put ``obj``'s attributes back (see ``restored_on_error``)."""
    memo: dict[int, Any] = {}  # a container met twice is copied once: sharing is kept
    snapshot, indexes = {}, []
    for name, value in obj.__dict__.items():  # one pass: a stream snapshots twice per row
        kind = type(value)
        if kind in _CONTAINERS:
            snapshot[name] = _skeleton(value, memo)
            continue
        snapshot[name] = value  # no container: kept as it is
        if kind not in _NEVER_INDEXES and isinstance(value, pd.Index):
            indexes.append(value)
    return snapshot, _lazy_caches(indexes)


def _restore(obj: Any, saved: tuple[dict, list]) -> None:
    snapshot, caches = saved
    obj.__dict__.clear()
    obj.__dict__.update(snapshot)
    for holder, cache in caches:
        if cache is None:  # none before the call
            holder.__dict__.pop("_cache", None)
        else:
            holder.__dict__["_cache"] = cache


def _lazy_caches(values) -> list[tuple[Any, dict | None]]:
    """The lazily filled ``_cache`` dicts of the pandas indexes among ``values`` (and of
    their arrays), copied. pandas fills them on first read (an index's dtype, a datetime
    array's resolution) and pickles them: a failed call that only read an index (sktime's
    cutoff) would otherwise change the estimator's pickled bytes, though not its state."""
    found = []
    for value in values:
        if not isinstance(value, pd.Index):
            continue
        for holder in (value, getattr(value, "_data", None)):
            attributes = getattr(holder, "__dict__", None)
            if isinstance(attributes, dict):
                cache = attributes.get("_cache")
                found.append((holder, dict(cache) if isinstance(cache, dict) else None))
    return found


_CONTAINERS = (dict, list, set)
# attribute types that are certainly no pandas index (most of an estimator's attributes)
_NEVER_INDEXES = frozenset({type(None), bool, int, float, str, tuple})


def _skeleton(value: Any, memo: dict[int, Any], depth: int = 8) -> Any:
    """``value`` with its built-in containers (dict, list, set) copied, down to ``depth``
    levels, and everything else shared: enough to undo in-place edits of the containers
    (what sktime does to its bookkeeping) without copying arrays, frames or networks,
    which our own methods replace rather than mutate. ``memo`` maps containers already
    copied to their copy, so one shared before is one shared after."""
    kind = type(value)
    if depth == 0 or kind not in _CONTAINERS:
        return value
    if id(value) in memo:
        return memo[id(value)]
    if kind is set:
        copied: Any = set(value)
    elif kind is dict:
        # a copy at C speed, then only the containers in it copied in turn: a fitted dict
        # per series (thousands of entries, no containers) costs microseconds
        copied = memo[id(value)] = dict(value)
        for k, v in copied.items():
            if type(v) in _CONTAINERS:
                copied[k] = _skeleton(v, memo, depth - 1)
    else:
        copied = memo[id(value)] = []
        copied.extend(_skeleton(v, memo, depth - 1) for v in value)
    memo[id(value)] = copied
    return copied


# id(instance) -> its lock; an entry is removed when its instance is garbage collected
_LOCKS: dict[int, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def instance_lock(obj: Any) -> threading.RLock:
    """The re-entrant lock of ``obj`` (made on first use, dropped with ``obj``).

    Examples
    --------
    >>> class Thing:
    ...     pass
    >>> thing = Thing()
    >>> instance_lock(thing) is instance_lock(thing)
    True
    >>> instance_lock(thing) is instance_lock(Thing())
    False
    """
    key = id(obj)
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = threading.RLock()
            weakref.finalize(obj, _LOCKS.pop, key, None)
    return lock


def atomic(method: Callable) -> Callable:
    """``method`` (e.g. ``BaseForecaster.predict``) made all-or-nothing with
    ``restored_on_error``, and run under the instance's lock (``instance_lock``): calls
    from several threads on one estimator run one at a time. Name, docstring and signature
    are kept.

    Examples
    --------
    >>> class Counter:
    ...     def __init__(self):
    ...         self.n = 0
    ...     def bump(self, fail=False):
    ...         self.n += 1
    ...         if fail:
    ...             raise ValueError("failed")
    ...     safe_bump = atomic(bump)
    >>> c = Counter()
    >>> c.safe_bump()
    >>> try:
    ...     c.safe_bump(fail=True)
    ... except ValueError:
    ...     pass
    >>> c.n
    1
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        # restored_on_error spelled out: a stream calls this twice per observation
        with instance_lock(self):
            saved = _snapshot(self)
            try:
                return method(self, *args, **kwargs)
            except BaseException:
                _restore(self, saved)
                raise

    return wrapper
