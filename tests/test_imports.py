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


RL_WITHOUT_THE_EXTRA = """
import sys
for name in ("gymnasium", "mujoco", "stable_baselines3", "safetensors"):
    sys.modules[name] = None  # the 'rl' extra is not installed
import numpy as np
from aaren_ts.rl import DecisionAaren
data = [{"observations": np.zeros((5, 2)), "actions": np.zeros((5, 1)), "rewards": np.ones(5)}]
policy = DecisionAaren(d_model=8, max_updates=2).fit(data)
stream = policy.start_episode(5.0)
print("ok", stream.act(np.zeros(2)).shape)
try:
    policy.save("never-written.safetensors")
except ImportError as err:
    print(err)
from aaren_ts.rl.evaluate import evaluate_policy
try:
    evaluate_policy(policy, "hopper", 5.0)
except ImportError as err:
    print(err)
"""


def test_rl_fits_and_acts_without_its_extra_and_names_it_where_needed(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", RL_WITHOUT_THE_EXTRA],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "ok (1,)"
    assert all("pip install 'aaren-ts[rl]'" in line for line in lines[1:]) and len(lines) == 3
