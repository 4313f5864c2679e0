"""The ``aaren-ts`` command: ``demo`` prints a real forecast (and plots it), ``bench`` runs the
benchmark scripts with the arguments given, errors say what is wrong."""

from __future__ import annotations

import math
import os
import re
import subprocess
from pathlib import Path

import pytest
from sktime.datasets import load_airline
from warm_interpreter import run_python

from aaren_ts import __version__
from aaren_ts.cli import BENCHMARKS, main

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return run_python(["-m", "aaren_ts.cli", *args], env=env, timeout=300)


MAE_LINE = re.compile(r"^1960 forecast: MAE (\d+\.\d) \(seasonal naive: (\d+\.\d)\)$")


@pytest.mark.slow
def test_demo_prints_the_forecast_table_its_error_beside_seasonal_naive_and_plots(capsys, tmp_path):
    # the demo as a user runs it (default epochs): about 15 s on one core
    plot = tmp_path / "demo.png"
    assert main(["demo", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(out) if line.split() == [
        "forecast", "80%", "lower", "80%", "upper", "observed"])  # fmt: skip
    rows = out[header + 1 : header + 13]
    assert [row.split()[0] for row in rows] == [f"1960-{m:02d}" for m in range(1, 13)]
    y = load_airline()
    observed = [float(row.split()[-1]) for row in rows]
    assert observed == y.iloc[-12:].tolist()  # the airline data's 1960
    errors = []
    for row in rows:  # forecasts and bounds are finite numbers, lower <= upper
        forecast, lower, upper, actual = map(float, row.split()[1:])
        assert all(map(math.isfinite, (forecast, lower, upper))) and lower <= upper
        errors.append(abs(forecast - actual))
    (mae,) = [MAE_LINE.match(line) for line in out if line.startswith("1960 forecast")]
    assert mae, "no 'MAE x (seasonal naive: y)' line"
    model, naive = float(mae.group(1)), float(mae.group(2))
    # the printed error is the table's (to the table's rounding); the seasonal-naive one is
    # 1960 against 1959, month by month, recomputed here from the data
    assert model == pytest.approx(sum(errors) / 12, abs=0.1)
    last_year = y.iloc[-24:-12].to_numpy()
    assert naive == pytest.approx(abs(y.iloc[-12:].to_numpy() - last_year).mean(), abs=0.05)
    assert model <= naive
    assert out[-1] == f"plot saved to {plot}"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_version_help_and_argument_errors(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"aaren-ts {__version__}"
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "demo" in out
    # argparse %-formats a command's help but not its description: "80%" in both, never "80%%"
    assert "80% intervals" in out and "%%" not in out
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "--epochs" in out
    assert "80% intervals" in out and "%%" not in out
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "nope"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "invalid choice: 'nope'" in err
    assert all(name in err for name in BENCHMARKS)
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--bogus"])
    assert exit_.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([])  # a command is required
    assert main(["demo", "--epochs", "0"]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err
    assert main(["demo", "--epochs", str(10**20)]) == 2  # it trained until killed
    assert "--epochs must be <= 1000" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing/demo.png", r"its folder .*missing does not exist"),
        ("demo.txt", r"demo.txt must end in .* or \.png"),
        (".", r"is a folder: give a file name"),
    ],
)
def test_demo_checks_the_plot_path_before_training(tmp_path, capsys, monkeypatch, where, message):
    """A bad --plot fails at once (argparse's exit 2), not after the fit."""
    import aaren_ts.estimators as estimators

    def no_training(*args, **kwargs):
        raise AssertionError("training started before the plot path was checked")

    monkeypatch.setattr(estimators, "AarenForecaster", no_training)
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--plot", str(tmp_path / where)])
    assert exit_.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_bench_passes_quick_and_extra_arguments_to_the_script(tmp_path, capfd, monkeypatch):
    # a stand-in scripts folder: the script echoes its argv and which aaren_ts it imports
    (tmp_path / "tpp.py").write_text(
        "import sys, aaren_ts\nprint('ARGS', sys.argv[1:])\nprint('FROM', aaren_ts.__file__)\n"
        "sys.exit(3)\n"
    )
    monkeypatch.setenv("AAREN_TS_BENCHMARKS", str(tmp_path))
    code = main(["bench", "tpp", "--quick", "--json", "out.json", "--seeds", "0", "1"])
    out = capfd.readouterr().out
    assert code == 3  # the script's exit status comes back
    assert "ARGS ['--quick', '--json', 'out.json', '--seeds', '0', '1']" in out
    assert f"FROM {ROOT / 'aaren_ts' / '__init__.py'}" in out


def test_bench_errors_when_the_scripts_cannot_be_found(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AAREN_TS_BENCHMARKS", str(tmp_path / "missing"))
    assert main(["bench", "scan"]) == 2
    err = capsys.readouterr().err
    assert f"AAREN_TS_BENCHMARKS={tmp_path / 'missing'} is not a directory" in err
    monkeypatch.setenv("AAREN_TS_BENCHMARKS", str(tmp_path))
    assert main(["bench", "scan"]) == 2
    assert f"no scan.py in {tmp_path}" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_scan_quick_runs_the_real_script_and_prints_its_table():
    # (about 40 s on 2 shared cores: every cell is timed in a fresh process)
    result = _cli("bench", "scan", "--quick", "--backends", "chunked", "--n", "256")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("benchmarks/scan.py --quick --backends chunked --n 256")
    assert any(line.startswith("| N ") and "fwd ms" in line for line in lines)
    rows = [line for line in lines if line.startswith("| 256 | chunked")]
    assert len(rows) == 1  # only the backend asked for: the extra arguments reached the script
