"""All-or-nothing public methods: if a call raises, the estimator is left as it was.

sktime's ``fit`` resets the estimator before checking the data, ``update`` moves the cutoff
before ``_update`` runs and ``predict`` stores a new ``fh`` before ``_predict`` runs; a
failure half-way would leave a live estimator unusable or subtly changed. Our own methods
rebind attributes instead of mutating them, so a shallow copy of ``__dict__`` is a full
snapshot.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


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
    """
    snapshot = obj.__dict__.copy()
    try:
        yield
    except BaseException:
        obj.__dict__.clear()
        obj.__dict__.update(snapshot)
        raise


def atomic(method: Callable) -> Callable:
    """``method`` (e.g. ``BaseForecaster.predict``) made all-or-nothing with
    ``restored_on_error``; name, docstring and signature are kept.

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
        with restored_on_error(self):
            return method(self, *args, **kwargs)

    return wrapper
