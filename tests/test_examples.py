"""The examples run as a new user runs them, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import needs_data

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return result.stdout.splitlines()


def test_forecasting_quickstart_runs_streams_and_plots(tmp_path):
    plot = tmp_path / "quickstart.png"
    lines = run_example("forecasting_quickstart.py", "--plot", str(plot))
    for mode in ("full history", "window"):
        assert any(line.startswith(f"[{mode}] streamed 24 months") for line in lines)
    attention = tmp_path / "quickstart_attention.png"
    assert lines[-2:] == [f"plot saved to {plot}", f"attention plot saved to {attention}"]
    for path in (plot, attention):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_scan_quickstart_runs_and_reports_exactness():
    lines = run_example("scan_quickstart.py")
    # the printed errors are real comparisons; they must be at float32 rounding level
    errors = [float(line.rsplit(" ", 1)[-1]) for line in lines if "max |scan" in line]
    assert errors and errors[0] < 1e-5
    assert any(line.startswith("3. aaren") for line in lines)


@needs_data
def test_classification_early_runs_streams_and_plots(tmp_path):
    plot = tmp_path / "early.png"
    lines = run_example("classification_early.py", "--quick", "--plot", str(plot))
    for label in ("whole series only", "prefix_loss=0.5"):
        final = [line for line in lines if line.startswith(f"[{label}] test accuracy")]
        assert final and float(final[0].rsplit(" ", 1)[-1]) > 0.5  # 9 speakers: chance 0.11
        assert sum(line.startswith(f"[{label}] seen") for line in lines) == 10
    live = [line for line in lines if line.startswith("live utterance 0")]
    assert live and float(live[0].rsplit(" ", 1)[-1]) < 1e-5  # stream == prefix pass
    assert plot.is_file() and plot.stat().st_size > 10_000
