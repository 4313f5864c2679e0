"""The README's tour runs as written: every snippet, in a new process, as a reader would (started
warm: ``warm_interpreter.run_python``).

The snippets are read from README.md between ``<!-- tour -->`` and ``<!-- /tour -->``, one per
``### Title`` subsection, so the README cannot drift from what works.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from pathlib import Path

import pytest
from helpers import DATA, needs_data_in
from warm_interpreter import run_python

ROOT = Path(__file__).resolve().parents[1]
# what the tour must walk through (issue 7); more subsections are welcome
REQUIRED = {
    "Install",
    "Forecast",
    "Stream",
    "Classify",
    "Events",
    "GPU",
    "neuralforecast",
    "Distributed",
}


def tour_sections() -> dict[str, tuple[str, str]]:
    """``{title: (language, code)}`` of the tour's subsections (first code block of each)."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- tour -->(.*?)<!-- /tour -->", text, flags=re.S)
    assert match, "README.md has no <!-- tour --> ... <!-- /tour --> section"
    sections = {}
    for part in re.split(r"^### ", match.group(1), flags=re.M)[1:]:
        title, body = part.split("\n", 1)
        block = re.search(r"^```(\w+)\n(.*?)^```", body, flags=re.S | re.M)
        assert block, f"tour section {title!r} has no code block"
        sections[title.strip()] = (block.group(1), block.group(2))
    return sections


SECTIONS = tour_sections()
PYTHON = sorted(title for title, (lang, _) in SECTIONS.items() if lang == "python")
# snippets that forecast: each prints its MAE beside a seasonal-naive forecast's (issue 19)
FORECASTS = {"Forecast", "Stream", "Save and load", "Plots", "neuralforecast", "Distributed"}
BEATS_NAIVE = re.compile(r"MAE ([0-9.]+) \(seasonal naive: ([0-9.]+)\)")


def test_tour_covers_every_topic():
    assert set(SECTIONS) >= REQUIRED, f"missing: {sorted(REQUIRED - set(SECTIONS))}"
    assert set(PYTHON) >= REQUIRED - {"Install"}
    # every snippet that fits a forecaster is checked against seasonal naive
    fits = {t for t in PYTHON if re.search(r"AarenForecaster\(|NeuralForecast\(", SECTIONS[t][1])}
    assert fits <= FORECASTS, f"forecasting snippets without the check: {sorted(fits - FORECASTS)}"


def test_install_snippet_names_only_real_extras():
    lang, code = SECTIONS["Install"]
    assert lang == "bash"
    # the installed project's metadata (read from pyproject.toml by the editable install)
    extras = importlib.metadata.metadata("aaren-ts").get_all("Provides-Extra")
    named = {e for group in re.findall(r"\[([\w,]+)\]", code) for e in group.split(",")}
    assert named and named <= set(extras), f"unknown extras: {sorted(named - set(extras))}"


@pytest.mark.slow
@pytest.mark.parametrize(
    "title", [pytest.param(t, marks=needs_data_in(SECTIONS[t][1])) for t in PYTHON]
)
def test_tour_snippet_runs(title, tmp_path):
    _, code = SECTIONS[title]
    env = {**os.environ, "AAREN_TS_DATA": str(DATA), "MPLBACKEND": "Agg"}
    # files a snippet writes land in a scratch folder
    result = run_python(["-c", code], cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, f"{title} snippet failed:\n{result.stderr[-3000:]}"
    assert result.stdout.strip(), f"{title} snippet printed nothing"
    if title == "Offline RL":
        # asked for the good episodes' return, the policy acts as they did (+0.8), not -0.8
        action = re.search(r"asked for a return of 50: (-?\d+\.\d+)", result.stdout)
        assert action and float(action.group(1)) > 0.5, result.stdout
    if title in FORECASTS:
        # a forecast a reader would trust: no worse than seasonal naive on the same months
        scores = BEATS_NAIVE.findall(result.stdout)
        assert scores, f"{title} printed no 'MAE x (seasonal naive: y)' line"
        for model, naive in scores:
            assert float(model) <= float(naive), f"{title}: MAE {model} > seasonal naive {naive}"
