"""AarenClassifier: sktime time-series classification on an Aaren (or Transformer, or GRU)
backbone, with ragged panels read natively and class probabilities after every time step.

The class probabilities after every prefix of a series come out of one parallel pass
(``predict_proba_prefix``), and a live series is classified in O(1) per new observation
(``start_stream``): early classification at no extra cost.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from sktime.classification.base import BaseClassifier

from ._panel_base import PANEL_MTYPES, AarenPanelMixin, PanelStream, panel_arrays
from ._panel_net import CrossEntropy
from ._params import FRACTION, POSITIVE_INT, InstanceOf, Int, Options, Real
from ._values import check_labels


class ClassifierStream(PanelStream):
    """Live series classified one observation at a time (see ``AarenClassifier``).

    ``update(x_t)`` absorbs the next observation of every stream (``(n_channels,)`` or
    ``(n_streams, n_channels)``); ``predict_proba()`` ``(n_streams, n_classes)`` and
    ``predict()`` ``(n_streams,)`` give the classification after the steps seen so far.
    """

    classes_: np.ndarray

    def predict_proba(self) -> np.ndarray:
        """Class probabilities ``(n_streams, n_classes)`` after the steps seen so far."""
        logits = torch.from_numpy(self._last())
        return torch.softmax(logits, dim=-1).numpy()

    def predict(self) -> np.ndarray:
        """The most probable class of every stream, ``(n_streams,)``."""
        return self.classes_[self.predict_proba().argmax(axis=1)]


class AarenClassifier(AarenPanelMixin, BaseClassifier):
    """Deep time-series classifier on an Aaren backbone, with early and streaming prediction.

    Each time step of a (multivariate) series is embedded by a causal convolution over its
    last ``kernel_size`` steps; a causal backbone reads the embedded sequence and a linear
    head gives class logits at every step. A series is classified at its own last step, so
    series of unequal length are handled natively: a series gets the same prediction
    alone as in any ragged batch (no padding artefacts). Inputs are standardised per channel
    with the training data's mean and standard deviation.

    Parameters
    ----------
    backbone : {"aaren", "transformer", "gru"}, default "aaren"
        Sequence model; everything else is identical across backbones.
    d_model, n_layers, n_heads : int, default 64, 2, 4
        Backbone size (the GRU ignores ``n_heads``).
    kernel_size : int or tuple of int, default (3, 11)
        Steps read by the causal convolution that embeds each step. A tuple gives a
        multi-scale embedding: one causal convolution per size, each giving an equal share
        of ``d_model``; a stream keeps the largest size's steps. ``(3, 11)`` was chosen on
        validation folds of the training splits (two fold seeds; 3 before,
        ``benchmarks/classification_defaults.py``).
    recency : bool, default False
        Aaren backbone only: a learnable per-head attention term linear in the position
        (exponential recency weighting), Aaren's own sense of order.
    readout : {"last", "mean"}, default "last"
        What the head reads at each step: the backbone's output at that step ("last"), or
        the mean of its outputs over all steps so far ("mean", a pooled summary of the
        whole series; streams keep its running sum, still O(1) per step). "last" was kept
        on validation folds of the training splits: "mean" wins on BasicMotions (1.000
        against 0.951) and loses on JapaneseVowels (0.963 against 0.989) and Handwriting
        (0.247 against 0.400); try it for data whose class shows all along the series.
    positional : bool or "auto", default "auto"
        Aaren and GRU backbones: add the sinusoidal code of each step's index (0 at a
        series' first step) to its embedding, the position signal the Transformer backbone
        adds inside itself (a stream counts its steps in its state, still O(1) per step).
        "auto": on for univariate series of at most 300 steps (the longest fitted series
        counts), off for longer or multivariate ones (and for the Transformer backbone).
        Chosen on validation folds of the training splits
        (``benchmarks/classification_defaults.py``): the code lifts the short univariate
        shape sets (ArrowHead 0.611 to 0.806, GunPoint 0.920 to 0.960) and lowers the long
        one (OSULeaf, 427 steps: 0.715 to 0.595) and the multivariate sensor sets
        (BasicMotions 0.951 to 0.800, Handwriting 0.373 to 0.327).
    dropout : float, default 0.1
    max_epochs : int or "auto", default "auto"
        Epochs of training (early stopping may end it sooner). "auto": 200, or more where
        the training series make so few batches that 200 epochs would take fewer than
        ``min_steps`` optimiser steps (``ceil(min_steps / batches)`` epochs): a set of
        36 series makes 2 batches of 32, so 600 epochs; sets of 161 series and more keep
        200. Chosen on validation folds of the training splits of seven sets
        (``benchmarks/classification_defaults.py``: fold mean 0.831 against 0.786 for a
        plain 200).
    min_steps : int, default 1200
        The fewest optimiser steps of ``max_epochs="auto"`` (ignored with an int).
    batch_size : int, default 32
    lr : float, default 1e-3
        AdamW learning rate.
    weight_decay : float, default 1e-2
    validation_size : float, default 0.0
        Share of the training series held out (stratified) for early stopping; the best
        epoch's weights are kept. 0: train for ``max_epochs``.
    patience : int, default 10
        Epochs without validation improvement before training stops.
    prefix_loss : float in [0, 1], default 0.0
        Weight of the loss at every step (each prefix labelled with its series' class)
        against the loss at each series' last step: ``(1 - w) * last + w * every step``.
        0 trains for whole series only; > 0 also trains the early predictions of
        ``predict_proba_prefix`` and the stream (calibrated early calls).
    label_smoothing : float in [0, 1), default 0.0
        Cross-entropy against labels smoothed towards uniform by this amount.
    class_weight : None, "balanced" or dict, default None
        Weights of the classes in the loss: "balanced" weighs each class by
        ``n_samples / (n_classes * count)``; a dict maps labels to weights (missing labels 1).
    n_networks : int, default 3
        Networks trained (each a whole fit, with its own seed) and read as one: their class
        probabilities averaged, in ``predict_proba``, ``predict_proba_prefix`` and streams
        (a stream steps every network: its state and each step cost ``n_networks`` times
        one network's). Member ``i`` is the network a plain fit with ``random_state *
        n_networks + i`` trains. Fit time grows ``n_networks``-fold: ``n_networks=1`` fits
        three times faster. 3 was chosen on validation folds of the training splits of
        seven sets (``benchmarks/classification_defaults.py``): single networks differ from
        seed to seed by as much as most settings do, and the average of three was at or
        above one network's mean accuracy on every set (BasicMotions 0.951 to 1.000,
        GunPoint 0.933 to 0.960, Handwriting 0.376 to 0.413).
    device : str, default "auto"
        "auto" picks CUDA when present; "cuda" without a device is an error.
    devices : int or "auto", default 1
        Devices that train the network together, one process each (data parallel): with a
        CUDA ``device``, that many GPUs ("auto": all visible); on CPU, that many processes.
        1: train in this process.
    strategy : {"auto", "ddp"}, default "auto"
        "auto": data parallel when ``devices`` > 1. "ddp": torch ``DistributedDataParallel``
        also inside a group launched by ``torchrun`` (one process per GPU, one node or
        several). Each batch of ``batch_size`` series is split across the ranks and the
        loss weighted so that the averaged gradient is the single-process one: with the
        same seed and ``dropout=0`` the fit matches ``devices=1`` up to floating-point sums.
        Spawned ranks need the ``if __name__ == "__main__":`` guard in scripts (see
        ``AarenForecaster``).
    n_threads : int, optional
        CPU threads for torch inside this estimator's calls (torch's setting is restored
        after each). None: one thread for networks up to ``d_model=128`` and inside parallel
        workers (loky, dask, ray), where more threads only oversubscribe the cores; wider
        networks keep torch's setting. -1: torch's setting; an int: that many.
    random_state : int, optional
        Seed: two fits with the same seed give identical predictions on CPU (with the same
        number of torch threads).
    verbose : bool, default False
        Show a progress bar with the loss per epoch (tqdm when installed).

    Attributes
    ----------
    classes_ : ndarray
        Class labels, in the order of ``predict_proba``'s columns.
    network_ : torch.nn.Module
        The trained network (with ``n_networks`` > 1, the ensemble of them).
    loss_history_, validation_history_ : list of float
        Training (and validation) loss per epoch (with ``n_networks`` > 1, the mean over
        the networks still training at that epoch).
    world_size_ : int
        Processes that trained the network (1 without data parallelism).

    Notes
    -----
    Early and streaming classification:

    - ``predict_proba_prefix(X)`` returns ``(n_instances, max_length, n_classes)``: the class
      probabilities after every time step, from one parallel pass (NaN after a series ends).
      Row ``t`` equals ``predict_proba`` on the series truncated to its first ``t + 1``
      steps.
    - ``start_stream(n_streams)`` returns a ``ClassifierStream``: ``stream.update(x_t)``
      absorbs the next observation (``(n_channels,)``, or ``(n_streams, n_channels)``) and
      ``stream.predict_proba()`` / ``stream.predict()`` classify what has been seen. The
      stream's state (not the estimator) carries the series: O(1) time and memory per step
      with the Aaren and GRU backbones (the Transformer keeps a growing KV cache). After
      ``t`` updates its probabilities equal ``predict_proba_prefix`` at step ``t - 1``.

    If ``y`` holds a single label, sktime warns ("only single label seen") and every
    prediction is that label; no network is trained and there is nothing to stream.

    Examples
    --------
    >>> from sktime.datasets import load_basic_motions
    >>> from aaren_ts.estimators import AarenClassifier
    >>> X, y = load_basic_motions(split="train", return_type="numpy3D")
    >>> clf = AarenClassifier(d_model=16, max_epochs=2, random_state=0)
    >>> clf.fit(X, y)
    AarenClassifier(...)
    >>> proba = clf.predict_proba(X[:3])          # (3, 4): one row per series
    >>> early = clf.predict_proba_prefix(X[:3])   # (3, 100, 4): after every step
    >>> stream = clf.start_stream()
    >>> for x_t in X[0].T[:10]:                   # a live series, one step at a time
    ...     p = stream.update(x_t).predict_proba()
    >>> bool(abs(p - early[0, 9]).max() < 1e-4)
    True
    """

    _tags = {  # noqa: RUF012 (sktime's convention: a class-level dict)
        # packaging
        "authors": ["aaren_ts developers"],
        "python_dependencies": "torch",
        # inputs: numpy3D stays, ragged panels arrive as df-list or pd-multiindex
        "X_inner_mtype": PANEL_MTYPES,
        "capability:multivariate": True,
        "capability:unequal_length": True,
        "capability:missing_values": False,
        # outputs
        "capability:predict_proba": True,
        "capability:class_weight": True,
        # seeding: same random_state, same predictions
        "capability:random_state": True,
        "property:randomness": "derandomized",
    }

    def __init__(
        self,
        backbone: str = "aaren",
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        kernel_size: int | tuple[int, ...] = (3, 11),
        recency: bool = False,
        readout: str = "last",
        positional: bool | str = "auto",
        dropout: float = 0.1,
        max_epochs: int | str = "auto",
        min_steps: int = 1200,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        validation_size: float = 0.0,
        patience: int = 10,
        prefix_loss: float = 0.0,
        label_smoothing: float = 0.0,
        class_weight=None,
        n_networks: int = 3,
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
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.validation_size = validation_size
        self.patience = patience
        self.prefix_loss = prefix_loss
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.n_networks = n_networks
        self.device = device
        self.devices = devices
        self.strategy = strategy
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        super().__init__()

    def __sklearn_tags__(self):
        return self._sklearn_tags("classifier")

    _ensemble_combine = "probabilities"  # an ensemble averages class probabilities

    # ------------------------------------------------------------------ checks
    _constraints: ClassVar[dict] = {
        **AarenPanelMixin._constraints,
        "label_smoothing": FRACTION,
        "class_weight": (Options(None, "balanced"), InstanceOf(dict, "a dict of weights")),
        "max_epochs": (POSITIVE_INT, Options("auto")),
        "min_steps": Int(0),
    }

    # ------------------------------------------------------------------ training
    def _n_outputs(self) -> int:
        return self.n_classes_

    def _class_weights(self, codes: np.ndarray) -> torch.Tensor | None:
        weight = self.class_weight  # None, "balanced" or a dict (checked with the params)
        if weight is None:
            return None
        if isinstance(weight, str):
            counts = np.bincount(codes, minlength=self.n_classes_).astype(np.float64)
            w = len(codes) / (self.n_classes_ * np.maximum(counts, 1.0))
            return torch.tensor(w, dtype=torch.float32)
        unknown = [k for k in weight if k not in self._class_dictionary]
        if unknown:
            raise ValueError(f"class_weight has labels not seen in y: {unknown}")
        values = [weight.get(c, 1.0) for c in self.classes_]
        w = np.array([v if Real(0.0).accepts(v) else np.nan for v in values], dtype=np.float64)
        if not (np.isfinite(w).all() and w.sum() > 0):
            raise ValueError(
                f"class_weight must map labels to finite, non-negative numbers, not all 0: {weight}"
            )
        return torch.tensor(w, dtype=torch.float32)

    def _loss(self):
        return CrossEntropy(self._weights, float(self.label_smoothing))

    def _split(self, n, rng, y):
        """Stratified hold-out: each class gives its share (at least one series if it has
        more than one)."""
        n_val = round(n * self.validation_size)
        if n_val == 0:
            return rng.permutation(n), np.arange(0)
        val = []
        for code in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == code))
            take = round(len(members) * self.validation_size)
            if len(members) > 1:
                take = min(max(take, 1), len(members) - 1)
            else:
                take = 0
            val.extend(members[:take].tolist())
        val = np.sort(np.array(val, dtype=int))
        train = rng.permutation(np.setdiff1d(np.arange(n), val))
        return train, val

    def _check_targets(self, y) -> None:
        check_labels(y)

    def _fit(self, X, y):
        codes = np.array([self._class_dictionary[label] for label in y], dtype=np.int64)
        self._weights = self._class_weights(codes)
        self._fit_network(X, torch.from_numpy(codes), codes)
        return self

    # ------------------------------------------------------------------ prediction
    def _predict_proba(self, X) -> np.ndarray:
        logits = torch.from_numpy(np.stack(self._outputs(X)))
        return torch.softmax(logits, dim=-1).numpy()

    def _predict(self, X) -> np.ndarray:
        return self.classes_[self._predict_proba(X).argmax(axis=1)]

    def predict_proba_prefix(self, X) -> np.ndarray:
        """Class probabilities after every time step, in one parallel pass.

        Parameters
        ----------
        X : sktime Panel (numpy3D, pd-multiindex, df-list, ...), possibly ragged

        Returns
        -------
        np.ndarray, shape (n_instances, max_length, n_classes)
            ``[i, t]``: the probabilities given the first ``t + 1`` steps of series ``i``;
            NaN where ``t`` is past the series' end.
        """
        self.check_is_fitted()
        X = self._check_convert_X_for_predict(X)
        if len(self._class_dictionary) == 1:
            series = panel_arrays(X)
            longest = max(len(s) for s in series)
            out = np.full((len(series), longest, 1), np.nan)
            for i, s in enumerate(series):
                out[i, : len(s)] = 1.0
            return out
        logits = torch.from_numpy(self._prefix_outputs(X))
        return torch.softmax(logits, dim=-1).numpy()  # NaN rows stay NaN

    def start_stream(self, n_streams: int = 1) -> ClassifierStream:
        """A ``ClassifierStream`` for ``n_streams`` live series (see the class Notes)."""
        return self._start_stream(n_streams, ClassifierStream)

    def _decorate_stream(self, stream: PanelStream) -> None:
        stream.classes_ = self.classes_

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
                "class_weight": "balanced",
                "random_state": 0,
            },
        ]
