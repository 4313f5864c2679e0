"""``aaren_ts.scan`` and ``aaren_ts.nn`` import with torch alone (the GPU machine has no
sktime): checked in a fresh interpreter where the other dependencies cannot be imported."""

from __future__ import annotations

import subprocess
import sys

BLOCK_AND_IMPORT = """
import sys
blocked = ("sktime", "sklearn", "pandas", "skbase", "tqdm", "matplotlib", "neuralforecast",
           "dask", "ray", "scipy")
for name in blocked:
    sys.modules[name] = None  # any import of these now raises ImportError
import aaren_ts, aaren_ts.scan, aaren_ts.nn, aaren_ts.nn.inspect, aaren_ts.integrations
import torch
y, state = aaren_ts.nn.Aaren(8, 1, 2)(torch.randn(1, 3, 8))
print("ok", tuple(y.shape))
"""


def test_scan_and_nn_need_only_torch():
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_AND_IMPORT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok (1, 3, 8)"
