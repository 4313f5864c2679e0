"""``aaren_ts.integrations.neuralforecast.Aaren`` through neuralforecast's own front end:
fit / predict / cross_validation / save / load, learning on a clean sine, the exact recurrence
behind ``forward``, lazy importing, parameter errors, quiet defaults (stderr, no
``lightning_logs``; user trainer kwargs still win), and the peers benchmark's ``--quick``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import needs_dataset
from neuralforecast import NeuralForecast
from neuralforecast.losses.pytorch import DistributionLoss, MQLoss
from neuralforecast.utils import AirPassengersDF
from pytorch_lightning.loggers import CSVLogger
from warm_interpreter import run_python

from aaren_ts.integrations import neuralforecast as nf_integration
from aaren_ts.integrations.neuralforecast import Aaren, patch_tokens

ROOT = Path(__file__).resolve().parents[1]
H, L = 12, 40
# no logger and no model summary are Aaren's own defaults (tested below)
QUIET = dict(accelerator="cpu", enable_progress_bar=False)


def sine_panel(n_series: int = 2, length: int = 400) -> pd.DataFrame:
    """Clean sines of period 20 with different phases and levels, hourly."""
    t = np.arange(length)
    frames = [
        pd.DataFrame(
            {
                "unique_id": f"s{i}",
                "ds": pd.date_range("2020-01-01", periods=length, freq="h"),
                "y": 3.0 * i + np.sin(2 * np.pi * t / 20 + i),
            }
        )
        for i in range(n_series)
    ]
    return pd.concat(frames, ignore_index=True)


def small_model(**kwargs) -> Aaren:
    params = dict(h=H, input_size=L, d_model=16, n_heads=2, patch_len=8, stride=4,
                  max_steps=20, batch_size=4, windows_batch_size=64,
                  random_seed=0, **QUIET)  # fmt: skip
    params.update(kwargs)
    return Aaren(**params)


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return sine_panel()


@pytest.fixture(scope="module")
def fitted(panel):
    """An Aaren trained long enough (150 steps, a few seconds) to have learned the sine."""
    nf = NeuralForecast(models=[small_model(max_steps=150, val_check_steps=150)], freq="h")
    nf.fit(panel.groupby("unique_id").head(400 - H))
    return nf


def test_predict_shape_columns_and_index(fitted, panel):
    forecast = fitted.predict()
    assert list(forecast.columns) == ["unique_id", "ds", "Aaren"]
    assert len(forecast) == 2 * H
    last = panel.groupby("unique_id").head(400 - H).groupby("unique_id")["ds"].max()
    for uid, group in forecast.groupby("unique_id"):
        expected = pd.date_range(last[uid] + pd.Timedelta("1h"), periods=H, freq="h")
        assert list(group["ds"]) == list(expected)
    assert np.isfinite(forecast["Aaren"]).all()


def test_learns_the_sine_far_better_than_naive(fitted, panel):
    """The forecast of the held-out 12 steps beats the last-value (naive) forecast 5-fold."""
    truth = panel.groupby("unique_id").tail(H)
    forecast = fitted.predict().merge(truth, on=["unique_id", "ds"])
    last = panel.groupby("unique_id").head(400 - H).groupby("unique_id")["y"].last()
    naive = forecast["unique_id"].map(last)
    mae_model = np.mean(np.abs(forecast["Aaren"] - forecast["y"]))
    mae_naive = np.mean(np.abs(naive - forecast["y"]))
    assert mae_naive > 0.5  # the sine swings: repeating the last value is poor
    assert mae_model < mae_naive / 5, (mae_model, mae_naive)


def test_untrained_model_is_far_worse_than_trained(panel, fitted):
    """Training is what makes the difference (the test above is not met by construction)."""
    untrained = NeuralForecast(models=[small_model(max_steps=1, val_check_steps=1)], freq="h")
    train = panel.groupby("unique_id").head(400 - H)
    untrained.fit(train)
    truth = panel.groupby("unique_id").tail(H)
    err = {}
    for name, nf in (("untrained", untrained), ("trained", fitted)):
        merged = nf.predict().merge(truth, on=["unique_id", "ds"])
        err[name] = np.mean(np.abs(merged["Aaren"] - merged["y"]))
    assert err["trained"] < err["untrained"] / 3, err


def test_save_load_round_trip_gives_identical_predictions(fitted, tmp_path):
    before = fitted.predict()
    fitted.save(str(tmp_path / "nf"), overwrite=True, save_dataset=True)
    loaded = NeuralForecast.load(str(tmp_path / "nf"))
    assert type(loaded.models[0]) is Aaren
    assert loaded.models[0].hparams["d_model"] == 16
    after = loaded.predict()
    pd.testing.assert_frame_equal(before, after)


@pytest.mark.slow
def test_load_in_a_fresh_interpreter(fitted, tmp_path):
    """A saved model loads in a new process once the integration module is imported."""
    before = fitted.predict()
    fitted.save(str(tmp_path / "nf"), overwrite=True, save_dataset=True)
    before.to_csv(tmp_path / "before.csv", index=False)
    code = f"""
import pandas as pd
import aaren_ts.integrations.neuralforecast
from neuralforecast import NeuralForecast
nf = NeuralForecast.load({str(tmp_path / "nf")!r})
after = nf.predict()
before = pd.read_csv({str(tmp_path / "before.csv")!r})
print(abs(after["Aaren"].to_numpy() - before["Aaren"].to_numpy()).max())
"""
    # a process that has not imported neuralforecast or the integration (started warm: torch,
    # pandas and aaren_ts.estimators are already in it, as in any script that forecasts)
    result = run_python(["-c", code], timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1]) < 1e-5


def test_cross_validation_windows_and_columns(panel):
    nf = NeuralForecast(models=[small_model()], freq="h")
    cv = nf.cross_validation(df=panel, n_windows=3, step_size=H)
    assert list(cv.columns) == ["unique_id", "ds", "cutoff", "Aaren", "y"]
    assert len(cv) == 2 * 3 * H
    assert cv["cutoff"].nunique() == 3
    # every forecast lies after its cutoff, within the horizon
    lead = (cv["ds"] - cv["cutoff"]) / pd.Timedelta("1h")
    assert lead.between(1, H).all()
    # y is the real series at ds
    merged = cv.merge(panel, on=["unique_id", "ds"], suffixes=("", "_true"))
    np.testing.assert_allclose(merged["y"], merged["y_true"])


def test_air_passengers_and_quantile_loss():
    """Monthly data with a trend; a multi-output (quantile) loss gives one column per output."""
    model = Aaren(h=12, input_size=24, d_model=16, n_heads=2, max_steps=5, val_check_steps=5,
                  loss=MQLoss(level=[80]), random_seed=0, **QUIET)  # fmt: skip
    nf = NeuralForecast(models=[model], freq="MS")
    nf.fit(AirPassengersDF)
    forecast = nf.predict()
    assert list(forecast.columns) == [
        "unique_id", "ds", "Aaren-median", "Aaren-lo-80", "Aaren-hi-80"
    ]  # fmt: skip
    assert len(forecast) == 12
    assert np.isfinite(forecast.iloc[:, 2:].to_numpy()).all()


def test_forward_equals_the_recurrence_token_by_token():
    """``forward`` (parallel scan) equals an independent re-computation that feeds the patch
    tokens through the Aaren stack one ``step`` at a time, then applies head, skip and RevIN."""
    torch.manual_seed(0)
    model = small_model(dropout=0.0).eval()
    y = torch.randn(3, L, 1).cumsum(1)
    with torch.no_grad():
        out = model({"insample_y": y})
        window = y[..., 0]
        centre = window.mean(-1, keepdim=True)
        scale = torch.sqrt(window.var(-1, unbiased=False, keepdim=True) + 1e-5)
        normal = (window - centre) / scale
        state = None
        for k in range((L - 8) // 4 + 1):  # patches of 8 every 4, the last ending at L
            token = normal[:, 4 * k : 4 * k + 8]
            hidden, state = model.backbone.step(model.embed(token), state)
        ref = model.head(hidden) + model.window_linear(normal)
        ref = ref.reshape(3, H, 1) * scale[..., None] + centre[..., None]
    assert out.shape == (3, H, 1)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_patch_tokens_reference():
    window = torch.arange(10.0)[None]
    tokens = patch_tokens(window, patch_len=4, stride=3)
    # counted back from the end: [6..9], [3..6], [0..3]
    expected = torch.tensor([[[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]], dtype=torch.float32)
    torch.testing.assert_close(tokens, expected)
    short = patch_tokens(torch.tensor([[5.0, 6.0]]), patch_len=4, stride=2)
    torch.testing.assert_close(short, torch.tensor([[[5.0, 5.0, 5.0, 6.0]]]))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(n_heads=3), ValueError, "n_heads=3 must divide d_model=16"),
        (dict(stride=9), ValueError, "stride=9 > patch_len=8"),
        (dict(patch_len=0), ValueError, "patch_len must be >= 1"),
        (dict(h=1.5), TypeError, "h must be an int"),
        (dict(dropout=1.0), ValueError, r"dropout must be in \[0, 1\)"),
        (dict(hist_exog_list=["x"]), ValueError, "hist_exog_list must be empty"),
        (dict(exclude_insample_y=True), ValueError, "exclude_insample_y"),
        (dict(loss=DistributionLoss("Normal")), ValueError, "revin=False"),
    ],
)
def test_bad_parameters_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        small_model(**kwargs)


def test_distribution_loss_without_revin_trains(panel):
    model = small_model(
        loss=DistributionLoss("Normal"), revin=False, scaler_type="standard", max_steps=3
    )
    nf = NeuralForecast(models=[model], freq="h")
    nf.fit(panel)
    forecast = nf.predict()
    assert "Aaren" in forecast.columns and np.isfinite(forecast["Aaren"]).all()


def test_importing_aaren_ts_does_not_import_neuralforecast():
    code = (
        "import sys, aaren_ts, aaren_ts.integrations, aaren_ts.nn\n"
        "print(sorted(m for m in ('neuralforecast', 'ray', 'pytorch_lightning')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# What a quiet fit + predict may still print, with Lightning 2.6 on torch >= 2.10: each of the
# two Trainer runs (fit, predict) has Lightning's own utilities/_pytree.py build a LeafSpec,
# which torch deprecates: one line "...`isinstance(treespec, LeafSpec)` is deprecated..."
# each, so 2 lines, and 0 on versions without that mismatch. 2 more lines of room for one
# other warning raised inside a third-party library (a warning prints as two lines: message
# and source line). Everything Aaren controls (model summary, logger folder, the "GPU
# available" / "TPU available" / "Seed set" / "`Trainer.fit` stopped" lines, the
# val_check_steps > max_steps warning its default used to trigger) is asserted absent below.
MAX_QUIET_STDERR_LINES = 4
NOISE = ("GPU available", "TPU available", "HPU available", "Seed set", "Trainer.fit",
         "Total params", "val_check_steps", "lightning_logs", "LOCAL_RANK")  # fmt: skip

QUIET_SCRIPT = """
from neuralforecast import NeuralForecast
from neuralforecast.utils import AirPassengersDF
from aaren_ts.integrations.neuralforecast import Aaren
model = Aaren(h=12, input_size=24, d_model=16, n_heads=2, max_steps=5, random_seed=0,
              accelerator="cpu", enable_progress_bar=False)
nf = NeuralForecast(models=[model], freq="MS")
nf.fit(AirPassengersDF)
print(len(nf.predict()))
"""


@pytest.mark.slow
def test_quiet_by_default_in_a_fresh_interpreter(tmp_path):
    """A default fit + predict writes nothing to the working directory (no ``lightning_logs``)
    and prints at most ``MAX_QUIET_STDERR_LINES`` stderr lines, none of them Aaren's to avoid.
    ``max_steps=5`` with the default ``val_check_steps`` (once 100: a warning)."""
    result = subprocess.run(
        [sys.executable, "-c", QUIET_SCRIPT], capture_output=True, text=True, timeout=300,
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "12"
    assert not (tmp_path / "lightning_logs").exists()
    assert list(tmp_path.iterdir()) == []
    lines = result.stderr.splitlines()
    assert len(lines) <= MAX_QUIET_STDERR_LINES, result.stderr
    for marker in NOISE:
        assert marker not in result.stderr, (marker, result.stderr)


def test_user_trainer_kwargs_win(tmp_path):
    """A logger and ``enable_model_summary=True`` passed by the user reach the Trainer: the
    logger writes its folder, the summary is logged."""
    csv = CSVLogger(save_dir=str(tmp_path), name="csv")
    model = small_model(max_steps=2, logger=csv, enable_model_summary=True, log_every_n_steps=1)
    assert model.trainer_kwargs["logger"] is csv
    assert model.trainer_kwargs["enable_model_summary"] is True
    summary_log = logging.getLogger("pytorch_lightning.callbacks.model_summary")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    level = summary_log.level
    summary_log.addHandler(handler)
    summary_log.setLevel(logging.INFO)
    try:
        NeuralForecast(models=[model], freq="h").fit(sine_panel(1, 120))
    finally:
        summary_log.removeHandler(handler)
        summary_log.setLevel(level)
    # neuralforecast detaches the Trainer after fit; what it did shows in its outputs
    assert any("Trainable params" in record.getMessage() for record in records)
    metrics = list((tmp_path / "csv").glob("version_*/metrics.csv"))
    assert len(metrics) == 1 and "train_loss" in metrics[0].read_text()


def test_quiet_defaults_and_logger_levels_restored(tmp_path, monkeypatch):
    """Defaults: ``logger=False``, no summary, ``val_check_steps = min(100, max_steps)`` (the
    user's own value passes as given), a loss module per model. The scoped logger levels are
    restored after build, fit and predict, and a level the user set on one of them is
    respected."""
    model = small_model(max_steps=5)
    assert model.trainer_kwargs["logger"] is False
    assert model.trainer_kwargs["enable_model_summary"] is False
    assert model.val_check_steps == 5 and model.hparams["val_check_steps"] is None
    assert model.hparams["logger"] is False  # so a saved model loads with it too
    # each model its own default loss, so .eval() on one leaves the next in train mode
    other = small_model().eval()
    assert other.loss is not model.loss and model.loss.training
    assert small_model(max_steps=500).val_check_steps == 100
    assert small_model(max_steps=5, val_check_steps=7).val_check_steps == 7

    names = [*nf_integration._CHATTY_LOGGERS, "pytorch_lightning", "lightning_fabric"]
    before = {name: logging.getLogger(name).level for name in names}
    monkeypatch.chdir(tmp_path)  # where Lightning's default logger would write lightning_logs
    nf = NeuralForecast(models=[model], freq="h")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nf.fit(sine_panel(1, 120))
        nf.predict()
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "val_check_steps" in m or "eval mode" in m], messages
    assert {name: logging.getLogger(name).level for name in names} == before
    assert list(tmp_path.iterdir()) == []

    seed_log = logging.getLogger("lightning_fabric.utilities.seed")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    seed_log.addHandler(handler)
    seed_log.setLevel(logging.INFO)  # the user asks for the seed messages
    try:
        small_model(max_steps=1)
    finally:
        seed_log.removeHandler(handler)
        seed_log.setLevel(logging.NOTSET)
    assert any("Seed set to 0" in record.getMessage() for record in records)


def test_registered_for_save_and_load():
    from neuralforecast.core import MODEL_FILENAME_DICT

    assert MODEL_FILENAME_DICT["aaren"] is Aaren
    assert MODEL_FILENAME_DICT["autoaaren"] is Aaren


@pytest.mark.slow
@needs_dataset("forecasting", "ETTh1")
def test_peers_benchmark_quick(tmp_path):
    """The peers script end to end on one of its models, chosen with ``--models`` (each
    cell is a fresh interpreter importing neuralforecast and lightning, about 7 s of CPU
    here; every model takes the same ``run_cell`` path), and every model it names built
    with the shared budget."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_neuralforecast_peers", ROOT / "benchmarks/neuralforecast_peers.py"
    )
    peers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peers)
    assert peers.MODELS == ("Aaren", "VanillaTransformer", "PatchTST", "NHITS")
    budget = dict(input_size=48, max_steps=3, batch_size=7, windows_batch_size=32,
                  inference_windows_batch_size=32, learning_rate=1e-3, scaler_type="identity",
                  random_seed=0)  # fmt: skip
    for name in peers.MODELS:
        model = peers.build_model(name, 24, budget, callbacks=[])
        assert type(model).__name__ == name and model.h == 24
    out = tmp_path / "peers.json"
    result = run_python(
        [str(ROOT / "benchmarks/neuralforecast_peers.py"), "--quick", "--models", "PatchTST",
         "--out", str(out)],
        timeout=600, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| model"))
    for column in ("MSE", "MAE", "fit s", "peak RSS MB"):
        assert column in header
    table = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert [line.split("|")[1].strip() for line in table] == ["PatchTST"]
    record = json.loads(out.read_text())
    assert record["config"]["max_steps"] == 3
    for row in record["rows"]:
        assert row["horizon"] == 24 and row["n_series"] == 7
        assert np.isfinite(row["mse"]) and 0 < row["mae"] < 5
        assert row["peak_rss_mb"] >= row["rss_before_mb"] > 0
        assert row["fit_s"] >= 0 and row["cv_s"] > 0
