"""AarenClassifier: ragged input without padding artefacts, early (prefix) and streaming
prediction against independent references, seeding, learning, class weights, bad input, and
sklearn/sktime tuning tools."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from aaren_ts.estimators import AarenClassifier
from aaren_ts.estimators._panel_base import AUTO_POSITIONAL_MAX_STEPS

# one network unless a test is about ensembles (the classifier default averages 3)
TINY = {
    "d_model": 8, "n_layers": 1, "n_heads": 2, "max_epochs": 2, "random_state": 0, "n_networks": 1
}  # fmt: skip


def ramps(n: int, seed: int, lengths=(6, 18)) -> tuple[list[pd.DataFrame], np.ndarray]:
    """Ragged 2-channel series; class "up" rises on channel 0, "down" falls (plus noise)."""
    rng = np.random.default_rng(seed)
    series, labels = [], []
    for i in range(n):
        length = int(rng.integers(*lengths))
        up = i % 2 == 0
        t = np.linspace(-1, 1, length) * (1 if up else -1)
        values = np.stack([t, rng.normal(size=length)], axis=1) + 0.3 * rng.normal(size=(length, 2))
        series.append(pd.DataFrame(values, columns=["a", "b"]))
        labels.append("up" if up else "down")
    return series, np.array(labels)


def as_multiindex(series: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(series, keys=range(len(series)), names=["instance", "time"])


@pytest.fixture(scope="module")
def ragged():
    return ramps(40, seed=0)


@pytest.fixture(
    scope="module",
    params=[
        "aaren",
        "transformer",
        "gru",
        "aaren-recency",
        "aaren-mean",
        "transformer-mean",
        "aaren-positional",
        "gru-positional-mean",
        "aaren-ensemble",
        "transformer-ensemble-mean",
    ],
)
def fitted(request, ragged):
    series, labels = ragged
    backbone, *variants = request.param.split("-")
    clf = AarenClassifier(
        backbone=backbone,
        recency="recency" in variants,
        readout="mean" if "mean" in variants else "last",
        positional="positional" in variants,
        **{**TINY, "n_networks": 2 if "ensemble" in variants else 1},
    )
    return clf.fit(as_multiindex(series), labels)


def test_ragged_series_read_at_their_own_end(fitted, ragged):
    """A series gets the same probabilities alone as inside a ragged batch (no padding
    artefacts), whatever panel layout carries it."""
    series, _ = ragged
    batch = fitted.predict_proba(as_multiindex(series[:12]))
    alone = np.concatenate([fitted.predict_proba(as_multiindex([s])) for s in series[:12]])
    assert len({len(s) for s in series[:12]}) > 3  # genuinely ragged
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    np.testing.assert_allclose(fitted.predict_proba(series[:12]), batch, atol=1e-6)  # df-list
    np.testing.assert_allclose(batch.sum(1), 1.0, atol=1e-6)


def test_sktime_nested_format_of_unequal_series_is_accepted(ragged):
    """sktime's default nested layout (what ``load_from_tsfile`` returns for JapaneseVowels)
    with series of different lengths fits and predicts, as the other layouts do (it used to
    be converted to numpy3D and fail with numpy's "all input arrays must have the same
    shape")."""
    from sktime.datatypes import convert_to

    series, labels = ragged
    multiindex = as_multiindex(series)
    nested = convert_to(multiindex, to_type="nested_univ")
    assert len({len(cell) for cell in nested.iloc[:, 0]}) > 3  # genuinely unequal
    from_nested = AarenClassifier(**TINY).fit(nested, labels)
    from_multiindex = AarenClassifier(**TINY).fit(multiindex, labels)
    np.testing.assert_allclose(
        from_nested.predict_proba(nested), from_multiindex.predict_proba(multiindex), atol=1e-6
    )


def test_prefix_pass_equals_each_truncated_series(fitted, ragged):
    series, _ = ragged
    prefix = fitted.predict_proba_prefix(as_multiindex(series[:5]))
    longest = max(len(s) for s in series[:5])
    assert prefix.shape == (5, longest, 2)
    for i, s in enumerate(series[:5]):
        truncated = [s.iloc[: t + 1].reset_index(drop=True) for t in range(len(s))]
        expected = fitted.predict_proba(as_multiindex(truncated))
        np.testing.assert_allclose(prefix[i, : len(s)], expected, atol=1e-5)
        assert np.isnan(prefix[i, len(s) :]).all()  # past the end of the series


def test_stream_equals_prefix_pass(fitted, ragged):
    """Two live series stepped together (one update each per step) match the prefix pass at
    every step, and the stream's state is its own (a second stream is independent)."""
    series, _ = ragged
    a, b = (s.to_numpy() for s in series[:2])
    n = min(len(a), len(b))
    prefix = fitted.predict_proba_prefix(as_multiindex(series[:2]))
    stream = fitted.start_stream(2)
    single = fitted.start_stream()
    with pytest.raises(ValueError, match="no observation yet"):
        stream.predict_proba()
    for t in range(n):
        proba = stream.update(np.stack([a[t], b[t]])).predict_proba()
        np.testing.assert_allclose(proba, prefix[:, t], atol=1e-5)
        np.testing.assert_allclose(single.update(b[t]).predict_proba()[0], prefix[1, t], atol=1e-5)
    assert stream.n_steps == n
    assert list(stream.predict()) == list(fitted.classes_[prefix[:, n - 1].argmax(1)])


def test_stream_state_is_constant_size_for_aaren(ragged):
    series, labels = ragged
    clf = AarenClassifier(**TINY).fit(as_multiindex(series), labels)
    stream = clf.start_stream()

    def size():
        return sum(t.numel() for t in _tensors(stream._state))

    stream.update(series[0].to_numpy()[0])
    first = size()
    for _ in range(50):
        stream.update(series[0].to_numpy()[1])
    assert size() == first


def _tensors(state):
    if isinstance(state, torch.Tensor):
        yield state
    elif isinstance(state, (tuple, list)):
        for s in state:
            yield from _tensors(s)


def test_same_seed_same_predictions_other_seed_differs(ragged):
    series, labels = ragged
    X = as_multiindex(series)
    p1 = AarenClassifier(**TINY).fit(X, labels).predict_proba(X)
    p2 = AarenClassifier(**TINY).fit(X, labels).predict_proba(X)
    p3 = AarenClassifier(**{**TINY, "random_state": 1}).fit(X, labels).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    assert np.abs(p1 - p3).max() > 1e-4


def test_learns_a_known_rule_on_ragged_series():
    """Rising vs falling series (ragged lengths): held-out accuracy near perfect."""
    train, y_train = ramps(80, seed=1)
    test, y_test = ramps(60, seed=2)
    clf = AarenClassifier(d_model=16, n_layers=1, max_epochs=30, random_state=0)
    clf.fit(as_multiindex(train), y_train)
    assert (clf.predict(as_multiindex(test)) == y_test).mean() >= 0.95
    assert clf.loss_history_[-1] < clf.loss_history_[0] / 2
    assert set(clf.classes_) == {"up", "down"}


def test_prefix_loss_trains_the_early_calls():
    """Rising vs falling ramps are told apart from their first steps, but a classifier
    trained on whole series only has never been asked to: prefix_loss teaches it."""
    train, y_train = ramps(80, seed=1)
    test, y_test = ramps(60, seed=2)
    early = {}
    for weight in (0.0, 0.5):
        clf = AarenClassifier(  # one network: what its own training objective teaches
            d_model=16, n_layers=1, max_epochs=30, prefix_loss=weight, random_state=0, n_networks=1
        )
        clf.fit(as_multiindex(train), y_train)
        proba = clf.predict_proba_prefix(as_multiindex(test))
        early[weight] = [(clf.classes_[proba[:, k].argmax(1)] == y_test).mean() for k in range(3)]
        assert (clf.predict(as_multiindex(test)) == y_test).mean() >= 0.95
    assert min(early[0.5]) >= 0.95  # right after 1, 2 and 3 steps
    assert max(early[0.0]) < 0.8


def test_early_stopping_holds_out_stratified_series_and_keeps_the_best():
    """Labels unrelated to the series: the held-out loss soon stops improving."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(40, 2, 10)), np.array(["a", "b"] * 20)
    clf = AarenClassifier(
        d_model=16,
        n_layers=1,
        max_epochs=60,
        lr=1e-2,
        validation_size=0.25,
        patience=3,
        random_state=0,
        n_networks=1,  # one network's early stopping (an ensemble's members stop apart)
    )
    clf.fit(X, y)
    history = clf.validation_history_
    assert len(history) == clf.n_epochs_ == len(clf.loss_history_)
    assert clf.n_epochs_ < 60  # stopped early, `patience` epochs after the best one
    assert int(np.argmin(history)) == len(history) - 1 - 3
    # the best epoch's weights were restored: the held-out loss is the best one again
    val = clf._split(40, np.random.RandomState(0), np.arange(40) % 2)[1]
    proba = clf.predict_proba(X[val])
    codes = (y[val] == "b").astype(int)
    loss = -np.log(proba[np.arange(len(val)), codes]).mean()
    assert abs(loss - min(history)) < 1e-5


def test_class_weight_shifts_predictions_towards_the_weighted_class():
    """Noise-only features: the weighted class's probability rises with its weight."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2, 8))
    y = np.array(["a"] * 20 + ["b"] * 20)
    base = {"d_model": 8, "n_layers": 1, "max_epochs": 15, "random_state": 0}
    plain = AarenClassifier(**base).fit(X, y).predict_proba(X)[:, 1].mean()
    heavy = AarenClassifier(**base, class_weight={"b": 5.0}).fit(X, y).predict_proba(X)[:, 1]
    assert heavy.mean() > plain + 0.1
    balanced = AarenClassifier(**base, class_weight="balanced").fit(X[:30], y[:30])
    assert balanced.predict_proba(X).shape == (40, 2)
    with pytest.raises(ValueError, match="labels not seen in y"):
        AarenClassifier(**base, class_weight={"c": 2.0}).fit(X, y)
    with pytest.raises(
        ValueError, match=r"class_weight must be one of \(None, 'balanced'\) or a dict"
    ):
        AarenClassifier(**base, class_weight="heavy").fit(X, y)


# ---------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3, 10))
    y = np.array(["p", "q", "r"] * 4)
    return X, y, AarenClassifier(**TINY).fit(X, y)


def test_nan_and_inf_are_named(small):
    X, y, clf = small
    bad = X.copy()
    bad[2, 1, 4] = np.nan
    with pytest.raises(ValueError, match="missing values"):
        AarenClassifier(**TINY).fit(bad, y)
    bad[2, 1, 4] = np.inf
    with pytest.raises(ValueError, match="series 2 of X contains NaN or inf"):
        AarenClassifier(**TINY).fit(bad, y)
    with pytest.raises(ValueError, match="series 2 of X contains NaN or inf"):
        clf.predict(bad)


def test_channel_mismatch_and_empty_series_are_named(small):
    X, _, clf = small
    with pytest.raises(ValueError, match="X has 2 channels but AarenClassifier was fitted on 3"):
        clf.predict_proba(X[:, :2])
    with pytest.raises(ValueError, match="X has 2 channels"):
        clf.predict_proba_prefix(X[:, :2])
    empty = [pd.DataFrame(np.zeros((0, 3))), pd.DataFrame(np.ones((4, 3)))]
    with pytest.raises(ValueError, match="empty"):
        clf.predict(empty)
    stream = clf.start_stream()
    with pytest.raises(ValueError, match=r"x_t must have shape \(1, 3\)"):
        stream.update(np.zeros(2))
    with pytest.raises(ValueError, match="x_t contains NaN"):
        stream.update(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="n_streams must be >= 1"):
        clf.start_stream(0)


def test_single_class_warns_and_predicts_it(small):
    X, _, _ = small
    clf = AarenClassifier(**TINY)
    with pytest.warns(UserWarning, match="single label"):
        clf.fit(X, np.array(["only"] * len(X)))
    assert list(clf.predict(X[:2])) == ["only", "only"]
    with pytest.raises(ValueError, match="nothing to stream"):
        clf.start_stream()


def test_failed_fit_leaves_the_fitted_estimator_unchanged(small):
    X, y, clf = small
    before = clf.predict_proba(X)
    network = clf.network_
    bad = X.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        clf.fit(bad, y)
    with pytest.raises(ValueError, match="Mismatch in number of cases"):
        clf.fit(X, y[:-1])  # sktime's own check, after its reset()
    assert clf.network_ is network and clf.is_fitted
    np.testing.assert_array_equal(clf.predict_proba(X), before)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"backbone": "lstm"}, "backbone must be one of"),
        ({"max_epochs": 0}, "max_epochs must be a positive int"),
        ({"validation_size": 1.0}, r"validation_size must be a number in \[0.0, 1.0\)"),
        ({"prefix_loss": 1.5}, r"prefix_loss must be a number in \[0.0, 1.0\]"),
        ({"label_smoothing": 1.0}, r"label_smoothing must be a number in \[0.0, 1.0\)"),
        ({"backbone": "gru", "recency": True}, "recency=True applies to the aaren backbone"),
        (
            {"backbone": "transformer", "positional": True},
            "positional=True applies to the aaren and gru backbones",
        ),
        ({"positional": "yes"}, "positional must be True or False or 'auto'"),
        ({"readout": "max"}, r"readout must be one of \('last', 'mean'\)"),
        ({"readout": None}, r"readout must be one of \('last', 'mean'\)"),
        ({"kernel_size": (3, 3)}, "kernel_size must be a positive int or a tuple of distinct"),
        ({"kernel_size": (3, 0)}, "kernel_size must be a positive int or a tuple of distinct"),
        ({"kernel_size": ()}, "kernel_size must be a positive int or a tuple of distinct"),
        ({"kernel_size": "3"}, "kernel_size must be a positive int or a tuple of distinct"),
        ({"kernel_size": tuple(range(1, 10))}, "more than d_model=8 embedding channels"),
        (
            {"device": "cuda"} if not torch.cuda.is_available() else {"kernel_size": 0},
            "cuda|kernel",
        ),
    ],
)
def test_bad_parameters_are_named(small, params, match):
    X, y, _ = small
    with pytest.raises(ValueError, match=match):
        AarenClassifier(**{**TINY, **params}).fit(X, y)


def test_verbose_shows_progress_per_epoch(small, capfd):
    X, y, _ = small
    AarenClassifier(**{**TINY, "verbose": True, "validation_size": 0.25}).fit(X, y)
    err = capfd.readouterr().err
    assert "AarenClassifier (aaren)" in err and "2/2" in err and "val=" in err


@pytest.mark.parametrize(
    ("n_series", "max_epochs", "min_steps", "epochs"),
    [
        (12, "auto", 0, 200),  # the auto rule's floor: 200 epochs
        (12, "auto", 300, 300),  # one batch per epoch: 300 steps need 300 epochs
        (70, "auto", 1000, 334),  # three batches: ceil(1000 / 3)
        (200, "auto", 1200, 200),  # seven batches: 200 epochs already make 1,400 steps
        (12, 3, 5000, 3),  # an explicit int is what it says
    ],
)
def test_auto_epochs_plan_enough_optimiser_steps_for_few_batches(
    n_series, max_epochs, min_steps, epochs, monkeypatch
):
    """``max_epochs="auto"``: ``max(200, ceil(min_steps / batches))`` epochs, with
    ``ceil(n / 32)`` batches of n series; an int ``max_epochs`` ignores ``min_steps``. The
    planned count is checked (the fit itself is stubbed: 200 epochs are not needed here)."""
    from aaren_ts.estimators import _panel_base

    planned = []

    def fake_train(net, data, **kwargs):
        planned.append(kwargs["max_epochs"])
        return ([0.0], []), 1

    monkeypatch.setattr(_panel_base, "train_network", fake_train)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_series, 2, 6))
    y = np.array(["p", "q"] * (n_series // 2) + ["p"] * (n_series % 2))
    params = {**TINY, "max_epochs": max_epochs, "min_steps": min_steps}
    AarenClassifier(**params).fit(X, y)
    assert planned == [epochs]


def test_auto_epochs_train_and_show_in_the_progress_bar(small, capfd):
    X, y, _ = small  # 12 series: one batch per epoch
    params = {**TINY, "max_epochs": "auto", "min_steps": 203, "verbose": True}
    clf = AarenClassifier(**params).fit(X, y)
    assert clf.n_epochs_ == 203 == len(clf.loss_history_)
    assert "203/203" in capfd.readouterr().err


def test_exported_lazily_from_the_package():
    import subprocess
    import sys

    import aaren_ts

    assert aaren_ts.AarenClassifier is AarenClassifier
    assert "AarenRegressor" in dir(aaren_ts)
    code = "import sys, aaren_ts; print('sktime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # import aaren_ts alone does not import sktime


# ---------------------------------------------------------------------- tuning tools
def test_sklearn_grid_search_cross_val_score_and_pipeline(small):
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y, _ = small
    search = GridSearchCV(AarenClassifier(**TINY), {"d_model": [4, 8]}, cv=2)
    search.fit(X, y)
    assert search.best_params_["d_model"] in (4, 8)
    assert search.predict(X).shape == (12,)
    scores = cross_val_score(AarenClassifier(**TINY), X, y, cv=3)
    assert scores.shape == (3,) and ((0 <= scores) & (scores <= 1)).all()
    pipe = Pipeline([("scale", FunctionTransformer(np.tanh)), ("clf", AarenClassifier(**TINY))])
    pipe.fit(X, y)
    direct = AarenClassifier(**TINY).fit(np.tanh(X), y)
    np.testing.assert_array_equal(pipe.predict_proba(X), direct.predict_proba(np.tanh(X)))


def test_sktime_grid_search(small):
    from sktime.classification.model_selection import TSCGridSearchCV

    X, y, _ = small
    search = TSCGridSearchCV(AarenClassifier(**TINY), {"backbone": ["aaren", "gru"]}, cv=2)
    search.fit(X, y)
    assert search.best_params_["backbone"] in ("aaren", "gru")
    assert search.predict(X).shape == (12,)


def test_a_multi_scale_embedding_reads_each_size_and_streams_like_one_pass(ragged):
    """kernel_size=(2, 5): the rows of each size read exactly their last k steps; the stream
    equals the prefix pass; the saved model (both formats) gives the same probabilities."""
    import pickle

    from aaren_ts import load

    series, labels = ragged
    clf = AarenClassifier(kernel_size=(2, 5), **TINY).fit(as_multiindex(series), labels)
    net = clf.network_
    assert net.kernel_size == 5 and net.kernel_sizes == (2, 5)
    x = torch.randn(1, 12, 2)
    moved = x.clone()
    moved[:, 5] += 10.0  # step 5 is 3 steps before step 8: outside size 2, inside size 5
    with torch.no_grad():
        before, after = net._embed(x)[0, 8], net._embed(moved)[0, 8]
    assert torch.equal(before[:4], after[:4])  # the size-2 rows (the first half of 8)
    assert (before[4:] - after[4:]).abs().max() > 1e-3
    assert torch.count_nonzero(net.embed.weight[:4, :, :3]) == 0  # never-read taps stay 0
    one = series[3]
    prefix = clf.predict_proba_prefix(as_multiindex([one]))[0]
    stream = clf.start_stream(1)
    for row in one.to_numpy():
        stream.update(row)
    np.testing.assert_allclose(stream.predict_proba()[0], prefix[-1], atol=1e-5)
    X = as_multiindex(series[:6])
    expected = clf.predict_proba(X)
    for copy in (pickle.loads(pickle.dumps(clf)), load(clf.save())):
        assert copy.network_.kernel_sizes == (2, 5)
        np.testing.assert_array_equal(copy.predict_proba(X), expected)


def test_a_network_pickled_before_multi_scale_embeddings_still_runs_and_exports():
    """A PanelNet pickled by a version without ``kernel_sizes`` and ``embed_mask`` reads
    series as before and exports its (single) kernel size."""
    import pickle

    from aaren_ts.estimators._panel_net import PanelNet
    from aaren_ts.estimators._portable import network_kwargs

    torch.manual_seed(0)
    net = PanelNet(2, 3, d_model=8, n_layers=1, n_heads=2, kernel_size=4).eval()
    x = torch.randn(2, 7, 2)
    with torch.no_grad():
        expected = net(x)
    del net.kernel_sizes
    del net._buffers["embed_mask"]  # what an older pickle holds
    old = pickle.loads(pickle.dumps(net))
    with torch.no_grad():
        assert torch.equal(old(x), expected)
    assert network_kwargs(old)["kernel_size"] == 4


@pytest.mark.parametrize("backbone", ["aaren", "gru"])
def test_mean_readout_is_the_head_of_the_running_mean_of_the_backbone(ragged, backbone):
    """readout="mean": the output at step t is the head applied to the mean of the
    backbone's outputs at steps 0..t (an independent float64 loop), in one pass and in a
    stream; "last" reads step t alone, so the two differ on the same weights."""
    series, labels = ragged
    clf = AarenClassifier(backbone=backbone, readout="mean", **TINY)
    clf.fit(as_multiindex(series), labels)
    net = clf.network_.eval()
    x = torch.randn(3, 9, 2)
    with torch.no_grad():
        hidden, _ = net.backbone(net._embed(x))
        hidden = hidden.double()
        means = torch.stack([hidden[:, : t + 1].mean(1) for t in range(9)], dim=1)
        expected = means @ net.head.weight.double().T + net.head.bias.double()
        np.testing.assert_allclose(net(x).double(), expected, atol=1e-5)
        state, steps = net.init_state(3), []
        for t in range(9):
            out, state = net.step(x[:, t], state)
            steps.append(out)
        np.testing.assert_allclose(torch.stack(steps, 1).double(), expected, atol=1e-5)
        net.readout = "last"
        last = hidden @ net.head.weight.double().T + net.head.bias.double()
        np.testing.assert_allclose(net(x).double(), last, atol=1e-5)
        assert (last - expected)[:, 1:].abs().max() > 1e-3  # the readouts genuinely differ


def test_mean_readout_survives_both_save_formats(ragged):
    import pickle

    from aaren_ts import load

    series, labels = ragged
    clf = AarenClassifier(readout="mean", **TINY).fit(as_multiindex(series), labels)
    X = as_multiindex(series[:6])
    expected = clf.predict_proba(X)
    for copy in (pickle.loads(pickle.dumps(clf)), load(clf.save())):
        assert copy.network_.readout == "mean"
        np.testing.assert_array_equal(copy.predict_proba(X), expected)


def test_a_network_pickled_before_readouts_reads_its_last_step():
    """A PanelNet pickled by a version without ``readout`` runs, streams and exports as the
    last-step readout it was trained with."""
    import pickle

    from aaren_ts.estimators._panel_net import PanelNet
    from aaren_ts.estimators._portable import network_kwargs

    torch.manual_seed(0)
    net = PanelNet(2, 3, d_model=8, n_layers=1, n_heads=2).eval()
    x = torch.randn(2, 7, 2)
    with torch.no_grad():
        expected = net(x)
    del net.readout  # what an older pickle holds
    old = pickle.loads(pickle.dumps(net))
    with torch.no_grad():
        assert torch.equal(old(x), expected)
        state = old.init_state(2)
        assert len(state) == 2
        for t in range(7):
            out, state = old.step(x[:, t], state)
        np.testing.assert_allclose(out, expected[:, -1], atol=1e-5)
    assert network_kwargs(old)["readout"] == "last"


@pytest.mark.parametrize("backbone", ["aaren", "transformer", "gru"])
@pytest.mark.parametrize("readout", ["last", "mean"])
def test_last_only_outputs_and_gradients_equal_the_full_pass_at_the_last_step(backbone, readout):
    """Training on an unpadded batch and predicting read only the last step
    (``PanelNet(x, last_only=True)``, the backbone's last-step route): the outputs and every
    parameter's gradient equal the full pass's last step (float64)."""
    from aaren_ts.estimators._panel_net import PanelNet

    torch.manual_seed(0)
    net = PanelNet(3, 4, backbone=backbone, d_model=8, n_layers=2, n_heads=2,
                   kernel_size=(2, 5), readout=readout).double()  # fmt: skip
    x = torch.randn(5, 17, 3, dtype=torch.float64)
    params = list(net.parameters())
    full = net(x)[:, -1]
    want = torch.autograd.grad(full.square().sum(), params)
    last = net(x, last_only=True)
    got = torch.autograd.grad(last.square().sum(), params)
    assert last.shape == (5, 4)
    assert torch.allclose(last, full, atol=1e-12)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-10)


def test_padded_and_unpadded_batches_give_each_series_its_own_last_output():
    """``outputs_at_ends`` takes the last-step route only when no series is padded; a ragged
    batch still reads each series at its own end."""
    from aaren_ts.estimators._panel_net import PanelNet, outputs_at_ends, pad_batch

    torch.manual_seed(0)
    net = PanelNet(2, 3, d_model=8, n_layers=2, n_heads=2).eval()
    rng = np.random.default_rng(0)
    series = [rng.normal(size=(n, 2)).astype(np.float32) for n in (9, 4, 9)]
    with torch.no_grad():
        x, lengths = pad_batch(series)
        ragged = outputs_at_ends(net, x, lengths)
        for i, s in enumerate(series):
            alone = net(torch.from_numpy(s)[None])[0, -1]
            assert torch.allclose(ragged[i], alone, atol=1e-5)
        equal, lengths = pad_batch([series[0], series[2]])
        assert torch.allclose(outputs_at_ends(net, equal, lengths), ragged[[0, 2]], atol=1e-5)


def test_positional_adds_the_step_index_code_to_each_embedding():
    """``positional=True`` is the plain network with the sinusoidal code of index ``t`` (0 at
    the first step) added to step ``t``'s embedding, in one pass and stepped, and the
    transformer backbone (which adds its own) refuses it."""
    from aaren_ts.estimators._panel_net import PanelNet
    from aaren_ts.nn.transformer import sinusoidal_encoding

    torch.manual_seed(0)
    kwargs = dict(n_channels=2, n_outputs=3, d_model=8, n_layers=2, n_heads=2, kernel_size=3)
    coded = PanelNet(**kwargs, positional=True).eval()
    plain = PanelNet(**kwargs).eval()
    plain.load_state_dict(coded.state_dict())
    x = torch.randn(4, 9, 2)
    with torch.no_grad():
        embedded = plain._embed(x) + sinusoidal_encoding(torch.arange(9), 8)
        expected = plain.head(plain.backbone(embedded)[0])
        torch.testing.assert_close(coded(x), expected)
        assert not torch.allclose(coded(x), plain(x), atol=1e-3)  # the code is not a no-op
        state = coded.init_state(4)
        for t in range(9):
            out, state = coded.step(x[:, t], state)
            torch.testing.assert_close(out, expected[:, t], atol=1e-5, rtol=1e-5)
        assert state[-1].tolist() == [9] * 4  # the next step's index, per stream
    with pytest.raises(ValueError, match="the transformer backbone adds its own"):
        PanelNet(**{**kwargs, "backbone": "transformer"}, positional=True)


@pytest.mark.parametrize(
    "backbone, channels, longest, expected",
    [
        ("aaren", 1, 17, True),
        ("gru", 1, 17, True),
        ("aaren", 1, AUTO_POSITIONAL_MAX_STEPS, True),
        ("aaren", 1, AUTO_POSITIONAL_MAX_STEPS + 1, False),
        ("gru", 1, AUTO_POSITIONAL_MAX_STEPS + 1, False),
        ("aaren", 2, 17, False),
        ("transformer", 1, 17, False),
    ],
)
def test_positional_auto_is_on_for_short_univariate_series_without_the_transformer(
    backbone, channels, longest, expected, ragged
):
    """The default ``positional="auto"`` resolves at fit from the channels and the longest
    series: the code for univariate series of at most ``AUTO_POSITIONAL_MAX_STEPS`` steps
    with the aaren or gru backbone; longer or multivariate series and the transformer (which
    adds its own code) go without."""
    series, labels = ragged
    series = [s.iloc[:, :channels] for s in series]
    # the ragged series are 6-17 steps; the first one stretched to ``longest`` (edge padded)
    series[0] = pd.DataFrame(
        np.pad(series[0].to_numpy(), ((0, longest - len(series[0])), (0, 0)), "edge"),
        columns=series[0].columns,
    )
    assert max(len(s) for s in series) == longest
    panel = as_multiindex(series)
    clf = AarenClassifier(backbone=backbone, **TINY).fit(panel, labels)
    assert clf.get_params()["positional"] == "auto"  # resolved on the network, not the param
    assert clf.network_.positional is expected
    explicit = AarenClassifier(backbone=backbone, positional=expected, **TINY).fit(panel, labels)
    np.testing.assert_array_equal(clf.predict_proba(panel), explicit.predict_proba(panel))


# ---------------------------------------------------------------------------- ensembles
def test_an_ensemble_averages_the_networks_its_seeds_fit_alone(ragged):
    """``n_networks=3, random_state=1`` averages the class probabilities of the networks that
    plain fits with ``random_state`` 3, 4 and 5 train (member ``i``: ``1 * 3 + i``), in one
    pass, after every prefix and in a stream; its loss history is theirs averaged."""
    series, labels = ragged
    X = as_multiindex(series)
    ensemble = AarenClassifier(**{**TINY, "random_state": 1, "n_networks": 3}).fit(X, labels)
    alone = [AarenClassifier(**{**TINY, "random_state": s}).fit(X, labels) for s in (3, 4, 5)]
    test = as_multiindex(series[:6])
    expected = np.mean([clf.predict_proba(test) for clf in alone], axis=0)
    np.testing.assert_allclose(ensemble.predict_proba(test), expected, atol=1e-6)
    assert list(ensemble.predict(test)) == list(ensemble.classes_[expected.argmax(1)])
    prefix = np.mean([clf.predict_proba_prefix(test) for clf in alone], axis=0)
    np.testing.assert_allclose(ensemble.predict_proba_prefix(test), prefix, atol=1e-6)
    stream = ensemble.start_stream()
    for t, x_t in enumerate(series[0].to_numpy()):
        np.testing.assert_allclose(stream.update(x_t).predict_proba()[0], prefix[0, t], atol=1e-5)
    histories = np.array([clf.loss_history_ for clf in alone])
    np.testing.assert_allclose(ensemble.loss_history_, histories.mean(0), rtol=1e-12)
    assert ensemble.n_epochs_ == TINY["max_epochs"]


def test_one_network_is_the_plain_network_and_other_seeds_other_members(ragged):
    from aaren_ts.estimators._panel_net import PanelEnsemble, PanelNet

    series, labels = ragged
    X = as_multiindex(series)
    plain = AarenClassifier(**TINY).fit(X, labels)
    assert type(plain.network_) is PanelNet
    pair = AarenClassifier(**{**TINY, "n_networks": 2}).fit(X, labels)
    assert isinstance(pair.network_, PanelEnsemble) and len(pair.network_.members) == 2
    # seed 0's first member is the plain network of seed 0
    for a, b in zip(plain.network_.state_dict().values(),
                    pair.network_.members[0].state_dict().values(), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = AarenClassifier(**{**TINY, "n_networks": 2, "random_state": 1}).fit(X, labels)
    assert np.abs(other.predict_proba(X) - pair.predict_proba(X)).max() > 1e-4


def test_an_ensemble_survives_both_save_formats_and_keeps_its_members(ragged):
    import pickle

    from aaren_ts import load

    series, labels = ragged
    clf = AarenClassifier(**{**TINY, "n_networks": 2}).fit(as_multiindex(series), labels)
    X = as_multiindex(series[:6])
    expected = clf.predict_proba(X)
    for copy in (pickle.loads(pickle.dumps(clf)), load(clf.save())):
        assert len(copy.network_.members) == 2
        np.testing.assert_array_equal(copy.predict_proba(X), expected)


def test_an_ensemble_too_large_for_the_machine_is_refused_before_any_member(ragged, monkeypatch):
    """The size check counts every member: a network that fits alone is refused as 50."""
    from aaren_ts.estimators import _sizes

    series, labels = ragged
    X = as_multiindex(series)
    one = AarenClassifier(**TINY).fit(X, labels)
    per_network = sum(p.numel() for p in one.network_.parameters())
    monkeypatch.setattr(_sizes, "machine_memory", lambda: 20 * per_network * 16)
    AarenClassifier(**TINY).fit(X, labels)
    built = []
    monkeypatch.setattr(
        AarenClassifier, "_fit_member", lambda *a, **k: built.append(1), raising=True
    )
    with pytest.raises(ValueError, match="n_networks=50"):
        AarenClassifier(**{**TINY, "n_networks": 50}).fit(X, labels)
    assert not built
