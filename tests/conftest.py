"""Shared fixtures and references for the test suite."""

from __future__ import annotations

import pytest
import torch


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
