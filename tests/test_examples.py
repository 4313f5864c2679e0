"""The examples run as a new user runs them, each in a new process (started warm:
``warm_interpreter.run_python``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import needs_dataset
from sktime.datasets import load_airline
from warm_interpreter import run_python

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str) -> list[str]:
    result = run_python([str(EXAMPLES / name), *args], timeout=600, check=True)
    return result.stdout.splitlines()


MAE_LINE = re.compile(r"^\[(.+)\] (.+): MAE (\d+\.\d) \(seasonal naive: (\d+\.\d)\)$")


@pytest.mark.slow
def test_forecasting_quickstart_runs_streams_beats_seasonal_naive_and_plots(tmp_path):
    plot = tmp_path / "quickstart.png"
    lines = run_example("forecasting_quickstart.py", "--plot", str(plot))
    for mode in ("full history", "window"):
        assert any(line.startswith(f"[{mode}] streamed 24 months") for line in lines)
    # each forecast shown: its MAE, and the seasonal-naive forecast's on the same months
    maes = {m.group(1, 2): m.group(3, 4) for m in map(MAE_LINE.match, lines) if m}
    forecasts = ("1959 forecast", "one-step forecasts 1959-1960")
    assert set(maes) == {(mode, what) for mode in ("full history", "window") for what in forecasts}
    # the baseline, recomputed from the data: 1959 as 1958 was; one step ahead, each month of
    # 1959-1960 as it was a year before
    y = load_airline().to_numpy()
    naive = {
        forecasts[0]: abs(y[120:132] - y[108:120]).mean(),
        forecasts[1]: abs(y[120:] - y[108:132]).mean(),
    }
    for (mode, what), (model_mae, naive_mae) in maes.items():
        assert float(naive_mae) == pytest.approx(naive[what], abs=0.05), (mode, what)
        assert float(model_mae) <= float(naive_mae), (mode, what, model_mae, naive_mae)
    attention = tmp_path / "quickstart_attention.png"
    assert lines[-2:] == [f"plot saved to {plot}", f"attention plot saved to {attention}"]
    for path in (plot, attention):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_scan_quickstart_runs_and_reports_exactness_and_state_sizes():
    lines = run_example("scan_quickstart.py")
    # the printed errors are real comparisons; they must be at float32 rounding level
    for claim in ("max |scan", "reproduce the last output"):
        errors = [float(line.rsplit(" ", 1)[-1]) for line in lines if claim in line]
        assert errors and errors[0] < 1e-5, claim
    # the evidence for O(1) memory is the state sizes (exact, unlike the timings beside them)
    (step,) = [line for line in lines if line.strip().startswith("state size after 1, 16")]
    sizes = [int(n) for n in step.split(": ")[1].split(" numbers")[0].split(", ")]
    assert len(sizes) == 4 and len(set(sizes)) == 1
    streamed = {}
    for line in lines:
        name, _, rest = line.strip().partition(": ")
        if name.strip() in ("aaren", "transformer"):
            streamed[name.strip()] = [int(n) for n in rest.split(" numbers")[0].split(", ")]
    assert len(streamed["aaren"]) == 3 and len(set(streamed["aaren"])) == 1
    kv = streamed["transformer"]
    assert len(kv) == 3 and kv[0] < kv[1] < kv[2]  # the KV cache grows with every step
    assert kv[2] - kv[1] == kv[1] - kv[0]  # by the same amount per token


@pytest.mark.slow
@needs_dataset("uea", "JapaneseVowels")
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


def test_offline_rl_quick_fits_acts_in_the_simulator_and_plots_the_cost_per_step(tmp_path):
    pytest.importorskip("gymnasium", reason="the 'rl' extra (gymnasium[mujoco]) is not installed")
    pytest.importorskip("stable_baselines3", reason="the 'rl' extra is not installed")
    plot = tmp_path / "rl.png"
    lines = run_example("offline_rl.py", "--quick", "--plot", str(plot))
    for label in ("Aaren (full history)", "Transformer (K=20)"):
        (line,) = [x for x in lines if x.startswith(f"{label}: ")]
        assert "over 2 episodes" in line  # a normalised return from real simulator episodes
    costs = [x for x in lines if "ms per action at the start" in x]
    assert [c.split(":")[0] for c in costs] == [
        "Aaren (O(1) state)", "Transformer (full KV cache)", "Transformer (K=20 window)"
    ]  # fmt: skip
    assert lines[-1] == f"plot saved to {plot}" and plot.stat().st_size > 10_000
