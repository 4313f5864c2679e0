"""Repository-wide pytest setup, loaded before anything is collected.

Without a GPU the Triton kernels run through Triton's CPU interpreter, so CI checks them on
every submission: ``TRITON_INTERPRET`` must be set before the kernels are first imported
(decorated), which doctest collection of ``aaren_ts/scan/triton_kernels.py`` already does.
Without Triton installed (it is optional) that module is not collected; ``tests/test_triton.py``
then skips, except in CI, where it fails.
"""

from __future__ import annotations

import importlib.util
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

collect_ignore = [] if importlib.util.find_spec("triton") else ["aaren_ts/scan/triton_kernels.py"]
