"""examples/event_forecasting.py runs (quick mode), streams in agreement with the parallel
pass, writes its plot, and the plot counts the same events as the printed figures."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch
from helpers import needs_dataset

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "event_forecasting.py"


@pytest.fixture
def example():
    """The example as a module (so that its figure can be read), torch's threads restored."""
    spec = importlib.util.spec_from_file_location("event_forecasting", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    yield module
    torch.set_num_threads(threads)


@needs_dataset("events", "taxi")
def test_event_forecasting_runs_streams_and_plots_what_it_prints(example, tmp_path, capsys):
    plot = tmp_path / "events.png"
    fig = example.main(["--quick", "--plot", str(plot)])
    out = capsys.readouterr().out
    streamed = re.search(
        r"streamed (\d+) events of (\d+) test sequences \((\d+) of them origins\); "
        r"largest difference to the parallel pass: (\S+)",
        out,
    )
    n_events, n_sequences, origins = map(int, streamed.group(1, 2, 3))
    assert float(streamed.group(4)) <= 1e-5
    assert n_events > 500 and origins == n_sequences == 20  # --quick: the first 20 test sequences
    forecast = re.search(
        r"forecast (\d+) events: RMSE of the next inter-event time (\S+) hours", out
    )
    n_forecast, rmse = int(forecast.group(1)), float(forecast.group(2))
    assert n_forecast == n_events - origins
    assert 0 < rmse < 1.0
    # every panel shows the printed count: the scatter's points and title, the QQ's legend
    scatter, _, qq = fig.axes
    assert len(scatter.collections[0].get_offsets()) == n_forecast
    assert scatter.get_title() == f"forecast {n_forecast} events, RMSE {rmse:.3f} h"
    assert qq.get_legend().get_texts()[0].get_text() == f"{n_forecast} events"
    assert len(qq.lines[0].get_xdata()) == n_forecast
    assert plot.stat().st_size > 10_000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
