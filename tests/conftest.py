"""Shared fixtures and references for the test suite."""

from __future__ import annotations

import os

import pytest
import torch

# Without a GPU the Triton kernels run through Triton's CPU interpreter, so CI checks them on
# every submission. It must be set before the kernels are first imported (decorated).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    """GPU tests are skipped only where no CUDA device exists, and say so."""
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
