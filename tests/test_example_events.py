"""examples/event_forecasting.py runs (quick mode), streams in agreement with the parallel
pass and writes its plot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DATA

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "event_forecasting.py"


@pytest.mark.skipif(not (DATA / "tpp").is_dir(), reason="event data not found: set AAREN_TS_DATA")
def test_event_forecasting_runs_streams_and_plots(tmp_path):
    plot = tmp_path / "events.png"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--quick", "--plot", str(plot)],
        capture_output=True, text=True, timeout=600, check=True, env=env,
    )  # fmt: skip
    out = result.stdout
    gap = float(re.search(r"largest difference to the parallel pass: (\S+)", out).group(1))
    assert gap <= 1e-5
    assert int(re.search(r"streamed (\d+) events", out).group(1)) > 500
    rmse = float(re.search(r"RMSE of the next inter-event time: (\S+) hours", out).group(1))
    assert 0 < rmse < 1.0
    assert plot.stat().st_size > 10_000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
