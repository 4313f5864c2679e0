"""Data-parallel training of the panel estimators (``devices`` / ``strategy="ddp"`` on
``AarenClassifier`` and ``AarenRegressor``): two CPU ranks (gloo) train the network that one
process trains with the same seed and batches.

The shard losses are checked against the single-process loss and gradient without any
process group (class weights, label smoothing, the every-step loss, ragged series, batches
with fewer series than ranks); the spawned path is run once per estimator with two ranks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aaren_ts.estimators import AarenClassifier, AarenRegressor
from aaren_ts.estimators._panel_net import (
    CrossEntropy,
    PanelNet,
    SquaredError,
    _batch_loss,
)
from aaren_ts.estimators._sharding import Shard

TINY = {"d_model": 8, "n_layers": 1, "n_heads": 2, "dropout": 0.0, "device": "cpu"}
CLASS_WEIGHT = torch.tensor([1.0, 3.0, 0.5])


def test_losses_are_weighted_means_of_their_rows():
    """``sum(rows) / sum(weights)``, what a shard's share is built from, is torch's mean."""
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(9, 3, generator=g), torch.tensor([0, 1, 2, 1, 1, 0, 2, 2, 1])
    for weight in (None, CLASS_WEIGHT):
        for smoothing in (0.0, 0.2):
            loss = CrossEntropy(weight, smoothing)
            expected = F.cross_entropy(logits, labels, weight=weight, label_smoothing=smoothing)
            by_rows = loss.rows(logits, labels).sum() / loss.weights(labels).sum()
            torch.testing.assert_close(by_rows, expected)
            torch.testing.assert_close(loss(logits, labels), expected)
    output, target = torch.randn(9, 1, generator=g), torch.randn(9, generator=g)
    loss = SquaredError()
    expected = F.mse_loss(output[:, 0], target)
    torch.testing.assert_close(
        loss.rows(output, target).sum() / loss.weights(target).sum(), expected
    )
    torch.testing.assert_close(loss(output, target), expected)


def _ragged(n: int, channels: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    return [rng.standard_normal((int(rng.integers(3, 12)), channels)) for _ in range(n)]


@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
@pytest.mark.parametrize("kind", ["classes", "regression"])
@pytest.mark.parametrize("prefix_loss", [0.0, 0.4])
def test_shard_losses_average_to_the_batch_loss_and_gradient(world_size, kind, prefix_loss):
    """DDP averages the ranks' gradients: the ranks' shares of a batch (5 ragged series;
    with 8 ranks, 3 of them hold a stand-in row of weight 0) must average to the
    single-process loss and give its gradient."""
    torch.manual_seed(0)
    series = _ragged(5)
    if kind == "classes":
        net = PanelNet(n_channels=2, n_outputs=3, backbone="aaren", d_model=8, n_layers=1,
                       n_heads=2, dropout=0.0, kernel_size=3, recency=False)  # fmt: skip
        targets, loss_fn = torch.tensor([2, 0, 1, 1, 2]), CrossEntropy(CLASS_WEIGHT, 0.1)
    else:
        net = PanelNet(n_channels=2, n_outputs=1, backbone="aaren", d_model=8, n_layers=1,
                       n_heads=2, dropout=0.0, kernel_size=3, recency=False)  # fmt: skip
        targets, loss_fn = torch.randn(5), SquaredError()
    idx = [3, 0, 4, 1, 2]
    cpu = torch.device("cpu")
    params = list(net.parameters())
    expected = _batch_loss(series, targets, idx, loss_fn, prefix_loss, cpu, None)(net)
    expected_grads = torch.autograd.grad(expected, params)
    shares = [
        _batch_loss(series, targets, idx, loss_fn, prefix_loss, cpu, Shard(r, world_size, cpu))(net)
        for r in range(world_size)
    ]
    mean = torch.stack(shares).mean()
    grads = torch.autograd.grad(mean, params)
    torch.testing.assert_close(mean, expected, rtol=1e-5, atol=0)
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("estimator", [AarenClassifier, AarenRegressor])
def test_device_and_strategy_errors(estimator):
    X, y = _panel_data(estimator)
    with pytest.raises(ValueError, match="strategy must be one of"):
        estimator(strategy="dp", max_epochs=1, **TINY).fit(X, y)
    with pytest.raises(ValueError, match="devices must be a positive int or 'auto'"):
        estimator(devices=0, max_epochs=1, **TINY).fit(X, y)


def _panel_data(estimator, n: int = 14):
    rng = np.random.default_rng(5)
    t = np.arange(16)
    freq = rng.choice([0.3, 0.9], size=n)
    X = np.sin(freq[:, None, None] * t + rng.uniform(0, 6, (n, 2, 1)))
    X = X + 0.1 * rng.standard_normal((n, 2, 16))
    if estimator is AarenClassifier:
        return X, np.where(freq > 0.5, "fast", "slow")
    return X, freq + 0.05 * rng.standard_normal(n)


def test_one_device_trains_in_process(monkeypatch):
    """Outside a launched group, strategy="ddp" with one device is plain training."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    X, y = _panel_data(AarenClassifier)
    plain = AarenClassifier(max_epochs=2, random_state=0, **TINY).fit(X, y)
    ddp = AarenClassifier(max_epochs=2, random_state=0, devices=1, strategy="ddp", **TINY)
    ddp.fit(X, y)
    assert ddp.world_size_ == plain.world_size_ == 1
    np.testing.assert_array_equal(ddp.predict_proba(X), plain.predict_proba(X))


@pytest.mark.slow
@pytest.mark.parametrize("estimator", [AarenClassifier, AarenRegressor])
def test_spawned_two_ranks_match_single_process(monkeypatch, estimator):
    """``fit`` spawns two gloo ranks: batches of 5 series (shards of 3 and 2), an every-step
    loss, early stopping on held-out series (the ranks must agree); for the classifier also
    class weights and label smoothing."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    X, y = _panel_data(estimator)
    params = {
        **TINY,
        "batch_size": 5,
        "max_epochs": 4,
        "lr": 1e-2,
        "validation_size": 0.25,
        "patience": 2,
        "prefix_loss": 0.3,
        "random_state": 1,
    }
    if estimator is AarenClassifier:
        params.update(class_weight={"fast": 2.0, "slow": 1.0}, label_smoothing=0.1)
    single = estimator(**params).fit(X, y)
    ddp = estimator(devices=2, strategy="ddp", **params).fit(X, y)
    assert ddp.world_size_ == 2
    np.testing.assert_allclose(ddp.loss_history_, single.loss_history_, rtol=1e-5)
    np.testing.assert_allclose(ddp.validation_history_, single.validation_history_, rtol=1e-5)
    predict = "predict_proba" if estimator is AarenClassifier else "predict"
    expected = getattr(single, predict)(X)
    np.testing.assert_allclose(getattr(ddp, predict)(X), expected, rtol=1e-5, atol=1e-6)
    # the comparison can fail: training moved the predictions away from the untrained ones
    untrained = estimator(**{**params, "max_epochs": 1, "lr": 1e-9}).fit(X, y)
    assert np.abs(getattr(untrained, predict)(X) - expected).max() > 1e-3
