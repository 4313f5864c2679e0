"""The GPU benchmark scripts run end to end (on CPU: tiny shapes, the Triton interpreter), so
the table a GPU session runs is known to work; their numbers are not checked here."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> list[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True, text=True, timeout=600, check=True, env=env,
    )  # fmt: skip
    return result.stdout.splitlines()


def test_scan_gpu_table_quick(tmp_path):
    out = tmp_path / "scan.json"
    lines = _run("scan_gpu.py", "--quick", "--json", str(out))
    header = next(line for line in lines if line.startswith("| family"))
    for column in ("triton fwd ms", "copy GB/s", "SDPA bf16 ms", "aaren step us"):
        assert column in header
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 4
    fields = {"gpu", "bh", "n", "fwd_ms", "fwdbwd_ms", "gbps", "copy_gbps", "sdpa_ms", "step_us"}
    assert all(fields <= set(r) for r in rows)
    assert all(isinstance(r["fwd_ms"], float) and r["fwd_ms"] > 0 for r in rows)
    assert any(line.startswith(("PASS:", "FAIL:")) for line in lines)


def test_throughput_quick(tmp_path):
    out = tmp_path / "tp.json"
    lines = _run("throughput.py", "--quick", "--json", str(out))
    assert any(line.startswith("| 64 |") for line in lines)
    rows = json.loads(out.read_text())["rows"]
    assert {r["backbone"] for r in rows} == {"aaren", "transformer"}
    assert all(r["tok_s"] > 0 for r in rows)


def test_scan_gpu_lookback_timer_checks_against_the_default_split():
    pytest.importorskip("triton")
    spec = importlib.util.spec_from_file_location("scan_gpu", BENCH / "scan_gpu.py")
    scan_gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scan_gpu)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    s = torch.randn(2, 600, device=device)
    v = torch.randn(2, 600, 16, device=device)
    assert scan_gpu.lookback_ms(s, v, device, quick=True) > 0
