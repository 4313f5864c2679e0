"""The Triton kernels compile for Hopper (sm_90) on every CI run, without a GPU (Triton's
wheel ships ptxas and cuobjdump), with no local-memory spills and 16-byte global accesses:
the machine-code facts a memory-bound kernel needs, checked where no device is lent.

Runs ``benchmarks/kernel_report.py`` in a subprocess: a process that imported Triton under
its interpreter (as this test session does without a GPU) cannot compile kernels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if os.environ.get("CI"):
    import triton  # noqa: F401  (CI installs it: these checks must run)
else:
    pytest.importorskip("triton", reason="the optional dependency triton is not installed")
if not sys.platform.startswith("linux"):
    pytest.skip("Triton's bundled ptxas is a Linux binary", allow_module_level=True)

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "kernel_report.py"
WIDE_LOADS = ("LDG.E.128", "LDGSTS.E.BYPASS.128", "LDGSTS.E.128")
# the kernels whose instructions are counted (disassembly is the slow part); every kernel's
# local memory is checked, and a kernel without local memory has no LDL/STL
MAIN = ("fwd fp32", "fwd bf16", "bwd fp32", "bwd bf16")


@pytest.mark.slow
def test_kernels_compile_for_hopper_without_spills(tmp_path):
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    subprocess.run(
        [sys.executable, str(SCRIPT), "--block-d", "64", "256", "--json", str(out),
         "--sass", *MAIN],
        check=True, capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    reports = json.loads(out.read_text())
    assert len(reports) == 2 * 14  # every kernel variant the launchers use, two widths
    for r in reports:
        label = f"{r['name']} (BLOCK_D {r['block_d']})"
        assert r["registers"] > 0, label
        assert r["local_bytes"] == 0, f"{label}: {r['local_bytes']} bytes of local memory"
        assert not any(op.startswith(("LDL", "STL")) for op in r["ops"]), (label, r["ops"])
        assert bool(r["ops"]) == (r["name"] in MAIN), label  # counted where asked, only there
        if r["name"] in MAIN:
            ops = r["ops"]
            assert any(op in ops for op in WIDE_LOADS), f"{label}: no 16-byte loads {ops}"
            assert "STG.E.128" in ops, f"{label}: no 16-byte stores {ops}"
            # float32 block products on FMA units (exact), not tensor cores
            assert ops.get("FFMA", 0) > 0 and not any(op.startswith("HMMA") for op in ops)
