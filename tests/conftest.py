"""Shared fixtures and references for the test suite."""

from __future__ import annotations

import os
import warnings

# One torch thread per test process, and for every interpreter a test starts (examples,
# README snippets, DDP ranks): the tests are small networks, and the suite runs its two
# workers (pytest-xdist) side by side on two cores; torch's default of one thread per core
# in each would oversubscribe them (issue 19 measured up to 30x slower runs that way).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # (after the thread setting above: torch reads it at import)
import torch

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def _keep_warning_filters_of_sktime_suppressions() -> None:
    """sktime 1.2's ``_SuppressWarningPattern`` (around its pandas notices) exits by adding a
    "default" filter for every ``FutureWarning``, which undoes pyproject.toml's filters for
    the rest of a test (its own deprecation notices then show again). Restore the filters
    it found on entry instead."""
    try:
        from sktime.utils.warnings import _SuppressWarningPattern
    except ImportError:
        return
    enter = _SuppressWarningPattern.__enter__

    def saving_enter(self):
        self._saved_filters = list(warnings.filters)
        return enter(self)

    def restoring_exit(self, *exc_info):
        warnings.filters[:] = self._saved_filters
        warnings._filters_mutated()  # what catch_warnings calls after the same assignment

    _SuppressWarningPattern.__enter__ = saving_enter
    _SuppressWarningPattern.__exit__ = restoring_exit


_keep_warning_filters_of_sktime_suppressions()


def pytest_collection_modifyitems(config, items):
    """Long tests first (marked ``slow``), so that the parallel workers finish together
    rather than one of them ending the run alone with a long test; and GPU tests are
    skipped only where no CUDA device exists, and say so."""
    items.sort(key=lambda item: "slow" not in item.keywords)  # stable: file order otherwise
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    """A fresh, seeded torch generator per test (deterministic, independent of test order)."""
    return torch.Generator().manual_seed(1234)
