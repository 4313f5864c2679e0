"""What ``AarenClassifier`` and ``AarenRegressor`` share: input conversion and checks, the
network's construction and training, sklearn compatibility, and the live-series stream.

Ragged panels arrive as ``df-list`` (or ``pd-multiindex``); every series becomes a
``(T_i, C)`` array and is read out at its own last step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from ._atomic import restored_on_error
from ._distributed import check_devices, train_network
from ._panel_net import (
    READOUTS,
    PanelData,
    PanelEnsemble,
    PanelNet,
    check_positional,
    predict_outputs,
    train_panel,
)
from ._params import (
    NETWORK,
    PLACEMENT,
    TRAINING,
    Bool,
    Int,
    InvalidParameterError,
    KernelSizes,
    Options,
    Real,
    check_network_params,
    resolve_device,
)
from ._persistence import PersistenceMixin
from ._portable import PortableStateMixin
from ._sizes import check_network_size, check_stream_count
from ._threads import threaded
from ._values import (
    check_finite_outputs,
    check_float32,
    check_real_dtype,
    real_values,
    standardisation,
)

# sklearn >= 1.9 stores these on the estimator during GridSearchCV / cross_val_score;
# sktime's reset() (called by fit) would delete them.
_SKLEARN_ATTRIBUTES = ("_parent_callback_ctx", "_skl_callbacks")

# the panel layouts fit and predict work on; sktime converts anything else to the first,
# which must hold series of unequal length (numpy3D first turned sktime's nested layout of
# unequal series into numpy's "all input arrays must have the same shape")
PANEL_MTYPES = ["pd-multiindex", "numpy3D", "df-list"]

# positional="auto" turns the position code on for univariate series of at most this many
# steps (the longest fitted series counts). Chosen on validation folds of the training
# splits: the code lifts ArrowHead (251 steps) and GunPoint (150), ties UnitTest and
# ItalyPowerDemand (24), and lowers OSULeaf (427 steps: 0.715 to 0.595); the folds put the
# line between 251 and 427 steps (benchmarks/RESULTS.md, issue 17)
AUTO_POSITIONAL_MAX_STEPS = 300
# the most networks an ensemble may average (each one is a whole fit)
MAX_NETWORKS = 100


def panel_arrays(X: Any) -> list[np.ndarray]:
    """A panel in one of ``PANEL_MTYPES`` -> list of ``(T_i, C)`` float64 arrays (complex,
    boolean and non-numeric values refused by name)."""
    if isinstance(X, np.ndarray):
        return [real_values(x, "X").T for x in X]
    if isinstance(X, pd.DataFrame):  # pd-multiindex: one frame, its columns' dtypes
        dtypes = list(X.dtypes)
        frames = [frame.to_numpy() for _, frame in X.groupby(level=0, sort=False)]
    else:  # df-list
        dtypes = [dtype for frame in X for dtype in frame.dtypes]
        frames = [frame.to_numpy() for frame in X]
    for dtype in dtypes:
        check_real_dtype(dtype, "X")
    return [real_values(frame, "X") for frame in frames]


def check_panel(series: list[np.ndarray], n_channels: int | None, name: str) -> None:
    """Named errors for empty series, non-finite values, series with different channel
    counts and a channel count other than fit's."""
    for i, s in enumerate(series):
        if n_channels is None and s.shape[1] != series[0].shape[1]:
            raise ValueError(
                f"series {i} of X has {s.shape[1]} channels but series 0 has "
                f"{series[0].shape[1]}: every series needs the same channels"
            )
        if s.shape[0] == 0:
            raise ValueError(f"series {i} of X is empty: every series needs at least one step")
        if not np.isfinite(s).all():
            raise ValueError(
                f"series {i} of X contains NaN or inf values; {name} needs finite data"
            )
        if n_channels is not None and s.shape[1] != n_channels:
            raise ValueError(
                f"X has {s.shape[1]} channels but {name} was fitted on {n_channels}; "
                "predict needs the channels fit saw"
            )


class PanelStream(PortableStateMixin):
    """Live series read one observation at a time, each in O(1) (Aaren, GRU).

    Made by the estimator's ``start_stream``; it holds the fitted network and the streams'
    state (nothing is stored on the estimator), so many streams can run side by side.
    ``update`` takes the next observation of every stream; after ``t`` updates the
    predictions equal those of the estimator on the first ``t`` steps of the series.
    """

    def __init__(self, net: PanelNet, mean, std, n_streams: int, device, name: str) -> None:
        self._net = net
        self._mean = mean
        self._std = std
        self._device = device
        self._name = name
        self.n_streams = n_streams
        self.n_channels = len(mean)
        self.n_steps = 0
        self._state = net.init_state(n_streams, device)
        self._output: np.ndarray | None = None

    def update(self, x_t) -> PanelStream:
        """Absorb the next observation: ``(n_channels,)`` for one stream, or
        ``(n_streams, n_channels)``. Returns the stream itself."""
        x = real_values(x_t, "x_t")
        if x.ndim == 1:
            x = x[None, :]
        if x.shape != (self.n_streams, self.n_channels):
            raise ValueError(
                f"x_t must have shape ({self.n_streams}, {self.n_channels}) "
                f"(n_streams, n_channels), got {np.shape(x_t)}"
            )
        if not np.isfinite(x).all():
            raise ValueError(f"x_t contains NaN or inf values; {self._name} needs finite data")
        scaled = (x - self._mean) / self._std
        check_float32(scaled, "x_t")
        scaled = torch.tensor(scaled, dtype=torch.float32)
        with torch.no_grad():
            out, state = self._net.step(scaled.to(self._device), self._state)
        output = out.double().cpu().numpy()
        check_finite_outputs(list(output), "x_t", "stream")  # before anything is kept
        self._state, self._output = state, output
        self.n_steps += 1
        return self

    def _last(self) -> np.ndarray:
        if self._output is None:
            raise ValueError("the stream has seen no observation yet: call update(x_t) first")
        return self._output


def _mean_per_epoch(histories: list[list[float]]) -> list[float]:
    """An ensemble's loss per epoch: the mean over the members that trained that epoch (early
    stopping may end members at different epochs)."""
    longest = max(len(h) for h in histories)
    return [float(np.mean([h[e] for h in histories if len(h) > e])) for e in range(longest)]


class AarenPanelMixin(PersistenceMixin):
    """Shared implementation; the classes define ``_n_outputs``, ``_targets``, ``_loss``."""

    _network_name = "AarenPanel"

    # ------------------------------------------------------------------ sklearn compatibility
    def reset(self):
        """sktime's reset, keeping the attributes sklearn >= 1.9 sets during a search."""
        kept = {k: self.__dict__[k] for k in _SKLEARN_ATTRIBUTES if k in self.__dict__}
        super().reset()
        self.__dict__.update(kept)
        return self

    def fit(self, X, y):
        """Fit to a panel ``X`` and targets ``y`` (see sktime's ``fit``).

        Atomic: if fit raises, the estimator is left exactly as it was before the call.
        """
        with restored_on_error(self):
            self._check_params()  # before sktime converts and checks the data
            self._check_targets(y)
            return super().fit(X, y)

    # ------------------------------------------------------------------ checks
    # what each parameter may be (checked at fit, before any state changes); the classes
    # add their own
    _constraints: ClassVar[dict] = {
        **NETWORK,
        **TRAINING,
        **PLACEMENT,
        "kernel_size": KernelSizes(),
        "readout": Options(*READOUTS),
        "positional": (Bool(), Options("auto")),
        "prefix_loss": Real(0.0, 1.0),
        "weight_decay": Real(0.0),
        "n_networks": Int(1, MAX_NETWORKS),
    }

    def _check_params(self) -> None:
        check_network_params(self, self._constraints)
        sizes = self.kernel_size
        if isinstance(sizes, (tuple, list)) and len(sizes) > self.d_model:
            raise InvalidParameterError(
                f"{type(self).__name__}: kernel_size={tuple(sizes)} asks for {len(sizes)} "
                f"convolutions, more than d_model={self.d_model} embedding channels to share"
            )
        if self.recency and self.backbone != "aaren":
            raise ValueError(f"recency=True applies to the aaren backbone, not {self.backbone!r}")
        check_positional(self.positional, self.backbone)

    def _positional(self, longest: int) -> bool:
        """``positional`` for this fit (``n_channels_`` known, ``longest`` the most steps of
        a fitted series): "auto" is on for univariate series of at most
        ``AUTO_POSITIONAL_MAX_STEPS`` steps with the aaren or gru backbone (the transformer
        adds its own code)."""
        if isinstance(self.positional, str):  # "auto" (the only string the check lets in)
            return (
                self.backbone != "transformer"
                and self.n_channels_ == 1
                and longest <= AUTO_POSITIONAL_MAX_STEPS
            )
        return bool(self.positional)

    def _series(self, X, fitted: bool) -> list[np.ndarray]:
        series = panel_arrays(X)
        name = type(self).__name__
        check_panel(series, self.n_channels_ if fitted else None, name)
        if not fitted:
            return series
        scaled = [(s - self.mean_) / self.std_ for s in series]
        for i, s in enumerate(scaled):
            check_float32(s, f"series {i} of X")
        return scaled

    # ------------------------------------------------------------------ training
    def _split(self, n: int, rng: np.random.RandomState, y) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the training and validation series (no validation: all train)."""
        n_val = round(n * self.validation_size)
        order = rng.permutation(n)
        if n_val == 0 or n - n_val < 1:
            return order, order[:0]
        return order[n_val:], order[:n_val]

    # max_epochs="auto" (where a class allows it): this many epochs, or more when the
    # training series make so few batches that they would take fewer than min_steps
    # optimiser steps (a set of 30 series makes one batch of 32 per epoch)
    _AUTO_EPOCHS = 200

    def _epochs(self, n_train: int) -> int:
        """The most epochs of this fit (``max_epochs``, or its ``"auto"`` rule)."""
        if self.max_epochs != "auto":
            return int(self.max_epochs)
        batches = -(-n_train // self.batch_size)
        return max(self._AUTO_EPOCHS, -(-int(self.min_steps) // batches))

    def _progress(
        self, epochs: int, member: str = ""
    ) -> tuple[Callable | None, Callable[[], None]]:
        """Per-epoch reporting for ``verbose=True``: a tqdm bar when tqdm is installed (one
        per network of an ensemble, ``member`` naming it)."""
        if not self.verbose:
            return None, lambda: None
        name = f"{type(self).__name__} ({self.backbone}){member}"
        try:
            from tqdm.auto import tqdm
        except ImportError:

            def report_print(epoch: int, loss: float, val: float | None) -> None:
                extra = "" if val is None else f", validation {val:.4f}"
                print(f"{name} epoch {epoch + 1}/{epochs}: loss {loss:.4f}{extra}")

            return report_print, lambda: None
        bar = tqdm(total=epochs, desc=name, unit="epoch")

        def report(epoch: int, loss: float, val: float | None) -> None:
            bar.update(1)
            post = {"loss": f"{loss:.4f}"}
            if val is not None:
                post["val"] = f"{val:.4f}"
            bar.set_postfix(post)

        return report, bar.close

    # how an ensemble's members are read as one ("probabilities" or "mean"): the class's
    _ensemble_combine = "mean"

    def _member_seeds(self) -> list[int | None]:
        """Member ``i``'s seed: ``random_state * n_networks + i`` (mod 2**32), the seed of
        the network a plain fit with that ``random_state`` trains, so the members of
        different seeds never coincide and ``n_networks=1`` is the single network of
        ``random_state``; None without a seed."""
        n = int(self.n_networks)
        if self.random_state is None:
            return [None] * n
        return [(int(self.random_state) * n + i) % 2**32 for i in range(n)]

    @threaded  # the torch work of fit, predict and the prefix predictions
    def _fit_network(self, X, targets: torch.Tensor, y_for_split) -> None:
        loss = self._loss()  # checks the loss's parameters before any work
        series = self._series(X, fitted=False)
        self._device = resolve_device(self.device)
        processes = check_devices(self.devices, self.strategy, self._device)
        stacked = np.concatenate(series)
        self.n_channels_ = stacked.shape[1]
        self.mean_, self.std_, _ = standardisation(stacked, "X")
        series = [(s - self.mean_) / self.std_ for s in series]
        n_networks = int(self.n_networks)
        net_kwargs = {
            "n_channels": self.n_channels_,
            "n_outputs": self._n_outputs(),
            "backbone": self.backbone,
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "dropout": self.dropout,
            "kernel_size": self.kernel_size,
            "recency": self.recency,
            "readout": self.readout,
            "positional": self._positional(max(len(s) for s in series)),
        }
        sizes = {"d_model": self.d_model, "n_layers": self.n_layers,
                 "kernel_size": self.kernel_size, "n_networks": n_networks}  # fmt: skip
        # the whole ensemble's size checked before any member is built
        check_network_size(
            lambda: PanelEnsemble(n_networks, self._ensemble_combine, **net_kwargs),
            type(self).__name__,
            sizes,
        )
        members, histories = [], []
        for i, seed in enumerate(self._member_seeds()):
            net, history = self._fit_member(
                series, targets, y_for_split, net_kwargs, seed, processes, loss, i
            )
            members.append(net)
            histories.append(history)
        # one network stays a plain PanelNet; an ensemble is left in eval mode, as each
        # trained member is (a predict must not change the pickle)
        self.network_ = (
            members[0]
            if n_networks == 1
            else PanelEnsemble.of(members, self._ensemble_combine).eval()
        )
        # one network's own losses (the mean of one value is that value)
        self.loss_history_ = _mean_per_epoch([h[0] for h in histories])
        self.validation_history_ = _mean_per_epoch([h[1] for h in histories])
        self.n_epochs_ = len(self.loss_history_)

    def _fit_member(self, series, targets, y_for_split, net_kwargs, seed, processes, loss, index):
        """Build and train one network with its own seed (``seed`` None: unseeded, as a
        fit without ``random_state``); returns it and its (training, validation) losses."""
        rng = np.random.RandomState(seed)
        train, val = self._split(len(series), rng, y_for_split)
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch.seed() if seed is None else seed)
            net = PanelNet(**net_kwargs).to(self._device)
            validation = None
            if len(val):
                validation = ([series[i] for i in val], targets[torch.as_tensor(val)])
            data = PanelData(
                [series[i] for i in train], targets[torch.as_tensor(train)], loss, validation
            )
            epochs = self._epochs(len(train))
            fit_kwargs = {
                "max_epochs": epochs,
                "batch_size": self.batch_size,
                "lr": self.lr,
                "weight_decay": self.weight_decay,
                "patience": self.patience,
                "prefix_loss": self.prefix_loss,
            }
            member = f" {index + 1}/{self.n_networks}" if self.n_networks > 1 else ""
            history, self.world_size_ = train_network(
                net,
                data,
                processes=processes,
                strategy=self.strategy,
                device=self._device,
                generator=generator,
                verbose=self.verbose,
                progress=functools.partial(self._progress, epochs, member),
                train=train_panel,
                **fit_kwargs,
            )
        return net, history

    # ------------------------------------------------------------------ prediction
    @threaded
    def _outputs(self, X, every_step: bool = False) -> list[np.ndarray]:
        outputs = predict_outputs(
            self.network_, self._series(X, True), self._device, every_step=every_step
        )
        check_finite_outputs(outputs, "X")
        return outputs

    @threaded
    def _prefix_outputs(self, X) -> np.ndarray:
        """``(n_instances, T_max, K)`` outputs after every step, NaN after a series ends."""
        outputs = self._outputs(X, every_step=True)
        longest = max(len(o) for o in outputs)
        out = np.full((len(outputs), longest, outputs[0].shape[1]), np.nan)
        for i, o in enumerate(outputs):
            out[i, : len(o)] = o
        return out

    def _start_stream(self, n_streams: int, cls: type[PanelStream]) -> PanelStream:
        self.check_is_fitted()
        if isinstance(n_streams, bool) or not isinstance(n_streams, (int, np.integer)):
            raise TypeError(f"n_streams must be an int, got {n_streams!r}")
        if n_streams < 1:
            raise ValueError(f"n_streams must be >= 1, got {n_streams}")
        if getattr(self, "network_", None) is None:
            raise ValueError(
                f"{type(self).__name__} was fitted without a network (a single label): "
                "there is nothing to stream"
            )
        check_stream_count(self.network_, int(n_streams), type(self).__name__)
        stream = cls(
            self.network_, self.mean_, self.std_, int(n_streams), self._device, type(self).__name__
        )
        self._decorate_stream(stream)
        return stream

    def _decorate_stream(self, stream: PanelStream) -> None:
        """Hook for the subclass to hand the stream what it needs to read its outputs."""

    @staticmethod
    def _sklearn_tags(estimator_type: str):
        from sklearn.utils import ClassifierTags, RegressorTags, Tags, TargetTags

        return Tags(
            estimator_type=estimator_type,
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags() if estimator_type == "classifier" else None,
            regressor_tags=RegressorTags() if estimator_type == "regressor" else None,
        )
