"""Persistence of the four torch estimators: pickle, ``save``/``load`` round trips that predict
bit-identically, streams that continue exactly where the saved copy stopped, a payload of CPU
state dicts (no modules, no device tensors), and GPU-trained models loading on a CPU."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sktime.base import load as sktime_load
from sktime.datasets import load_airline
from torch import nn

import aaren_ts
from aaren_ts.datasets import make_hawkes
from aaren_ts.estimators import (
    AarenClassifier,
    AarenForecaster,
    AarenPointProcess,
    AarenRegressor,
)
from aaren_ts.estimators._portable import DeviceTensor, PortableModule
from aaren_ts.estimators._stream_table import StreamTable

REPO = Path(__file__).resolve().parents[1]
TINY = {"d_model": 8, "n_layers": 1, "n_heads": 2, "max_epochs": 1, "random_state": 0}


# ---------------------------------------------------------------------------- data
def _panel_y() -> pd.DataFrame:
    """Two airline-like series in a panel (the forecaster keeps one stream per series)."""
    y = load_airline().to_numpy()
    index = pd.MultiIndex.from_product([["a", "b"], pd.RangeIndex(len(y))])
    return pd.DataFrame({"y": np.concatenate([y, y[::-1] * 0.5])}, index=index)


def _rows(y: pd.DataFrame, start: int, stop: int) -> pd.DataFrame:
    return y[(y.index.get_level_values(1) >= start) & (y.index.get_level_values(1) < stop)]


PANEL = _panel_y()
X_PANEL = np.random.default_rng(0).normal(size=(12, 2, 16))
Y_CLASS = np.array(["up", "down", "flat"] * 4)
Y_REG = X_PANEL.mean(axis=(1, 2))
EVENTS = make_hawkes(
    n_sequences=6, t_end=20.0, baseline=[0.4, 0.3], adjacency=[[0.2, 0.1], [0.1, 0.2]],
    decay=1.5, random_state=1,
)  # fmt: skip


def _fit(name: str, backbone: str = "aaren"):
    if name == "forecaster":
        model = AarenForecaster(backbone=backbone, chunk_length=32, **TINY)
        model.fit(_rows(PANEL, 0, 100), fh=[1, 2, 3])
        return model.update(_rows(PANEL, 0, 110), update_params=False)
    if name == "classifier":
        return AarenClassifier(backbone=backbone, **TINY).fit(X_PANEL, Y_CLASS)
    if name == "regressor":
        return AarenRegressor(backbone=backbone, **TINY).fit(X_PANEL, Y_REG)
    model = AarenPointProcess(backbone=backbone, n_components=2, **TINY).fit(EVENTS)
    return model.update([(s.times[:5], s.marks[:5], s.t_start, None) for s in EVENTS[:2]])


def _outputs(model) -> list[np.ndarray]:
    """Everything the model predicts, as arrays (compared bit for bit)."""
    if isinstance(model, AarenForecaster):
        return [model.predict().to_numpy(), model.predict_interval(coverage=0.8).to_numpy()]
    if isinstance(model, AarenClassifier):
        return [model.predict_proba(X_PANEL)]
    if isinstance(model, AarenRegressor):
        return [model.predict(X_PANEL)]
    streams = [[s.log_likelihood(), *s.predict(), *s.predict_proba()] for s in model.streams_]
    return [model.score_samples(EVENTS), np.array(model.predict(EVENTS)), np.array(streams)]


def _assert_identical(a, b) -> None:
    for x, y in zip(_outputs(a), _outputs(b), strict=True):
        np.testing.assert_array_equal(x, y)


NAMES = ["forecaster", "classifier", "regressor", "point_process"]


@pytest.fixture(scope="module", params=NAMES)
def fitted(request):
    return _fit(request.param)


# ---------------------------------------------------------------------------- round trips
def test_pickle_round_trip_predicts_identically(fitted):
    _assert_identical(pickle.loads(pickle.dumps(fitted)), fitted)


def test_save_to_file_and_load_with_sktime_and_load_from_path(fitted, tmp_path):
    zipped = fitted.save(tmp_path / "model")
    zipped.close()
    assert (tmp_path / "model.zip").is_file()
    assert sorted(os.listdir(tmp_path)) == ["model.zip"]  # no temporary file left behind
    _assert_identical(sktime_load(str(tmp_path / "model")), fitted)
    _assert_identical(sktime_load(tmp_path / "model.zip"), fitted)
    _assert_identical(type(fitted).load_from_path(tmp_path / "model.zip"), fitted)
    _assert_identical(aaren_ts.load(tmp_path / "model"), fitted)


def test_save_in_memory_and_load_from_serial(fitted):
    serial = fitted.save()
    assert serial[0] is type(fitted) and isinstance(serial[1], bytes)
    _assert_identical(sktime_load(serial), fitted)
    _assert_identical(type(fitted).load_from_serial(serial[1]), fitted)
    _assert_identical(aaren_ts.load(serial), fitted)


def test_cloudpickle_format_loads_only_when_trusted(fitted, tmp_path):
    serial = fitted.save(serialization_format="cloudpickle")
    with pytest.raises(ValueError, match=r"full cloudpickle.*trusted=True"):
        sktime_load(serial)
    _assert_identical(aaren_ts.load(serial, trusted=True), fitted)
    fitted.save(tmp_path / "m", serialization_format="cloudpickle").close()
    pattern = r"cannot load '.*m\.zip': it holds a full cloudpickle"
    for untrusted in (sktime_load, aaren_ts.load):
        with pytest.raises(ValueError, match=pattern):
            untrusted(str(tmp_path / "m"))
    _assert_identical(aaren_ts.load(tmp_path / "m", trusted=True), fitted)
    _assert_identical(type(fitted).load_from_path(tmp_path / "m.zip", trusted=True), fitted)


def test_deepcopy_is_independent_and_copy_shares_the_network(fitted):
    deep, shallow = copy.deepcopy(fitted), copy.copy(fitted)
    _assert_identical(deep, fitted)
    assert deep.network_ is not fitted.network_
    assert shallow.network_ is fitted.network_  # copy.copy stays shallow (no rebuild)


@pytest.mark.parametrize("name", ["forecaster", "classifier", "point_process"])
@pytest.mark.parametrize("backbone", ["transformer", "gru"])
def test_other_backbones_round_trip(name, backbone):
    model = _fit(name, backbone)
    _assert_identical(pickle.loads(pickle.dumps(model)), model)


def test_recency_and_windowed_variants_round_trip():
    clf = AarenClassifier(recency=True, **TINY).fit(X_PANEL, Y_CLASS)
    _assert_identical(pickle.loads(pickle.dumps(clf)), clf)
    windowed = AarenForecaster(context_length=8, token_stride=2, n_lags=4, **TINY)
    windowed.fit(load_airline(), fh=[1, 2])
    _assert_identical(pickle.loads(pickle.dumps(windowed)), windowed)


def test_unfitted_estimator_saves_and_loads(tmp_path):
    model = AarenForecaster(d_model=16, device="cuda")  # never resolved: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.save(tmp_path / "raw").close()
        loaded = sktime_load(str(tmp_path / "raw"))
    assert loaded.get_params() == model.get_params()
    assert not loaded.is_fitted


def test_save_path_naming_and_overwrite(tmp_path):
    model = _fit("regressor")
    model.save(str(tmp_path / "named.zip")).close()  # a .zip name is used as given
    assert (tmp_path / "named.zip").is_file() and not (tmp_path / "named.zip.zip").exists()
    other = AarenRegressor(**{**TINY, "random_state": 1}).fit(X_PANEL, Y_REG)
    other.save(tmp_path / "named").close()  # overwrites
    assert (aaren_ts.load(tmp_path / "named").predict(X_PANEL) == other.predict(X_PANEL)).all()
    with pytest.raises(TypeError, match="path must be a str"):
        model.save(123)
    with pytest.raises(ValueError, match="serialization_format"):
        model.save(tmp_path / "x", serialization_format="json")


def test_loading_the_wrong_class_or_a_bad_serial_is_named(tmp_path):
    _fit("regressor").save(tmp_path / "reg").close()
    with pytest.raises(ValueError, match="holds a AarenRegressor, not a AarenClassifier"):
        AarenClassifier.load_from_path(tmp_path / "reg.zip")
    with pytest.raises(TypeError, match="bytes of save"):
        AarenRegressor.load_from_serial((AarenRegressor, b""))
    with pytest.raises(ValueError, match=r"the serial.*corrupted"):
        AarenRegressor.load_from_serial(b"not a pickle")
    with pytest.raises(FileNotFoundError, match="no saved estimator"):
        aaren_ts.load(tmp_path / "missing")


def test_loading_leaves_the_global_rng_alone(fitted):
    # rebuilding a network draws initial weights; it must not shift the user's RNG
    payload = pickle.dumps(fitted)
    before = torch.get_rng_state()
    pickle.loads(payload)
    assert torch.equal(before, torch.get_rng_state())


# ---------------------------------------------------------------------------- payload
class _Recorder(pickle.Pickler):
    """Pickles to nowhere, recording every object pickle meets."""

    def __init__(self):
        super().__init__(io.BytesIO())
        self.seen: list = []

    def persistent_id(self, obj):
        self.seen.append(obj)
        return None


def test_payload_holds_cpu_state_dicts_not_modules(fitted):
    state = fitted.__getstate__()
    assert isinstance(state["network_"], PortableModule)
    payload = pickle.loads(pickle.dumps(state["network_"]))._payload
    assert set(payload) == {"cls", "kwargs", "state_dict", "training"}
    assert payload["state_dict"].keys() == fitted.network_.state_dict().keys()
    rebuilt = payload["cls"](**payload["kwargs"])
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in payload["state_dict"].items()
    }
    recorder = _Recorder()
    recorder.dump(fitted)
    assert not [o for o in recorder.seen if isinstance(o, nn.Module)]
    tensors = [o for o in recorder.seen if isinstance(o, torch.Tensor)]
    assert tensors and all(t.device.type == "cpu" for t in tensors)


def test_streams_share_the_loaded_network():
    model = _fit("point_process")
    loaded = pickle.loads(pickle.dumps(model))
    assert all(s._net is loaded.network_ for s in loaded.streams_)
    # the payload holds the network once, however many streams use it
    assert len(pickle.dumps(model)) < 1.5 * len(pickle.dumps(model.network_.state_dict()))


# ---------------------------------------------------------------------------- streams
@pytest.mark.parametrize("window", [None, 8])
@pytest.mark.parametrize("update_params", [False, True])
def test_forecaster_stream_continues_exactly_after_save(tmp_path, window, update_params):
    def fresh():
        model = AarenForecaster(context_length=window, chunk_length=32, update_steps=2, **TINY)
        model.fit(_rows(PANEL, 0, 100), fh=[1, 2, 3])
        return model.update(_rows(PANEL, 0, 110), update_params=update_params)

    original, never_saved = fresh(), fresh()
    original.save(tmp_path / "f").close()
    loaded = sktime_load(str(tmp_path / "f"))
    for stop in (118, 126):  # two more updates, sktime-style (the whole window so far)
        for model in (original, loaded, never_saved):
            model.update(_rows(PANEL, 0, stop), update_params=update_params)
        _assert_identical(loaded, original)
        _assert_identical(loaded, never_saved)
    assert loaded.cutoff.equals(never_saved.cutoff)


@pytest.mark.parametrize(
    "cls, y, params",
    [
        (AarenClassifier, Y_CLASS, {}),
        (AarenRegressor, Y_REG, {}),
        # the stream's step counter (positional) after the mean readout's running sum
        (AarenClassifier, Y_CLASS, {"positional": True, "readout": "mean"}),
        (AarenRegressor, Y_REG, {"positional": True}),
    ],
)
def test_panel_stream_objects_continue_after_pickling(cls, y, params):
    model = cls(**TINY, **params).fit(X_PANEL, y)
    stream = model.start_stream(3)
    for t in range(6):
        stream.update(X_PANEL[:3, :, t])
    resumed = pickle.loads(pickle.dumps(stream))
    from_loaded = pickle.loads(pickle.dumps(model)).start_stream(3)
    for t in range(6):
        from_loaded.update(X_PANEL[:3, :, t])
    for t in range(6, 16):
        for s in (stream, resumed, from_loaded):
            s.update(X_PANEL[:3, :, t])
        np.testing.assert_array_equal(resumed.predict(), stream.predict())
        np.testing.assert_array_equal(from_loaded.predict(), stream.predict())
    assert resumed.n_steps == stream.n_steps == 16
    reference = model.predict_proba(X_PANEL[:3]) if cls is AarenClassifier else None
    if reference is not None:  # the full series read in one pass
        np.testing.assert_allclose(resumed.predict_proba(), reference, atol=1e-5)


def test_point_process_streams_continue_after_save(tmp_path):
    original, never_saved = _fit("point_process"), _fit("point_process")
    original.save(tmp_path / "pp").close()
    loaded = AarenPointProcess.load_from_path(tmp_path / "pp.zip")
    rest = [(s.times[5:], s.marks[5:], float(s.times[4]), None) for s in EVENTS[:2]]
    for model in (original, loaded, never_saved):
        model.update(rest)
    _assert_identical(loaded, original)
    _assert_identical(loaded, never_saved)
    one_pass = original.score_samples(EVENTS[:2])  # the whole sequences at once (to t_end)
    pairs = zip(loaded.streams_, EVENTS[:2], strict=True)
    streamed = [s.log_likelihood(t_end=seq.t_end) for s, seq in pairs]
    np.testing.assert_allclose(streamed, one_pass, rtol=1e-5)
    # a single EventStream pickled on its own continues too
    stream = original.start_stream(0.0).update(EVENTS[3].times[:4], EVENTS[3].marks[:4])
    resumed = pickle.loads(pickle.dumps(stream))
    for s in (stream, resumed):
        s.update(EVENTS[3].times[4:], EVENTS[3].marks[4:])
    assert resumed.log_likelihood() == stream.log_likelihood()
    assert resumed.predict() == stream.predict()


# ---------------------------------------------------------------------------- GPU -> CPU
def _as_if_trained_on_cuda(state: dict) -> dict:
    """The state a CUDA-trained estimator's ``__getstate__`` returns: the same CPU state
    dicts, its device settings CUDA, and the stream tensors that lived on the GPU marked
    to go back to the loading device (``forecast`` is kept on the CPU by the forecaster)."""
    state = dict(state, device="cuda", _device=torch.device("cuda"))
    if isinstance(state.get("streams_"), StreamTable):  # states and records on the GPU
        state["streams_"] = state["streams_"].with_tensors(
            lambda v: DeviceTensor(v) if isinstance(v, torch.Tensor) else v
        )
    elif "streams_" in state and isinstance(state["streams_"], dict):
        state["streams_"] = {
            key: {
                k: DeviceTensor(v) if isinstance(v, torch.Tensor) and k != "forecast" else v
                for k, v in stream.items()
            }
            for key, stream in state["streams_"].items()
        }
    return state


@pytest.mark.parametrize("name", ["forecaster", "classifier", "point_process"])
def test_cuda_trained_model_loads_on_cpu_with_a_warning(name, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a GPU machine
    model = _fit(name)
    state = pickle.loads(pickle.dumps(_as_if_trained_on_cuda(model.__getstate__())))
    loaded = type(model).__new__(type(model))
    with pytest.warns(UserWarning, match="device='cuda'.*no CUDA device.*on the CPU"):
        loaded.__setstate__(state)
    assert loaded.device == "cuda" and loaded._device == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in loaded.network_.parameters())
    _assert_identical(loaded, model)
    if name == "forecaster":  # the stream goes on, on the CPU
        for m in (model, loaded):
            m.update(_rows(PANEL, 0, 120), update_params=False)
        _assert_identical(loaded, model)
    # the same through a file saved with device="cuda"
    model.device, model._device = "cuda", torch.device("cuda")  # set_params would unfit it
    model.save(tmp_path / "gpu").close()
    with pytest.warns(UserWarning, match="no CUDA device"):
        from_file = sktime_load(str(tmp_path / "gpu"))
    _assert_identical(from_file, loaded)
    # refitting with device="cuda" still needs CUDA, as before
    with pytest.raises(ValueError, match="no CUDA device is available"):
        if name == "classifier":
            from_file.fit(X_PANEL, Y_CLASS)
        elif name == "forecaster":
            from_file.fit(load_airline(), fh=[1])
        else:
            from_file.fit(EVENTS)


def test_auto_device_loads_where_it_can(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = _fit("regressor")
    state = pickle.loads(pickle.dumps(dict(model.__getstate__(), _device=torch.device("cuda"))))
    loaded = AarenRegressor.__new__(AarenRegressor)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "auto" means "what is here": no warning
        loaded.__setstate__(state)
    assert loaded._device == torch.device("cpu")
    _assert_identical(loaded, model)


_LOAD_ON_CPU = textwrap.dedent(
    """
    import sys, warnings, numpy as np, torch
    from sktime.base import load
    from sktime.datasets import load_airline
    assert not torch.cuda.is_available()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(sys.argv[1])
    assert any("no CUDA device" in str(w.message) for w in caught), caught
    assert model._device.type == "cpu"
    model.update(load_airline()[:120], update_params=False)  # the stream goes on, on the CPU
    np.save(sys.argv[2], model.predict().to_numpy())
    """
)


@pytest.mark.gpu
def test_forecaster_trained_on_cuda_loads_in_a_process_without_cuda(tmp_path):
    y = load_airline()
    model = AarenForecaster(device="cuda", chunk_length=32, **TINY).fit(y[:100], fh=[1, 2])
    model.update(y[:110], update_params=False)
    assert next(model.network_.parameters()).device.type == "cuda"
    recorder = _Recorder()
    recorder.dump(model)
    assert not [o for o in recorder.seen if isinstance(o, nn.Module)]
    assert all(o.device.type == "cpu" for o in recorder.seen if isinstance(o, torch.Tensor))
    model.save(tmp_path / "cuda_model").close()
    model.update(y[:120], update_params=False)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_ON_CPU, str(tmp_path / "cuda_model"),
         str(tmp_path / "pred.npy")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    on_cpu = np.load(tmp_path / "pred.npy")
    np.testing.assert_allclose(on_cpu, model.predict().to_numpy(), rtol=1e-4, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["classifier", "regressor", "point_process"])
def test_models_trained_on_cuda_load_on_cpu(name, monkeypatch):
    model = _fit(name)  # device="auto": CUDA here
    assert model._device.type == "cuda"
    model.device = "cuda"  # as if asked for explicitly: the CPU load then warns
    on_cuda = _outputs(model)
    payload = pickle.dumps(model)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="no CUDA device"):
        loaded = pickle.loads(payload)
    assert all(p.device.type == "cpu" for p in loaded.network_.parameters())
    # the same model on another device: equal up to float32 (and cuDNN TF32) rounding
    for ours, theirs in zip(_outputs(loaded), on_cuda, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=2e-3, atol=1e-3)


def test_saved_record_describes_the_file(tmp_path):
    model = _fit("classifier")
    model.save(tmp_path / "c").close()
    with zipfile.ZipFile(tmp_path / "c.zip") as archive:
        assert set(archive.namelist()) == {"_metadata", "_obj", "_tensors", "_aaren_ts"}
        record = json.loads(archive.read("_aaren_ts"))
        assert pickle.loads(archive.read("_metadata")) is AarenClassifier
        for name in ("_metadata", "_obj", "_tensors"):
            assert record["sha256"][name] == hashlib.sha256(archive.read(name)).hexdigest()
        # the tensors are plain torch tensors, readable with weights_only=True
        tensors = torch.load(io.BytesIO(archive.read("_tensors")), weights_only=True)
    assert record["format"] == "aaren_ts-estimator" and record["format_version"] == 2
    assert record["class"] == "aaren_ts.estimators.classifier.AarenClassifier"
    assert record["payload"] == "data"
    assert record["params"] == json.loads(json.dumps(model.get_params(deep=False)))
    n_weights = sum(t.numel() for t in model.network_.state_dict().values())
    assert sum(t.numel() for t in tensors.values()) >= n_weights
