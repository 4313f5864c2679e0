"""AarenRegressor: sktime time-series regression on an Aaren (or Transformer, or GRU)
backbone, with ragged panels read natively and a prediction after every time step.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sktime.regression.base import BaseRegressor

from ._panel_base import PANEL_MTYPES, AarenPanelMixin, PanelStream
from ._panel_net import SquaredError
from ._values import real_values, standardisation


class RegressorStream(PanelStream):
    """Live series regressed one observation at a time (see ``AarenRegressor``).

    ``update(x_t)`` absorbs the next observation of every stream; ``predict()``
    ``(n_streams,)`` gives the prediction after the steps seen so far.
    """

    target_mean_: float
    target_std_: float

    def predict(self) -> np.ndarray:
        """The prediction ``(n_streams,)`` given the steps seen so far."""
        return self._last()[:, 0] * self.target_std_ + self.target_mean_


class AarenRegressor(AarenPanelMixin, BaseRegressor):
    """Deep time-series regressor on an Aaren backbone, with early and streaming prediction.

    The network of ``AarenClassifier`` with a one-value head: each step is embedded by a
    causal convolution, a causal backbone reads the sequence, and the target is read out at
    each series' own last step (series of unequal length are handled natively). Inputs are
    standardised per channel and the target is standardised with its training mean and
    standard deviation; the loss is the mean squared error.

    Parameters
    ----------
    backbone : {"aaren", "transformer", "gru"}, default "aaren"
    d_model, n_layers, n_heads : int, default 64, 2, 4
    kernel_size : int or tuple of int, default 3
        Steps read by the causal convolution that embeds each step. A tuple such as
        ``(3, 7)`` gives a multi-scale embedding: one causal convolution per size, each
        giving an equal share of ``d_model``; a stream keeps the largest size's steps.
    recency : bool, default False
        Aaren backbone only: a learnable per-head attention term linear in the position
        (exponential recency weighting), Aaren's own sense of order.
    readout : {"last", "mean"}, default "last"
        What the head reads at each step: the backbone's output at that step ("last"), or
        the mean of its outputs over all steps so far ("mean", a pooled summary of the
        whole series; streams keep its running sum, still O(1) per step).
    positional : bool or "auto", default False
        Aaren and GRU backbones: add the sinusoidal code of each step's index (0 at a
        series' first step) to its embedding, the position signal the Transformer backbone
        adds inside itself (a stream counts its steps in its state, still O(1) per step).
        "auto": on for univariate series of at most 300 steps (the ``AarenClassifier``
        default; no folds were run for the regressor, which keeps False).
    dropout : float, default 0.1
    max_epochs : int, default 100
    batch_size : int, default 32
    lr : float, default 1e-3
    weight_decay : float, default 1e-2
    validation_size : float, default 0.0
        Share of the training series held out for early stopping (best weights kept).
    patience : int, default 10
    prefix_loss : float in [0, 1], default 0.0
        Weight of the loss at every step (each prefix given its series' target) against the
        loss at each series' last step; > 0 also trains the early predictions.
    n_networks : int, default 1
        Networks trained (each a whole fit, with its own seed) and read as one: their
        predictions averaged, in ``predict``, ``predict_prefix`` and streams. Member ``i``
        is the network a plain fit with ``random_state * n_networks + i`` trains. Fit time
        grows ``n_networks``-fold.
    device : str, default "auto"
    devices : int or "auto", default 1
        Devices that train the network together, one process each (data parallel), as in
        ``AarenClassifier``.
    strategy : {"auto", "ddp"}, default "auto"
        Data parallelism through torch ``DistributedDataParallel``, as in
        ``AarenClassifier``: the same fit as ``devices=1`` (with ``dropout=0``) up to
        floating-point sums.
    n_threads : int, optional
        CPU threads for torch inside this estimator's calls (torch's setting is restored
        after each). None: one thread for networks up to ``d_model=128`` and inside parallel
        workers (loky, dask, ray), where more threads only oversubscribe the cores; wider
        networks keep torch's setting. -1: torch's setting; an int: that many.
    random_state : int, optional
        Seed: same seed, identical predictions on CPU.
    verbose : bool, default False

    Notes
    -----
    ``predict_prefix(X)`` returns ``(n_instances, max_length)``: the prediction after every
    time step from one parallel pass (NaN after a series ends). ``start_stream(n_streams)``
    returns a ``RegressorStream``: ``stream.update(x_t)`` then ``stream.predict()``, O(1)
    per step with the Aaren and GRU backbones, equal to the prefix pass.

    Examples
    --------
    >>> import numpy as np
    >>> from aaren_ts.estimators import AarenRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 2, 15))
    >>> y = X[:, 0].mean(axis=1)
    >>> reg = AarenRegressor(d_model=8, max_epochs=2, random_state=0).fit(X, y)
    >>> reg.predict(X[:3]).shape
    (3,)
    >>> reg.predict_prefix(X[:3]).shape           # after every step
    (3, 15)
    """

    _tags = {  # noqa: RUF012 (sktime's convention: a class-level dict)
        "authors": ["aaren_ts developers"],
        "python_dependencies": "torch",
        "X_inner_mtype": PANEL_MTYPES,
        "capability:multivariate": True,
        "capability:unequal_length": True,
        "capability:missing_values": False,
        "capability:random_state": True,
        "property:randomness": "derandomized",
    }

    def __init__(
        self,
        backbone: str = "aaren",
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        kernel_size: int | tuple[int, ...] = 3,
        recency: bool = False,
        readout: str = "last",
        positional: bool | str = False,
        dropout: float = 0.1,
        max_epochs: int = 100,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        validation_size: float = 0.0,
        patience: int = 10,
        prefix_loss: float = 0.0,
        n_networks: int = 1,
        device: str = "auto",
        devices: int | str = 1,
        strategy: str = "auto",
        n_threads: int | None = None,
        random_state: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.backbone = backbone
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.kernel_size = kernel_size
        self.recency = recency
        self.readout = readout
        self.positional = positional
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.validation_size = validation_size
        self.patience = patience
        self.prefix_loss = prefix_loss
        self.n_networks = n_networks
        self.device = device
        self.devices = devices
        self.strategy = strategy
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        super().__init__()

    def __sklearn_tags__(self):
        return self._sklearn_tags("regressor")

    def _n_outputs(self) -> int:
        return 1

    def _loss(self):
        return SquaredError()

    def _check_targets(self, y) -> None:
        values = y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else y
        real_values(values, "y")

    def _fit(self, X, y):
        y = np.asarray(y, dtype=np.float64)
        if not np.isfinite(y).all():
            raise ValueError("y contains NaN or inf values; AarenRegressor needs finite targets")
        mean, std, constant = standardisation(y.reshape(-1, 1), "y")
        self.target_mean_ = float(mean[0])
        # a constant target is predicted as that constant: the network's output (trained
        # towards 0) is multiplied by 0, not read in units of a stand-in deviation of 1
        self.target_std_ = 0.0 if constant[0] else float(std[0])
        scaled = torch.tensor((y - self.target_mean_) / float(std[0]), dtype=torch.float32)
        self._fit_network(X, scaled, None)
        return self

    def _predict(self, X) -> np.ndarray:
        out = np.stack(self._outputs(X))[:, 0]
        return out * self.target_std_ + self.target_mean_

    def predict_prefix(self, X) -> np.ndarray:
        """Predictions after every time step ``(n_instances, max_length)``, one parallel pass;
        ``[i, t]`` uses the first ``t + 1`` steps of series ``i`` (NaN past its end)."""
        self.check_is_fitted()
        X = self._check_convert_X_for_predict(X)
        return self._prefix_outputs(X)[..., 0] * self.target_std_ + self.target_mean_

    def start_stream(self, n_streams: int = 1) -> RegressorStream:
        """A ``RegressorStream`` for ``n_streams`` live series (see the class Notes)."""
        return self._start_stream(n_streams, RegressorStream)

    def _decorate_stream(self, stream: PanelStream) -> None:
        stream.target_mean_ = self.target_mean_
        stream.target_std_ = self.target_std_

    @classmethod
    def get_test_params(cls, parameter_set="default"):
        """Tiny settings for sktime's conformance suite (one or two epochs, width 4-8)."""
        return [
            {"d_model": 8, "n_layers": 1, "n_heads": 2, "max_epochs": 2, "random_state": 0},
            {
                "d_model": 4,
                "n_layers": 1,
                "n_heads": 2,
                "max_epochs": 1,
                "readout": "mean",
                "positional": True,
                "n_networks": 2,
            },
            {
                "backbone": "gru",
                "d_model": 4,
                "n_layers": 1,
                "max_epochs": 1,
                "validation_size": 0.25,
                "random_state": 0,
            },
        ]
