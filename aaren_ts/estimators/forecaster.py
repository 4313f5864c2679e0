"""AarenForecaster: an sktime forecaster whose whole history lives in a constant-size state.

It fits one global network across every series of a panel. It forecasts every step up to
``max_horizon`` at once, from a multi-horizon quantile head, and ``update`` reads new
observations through the recurrent state: O(1) time and memory per observation, no
re-encoding, no retraining. Every step is read in the units of its trailing
``local_window`` observations (causal per-window normalisation), so the forecasts follow
level and scale shifts. A windowed mode (``context_length``) reads only the last L
observations, normalised per window, as the Time-Series-Library benchmarks do.
"""

from __future__ import annotations

import copy
import datetime
import functools
import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from sktime.forecasting.base import BaseForecaster, ForecastingHorizon

from .._checks import boolean
from ._atomic import atomic
from ._distributed import check_devices, train_network
from ._forecast_net import (
    ForecastNet,
    future_targets,
    pinball_loss,
    window_forecast,
)
from ._forecast_training import SeriesData, WindowData, in_row_units, quantile_shifts
from ._interval_tracking import record_many, stacked_shifts, start_tracking
from ._optim import adam
from ._params import (
    FRACTION,
    NETWORK,
    OPTIONAL_POSITIVE_INT,
    PLACEMENT,
    POSITIVE_INT,
    TRAINING,
    Bool,
    Int,
    InvalidParameterError,
    Options,
    Real,
    check_network_params,
    resolve_device,
)
from ._persistence import PersistenceMixin
from ._sizes import checked_build
from ._stream_net import StreamNet, batched_state, split_state
from ._stream_table import StreamTable
from ._table_update import plain_table_update
from ._threads import threaded
from ._time_index import (
    GridClock,
    check_continues,
    check_horizon_on_grid,
    check_kind,
    check_overlap,
    horizon_labels,
    panel_grid,
    relative_steps,
    tail,
)
from ._values import check_float32, check_real_columns, standardisation

QUANTILE_LEVEL = Real(0.0, 1.0, open={"low", "high"})

# An epoch reads the training data once, or again until it has made this many optimiser
# steps: a short series is one chunk (full history) or a few batches of windows, and would
# otherwise train a handful of steps in max_epochs epochs.
MIN_STEPS_PER_EPOCH = 50
# local_window="auto": max(2 * horizon, shortest series // 20), at most this many rows
# (chosen on validation splits: benchmarks/RESULTS.md)
LOCAL_WINDOW_MAX = 336


def _standardisation(frame: pd.DataFrame, name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation (1 for a constant column; see
    ``_values.standardisation``)."""
    mean, std, _ = standardisation(frame.to_numpy(dtype=np.float64), name)
    return mean, std


_FIRST = np.zeros(1, dtype=np.int64)  # the first (only) series' row
_FIRST.setflags(write=False)


def _interp_level(values: np.ndarray, learned: np.ndarray, level: float) -> np.ndarray:
    """``np.interp(level, learned, row)`` for every row of ``values`` (last axis: the learned
    quantile levels, increasing), as array operations; a learned level is read exactly."""
    exact = np.flatnonzero(learned == level)
    if len(exact):
        return values[..., exact[0]]
    j = int(np.clip(np.searchsorted(learned, level, side="right") - 1, 0, len(learned) - 2))
    slope = (values[..., j + 1] - values[..., j]) / (learned[j + 1] - learned[j])
    return slope * (level - learned[j]) + values[..., j]


def _joined(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat`` along the batch, without a copy for a single tensor (a long history
    read in fit)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def _stream(kept: dict, forecast: torch.Tensor, centre, scale, last) -> dict:
    """A stream's stored record after reading rows up to ``last``."""
    return {
        **kept,
        "forecast": forecast.cpu(),  # (H, C, Q), network units
        "centre": centre,  # network units -> scaled units: * scale + centre
        "scale": scale,
        "last": last,
    }


def _split_instances(y: pd.DataFrame) -> list[tuple[Any, pd.DataFrame]]:
    """``[(instance key, single-series frame)]``; the key is None for a plain series."""
    if not isinstance(y.index, pd.MultiIndex):
        return [(None, y)]
    levels = list(range(y.index.nlevels - 1))
    return [(key, frame.droplevel(levels)) for key, frame in y.groupby(level=levels, sort=False)]


def _absolute_times(fh) -> pd.Index | None:
    """The times an absolute forecasting horizon names (timestamps or periods); None for
    steps ahead, None, or anything sktime's own checks should see first."""
    if isinstance(fh, ForecastingHorizon):
        return None if fh.is_relative else fh.to_pandas()
    if isinstance(fh, np.ndarray) and fh.dtype.kind == "M":
        return pd.DatetimeIndex(fh)
    if isinstance(fh, (list, tuple)) and len(fh):
        # a stream asks for steps (a list of ints) after every observation: only a list of
        # times is converted (pd.Index of any list costs tens of microseconds)
        if not isinstance(fh[0], (pd.Timestamp, pd.Period, np.datetime64, datetime.datetime)):
            return None
        try:
            fh = pd.Index(fh)
        except (TypeError, ValueError):
            return None
    return fh if isinstance(fh, (pd.DatetimeIndex, pd.PeriodIndex)) else None


def _x_levels_checked(method):
    """``method(self, y, X, ...)`` after checking that ``X`` is indexed like ``y``: a panel's
    ``X`` with a flat index reached a pandas internal ("Buffer dtype mismatch")."""

    @functools.wraps(method)
    def wrapper(self, y, X=None, *args, **kwargs):
        if (
            isinstance(X, (pd.DataFrame, pd.Series))
            and isinstance(y, (pd.DataFrame, pd.Series))
            and X.index.nlevels != y.index.nlevels
        ):
            raise ValueError(
                f"X's index has {X.index.nlevels} level(s) but y's has {y.index.nlevels}: "
                "index X like y (for a panel, the series id levels and then time)"
            )
        return method(self, y, X, *args, **kwargs)

    return wrapper


def _grid_checked(method):
    """``method(self, fh, ...)`` after ``self._check_fh_on_grid(fh)``."""

    @functools.wraps(method)
    def wrapper(self, fh=None, *args, **kwargs):
        self._check_fh_on_grid(fh)
        return method(self, fh, *args, **kwargs)

    return wrapper


class AarenForecaster(PersistenceMixin, BaseForecaster):
    """Global deep forecaster on an Aaren (or Transformer, or GRU) backbone, streaming updates.

    Full-history mode (the default): at every time step the mean and standard deviation of
    the last ``local_window`` observations are the local units. The step's token carries its
    last ``n_lags`` values in those units (with the local scale and the mean's recent move);
    the backbone reads the tokens of the whole history causally, and a head plus a linear
    map of the last ``local_window`` values emit quantile forecasts of steps
    ``1..max_horizon`` from the last value, in the local scale. Training reads each series in
    consecutive chunks and carries the detached state, so that training matches inference.
    ``update`` feeds only the observations after the last one consumed through the
    recurrence, keeping the last ``local_window`` rows (constant memory): the forecast after
    any sequence of updates equals one pass over the full history with the same weights.

    Parameters
    ----------
    backbone : {"aaren", "transformer", "gru"}, default "aaren"
        Sequence model; everything else is identical across backbones.
    max_horizon : int, optional
        Largest forecast step. Default: the largest step of ``fh`` given to ``fit`` (1 if none).
    context_length : int, optional
        None (default): the whole history lives in the recurrent state; training reads each
        series in consecutive chunks carrying the detached state, scaled with statistics of
        the training data. An int L: each forecast reads only the last L observations,
        normalised per window and channel (mean and standard deviation of the window), and
        a linear map of the window is added to the head's output. ``update`` then keeps the
        last L observations (still constant memory) and re-reads them.
    local_window : int, "auto" or None, default "auto"
        Full-history mode: the trailing observations whose mean and standard deviation are
        each step's units (a causal, streaming form of per-window normalisation), and the
        length of the linear path from the most recent values to the forecast. "auto":
        ``min(336, max(2 * max_horizon, n // 20))`` for the shortest series of ``n``
        observations in fit (chosen on validation splits, ``benchmarks/RESULTS.md``). None: the
        training statistics only, no linear path (level shifts after fit stay in the
        inputs). A stream keeps this many rows, whatever its length.
    channel_independent : bool, default False
        Treat each channel of a multivariate series as its own univariate sequence (shared
        weights, one state per channel), as PatchTST/DLinear do on the long-horizon
        benchmarks. False: one sequence whose steps carry every channel.
    n_lags : int, default 4
        Values each token carries: its step's and the ``n_lags - 1`` before it.
    token_stride : int, default 1
        Windowed mode only: the backbone reads every ``token_stride``-th token of the window,
        counted back from its last step. With ``n_lags >= token_stride`` the tokens are
        overlapping patches (PatchTST's patch 16, stride 8 is ``n_lags=16, token_stride=8``):
        ``context_length / token_stride`` tokens instead of ``context_length``, cheaper and,
        on ETTh1, more accurate (``benchmarks/RESULTS.md``).
    d_model, n_layers, n_heads : int, default 32, 2, 4
        Backbone size.
    dropout : float, default 0.0
    quantiles : tuple of float, default (0.025, 0.1, 0.5, 0.9, 0.975)
        Levels the head learns; must contain 0.5 (the point forecast). Other levels are
        interpolated linearly between the learned ones; a level outside the lowest and
        highest learned one (e.g. a 99.9% interval) is a ``ValueError``, not a clamp.
    max_epochs : int, default 20
        An epoch reads the training data once, or several times when once is fewer than 50
        optimiser steps (a short series is a single chunk, or a few batches of windows).
    max_steps : int, optional
        Most optimiser steps (None: ``max_epochs`` decides alone).
    batch_size : int, default 64
        Windows (windowed mode) or sequences (full history) per optimiser step.
    windows_per_epoch : int, optional
        Windowed mode: train each epoch on this many windows drawn at random (a fresh draw
        every epoch) instead of all of them, to bound the cost of an epoch on long series.
    chunk_length : int, default 256
        Steps per truncated-backpropagation chunk (full-history mode); each pass over the
        data starts with a chunk of random length, so that chunk borders move.
    recency : bool, default True
        Full-history mode, Aaren backbone: a learnable recency rate per attention head,
        initialised at several time scales (whole history, about 1000, 100 and 10 steps),
        so that some heads read the recent past and others the long past. O(1) per step.
    lr : float, default 1e-3
    validation_size : float, default 0.0
        Fraction of each series' tail held out for early stopping and calibration (0: train
        on everything for ``max_epochs``). The best epoch's weights are kept; the untrained
        weights are a candidate too. In full-history mode epochs are compared on the
        median's loss (the point forecast), and the untrained network is the naive
        last-value forecast, which training then has to beat on the tail.
    patience : int, default 5
        Epochs without validation improvement before training stops.
    calibrate : bool, default True
        With a validation tail: shift each learned quantile, per horizon step, so that its
        coverage of the tail's observations equals its level (split-conformal
        recalibration). Intervals then hold their nominal coverage on data like the tail.
        Full-history mode: every quantile but the median (the point forecast stays the
        network's), and streams keep re-calibrating (``calibration_rate``).
    calibration_rate : float, default 0.02
        Full-history mode: how fast a stream re-calibrates its intervals from the outcomes
        it sees. When a row arrives, the forecasts made for it earlier are settled, and each
        quantile's shift (except the median's) moves by ``calibration_rate`` times the
        interval's width towards its nominal coverage (online quantile tracking, as in
        adaptive conformal inference). 0: keep the shifts fitted on the validation tail.
    update_steps : int, default 5
        With ``update(..., update_params=True)``: Adam steps (at ``lr``) on the new rows,
        read from each series' stored state, before the state advances with the new weights.
        0 only advances the state, as ``update_params=False`` does.
    device : str, default "auto"
        "auto" picks CUDA when present; "cuda" without a device is an error.
    devices : int or "auto", default 1
        Devices that train the network together, one process each (data parallel): with a
        CUDA ``device``, that many GPUs (more than are visible is an error; "auto": all of
        them); on CPU, that many processes. 1: train in this process.
    strategy : {"auto", "ddp"}, default "auto"
        "auto": data parallel when ``devices`` > 1. "ddp": torch ``DistributedDataParallel``
        also when this process is a rank of a group launched by ``torchrun`` (then the group
        is used: one process per GPU, over one node or several). Each global batch of
        ``batch_size`` is split across the ranks and the loss is weighted so that the
        averaged gradient is the single-process one: with the same seed the fit matches
        ``devices=1`` up to floating-point sums (with ``dropout`` > 0, in distribution).
    n_threads : int, optional
        CPU threads for torch inside this estimator's calls (torch's setting is restored
        after each). None: one thread for networks up to ``d_model=128`` and inside parallel
        workers (loky, dask, ray), where more threads only oversubscribe the cores; wider
        networks keep torch's setting. -1: torch's setting; an int: that many.
    random_state : int, optional
        Seed: two fits with the same seed give identical forecasts on CPU (with the same
        number of torch threads: floating-point sums depend on it).
    verbose : bool, default False
        Show training progress and loss per epoch (a tqdm bar when tqdm is installed).

    Attributes
    ----------
    world_size_ : int
        Processes that trained the network (1 without data parallelism).

    Notes
    -----
    Which mode: on the long-horizon benchmarks (ETTh1 at four horizons, ETTm1, weather,
    exchange_rate, ILI at H=24 and 36) the full-history mode was the more accurate at the
    same budget; the windowed mode was on ILI forecast 48 and 60 weeks ahead (a short
    weekly series, ``benchmarks/RESULTS.md``). Full history reads every level in local
    units, so a series with no memory around a fixed level is forecast near its recent
    local level, not the training mean: ``local_window=None`` keeps the training statistics.

    A column that is constant in the data given to ``fit`` is forecast as that constant
    (intervals of zero width): the data hold no scale for the network to learn.

    Exogenous ``X`` enters twice: its past values are part of every step's input, and its
    values at the forecast times, when ``predict`` is given them, add a per-step linear term
    (known-future covariates such as calendars or planned prices). Training hides the future
    values of half its sequences, so forecasts stay sound when predict has no ``X``.

    Multi-device training: on one machine with four GPUs,
    ``AarenForecaster(device="cuda", devices=4, strategy="ddp")`` spawns four processes
    (NCCL, one GPU each) inside ``fit``; ``devices=2`` on CPU spawns two (gloo). The ranks
    are forked from a forkserver that imports torch and this package once per session
    (``spawn`` where the platform has no forkserver): a script that calls ``fit`` needs the
    ``if __name__ == "__main__":`` guard, and this package must import in a fresh
    interpreter. Over several nodes, start the same script on every node with ``torchrun
    --nnodes=N --nproc-per-node=G --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT
    --rdzv-id=JOB script.py``: every rank loads the same data and calls ``fit`` with
    ``device="cuda", strategy="ddp"`` (``devices`` is then the launched group's), joins the
    group and trains its shard; every rank ends with the same weights (save or predict on
    rank 0).

    Examples
    --------
    >>> from sktime.datasets import load_airline
    >>> from aaren_ts.estimators import AarenForecaster
    >>> y = load_airline()
    >>> forecaster = AarenForecaster(max_epochs=2, d_model=8, random_state=0)
    >>> forecaster.fit(y, fh=[1, 2, 3])
    AarenForecaster(...)
    >>> y_pred = forecaster.predict()
    >>> intervals = forecaster.predict_interval(coverage=0.8)
    """

    _tags = {  # noqa: RUF012 (sktime's convention: a class-level dict)
        # packaging
        "authors": ["aaren_ts developers"],
        "python_dependencies": "torch",
        # what y and X can be: single series, panels and hierarchies, one global model
        "y_inner_mtype": ["pd.DataFrame", "pd-multiindex", "pd_multiindex_hier"],
        "X_inner_mtype": ["pd.DataFrame", "pd-multiindex", "pd_multiindex_hier"],
        "capability:multivariate": True,
        "capability:exogenous": True,  # past X in every step, future X when predict has it
        "capability:missing_values": False,
        # forecasting
        "requires-fh-in-fit": False,
        "capability:insample": False,
        "capability:pred_int": True,
        "capability:pred_int:insample": False,
        "capability:update": True,
        # seeding: same random_state, same forecasts
        "capability:random_state": True,
        "property:randomness": "derandomized",
    }
    # Constant-memory streaming: sktime must not append every update to self._y.
    _config = {"remember_data": False}  # noqa: RUF012
    _y = None
    _X = None

    def __init__(
        self,
        backbone: str = "aaren",
        max_horizon: int | None = None,
        context_length: int | None = None,
        local_window: int | str | None = "auto",
        channel_independent: bool = False,
        n_lags: int = 4,
        token_stride: int = 1,
        d_model: int = 32,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
        quantiles: tuple[float, ...] = (0.025, 0.1, 0.5, 0.9, 0.975),
        max_epochs: int = 20,
        max_steps: int | None = None,
        batch_size: int = 64,
        windows_per_epoch: int | None = None,
        chunk_length: int = 256,
        recency: bool = True,
        lr: float = 1e-3,
        validation_size: float = 0.0,
        patience: int = 5,
        calibrate: bool = True,
        calibration_rate: float = 0.02,
        update_steps: int = 5,
        device: str = "auto",
        devices: int | str = 1,
        strategy: str = "auto",
        n_threads: int | None = None,
        random_state: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.backbone = backbone
        self.max_horizon = max_horizon
        self.context_length = context_length
        self.local_window = local_window
        self.channel_independent = channel_independent
        self.n_lags = n_lags
        self.token_stride = token_stride
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.dropout = dropout
        self.quantiles = quantiles
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.windows_per_epoch = windows_per_epoch
        self.chunk_length = chunk_length
        self.recency = recency
        self.lr = lr
        self.validation_size = validation_size
        self.patience = patience
        self.calibrate = calibrate
        self.calibration_rate = calibration_rate
        self.update_steps = update_steps
        self.device = device
        self.devices = devices
        self.strategy = strategy
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        super().__init__()

    # ------------------------------------------------------------------ checks
    def _horizon(self, fh) -> int:
        if self.max_horizon is not None:
            if not isinstance(self.max_horizon, (int, np.integer)) or self.max_horizon < 1:
                raise ValueError(f"max_horizon must be a positive int, got {self.max_horizon!r}")
            return int(self.max_horizon)
        if fh is None:
            return 1
        steps = fh.to_relative(self.cutoff).to_numpy()
        return int(max(1, steps.max()))

    # what each parameter may be (checked at fit, before any state changes)
    _constraints: ClassVar[dict] = {
        **NETWORK,
        **TRAINING,
        **PLACEMENT,
        "max_horizon": OPTIONAL_POSITIVE_INT,
        "context_length": (Options(None), Int(2)),
        "local_window": (Options("auto", None), Int(2)),
        "channel_independent": Bool(),
        "n_lags": POSITIVE_INT,
        "token_stride": POSITIVE_INT,
        "max_steps": OPTIONAL_POSITIVE_INT,
        "windows_per_epoch": OPTIONAL_POSITIVE_INT,
        "chunk_length": POSITIVE_INT,
        "calibrate": Bool(),
        "calibration_rate": FRACTION,
        "update_steps": Int(0),
    }

    def _check_params(self) -> None:
        check_network_params(self, self._constraints)
        qs = self.quantiles
        levels = list(qs) if isinstance(qs, (tuple, list)) else None
        if (
            levels is None
            or not all(QUANTILE_LEVEL.accepts(q) for q in levels)
            or 0.5 not in levels
            or levels != sorted(set(levels))
        ):
            raise InvalidParameterError(
                "AarenForecaster: quantiles must be a tuple of increasing levels in (0, 1) "
                f"that includes 0.5, got {self.quantiles!r}"
            )
        if self.context_length is None and self.token_stride != 1:
            raise InvalidParameterError(
                "AarenForecaster: token_stride applies to the windowed mode (set "
                "context_length); the full-history mode reads every step"
            )

    def _resolved_local_window(self, shortest: int, horizon: int) -> int | None:
        """``local_window``, with "auto" resolved for the shortest series of fit."""
        if self.local_window != "auto":
            return None if self.local_window is None else int(self.local_window)
        return int(max(2, min(LOCAL_WINDOW_MAX, max(2 * horizon, shortest // 20))))

    def _min_length(self) -> int:
        """Observations a series needs in fit: one input and one target (context_length
        inputs in the windowed mode)."""
        return 2 if self.context_length is None else int(self.context_length) + 1

    def _validate_y(self, y: pd.DataFrame, min_length: int = 1, instances=None) -> None:
        if len(y) == 0:
            raise ValueError("y is empty: AarenForecaster needs at least one observation")
        check_real_columns(y, "y")
        values = y.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("y contains NaN or inf values; AarenForecaster needs finite data")
        for key, frame in _split_instances(y) if instances is None else instances:
            where = "" if key is None else f" in series {key!r}"
            if not frame.index.is_monotonic_increasing or not frame.index.is_unique:
                raise ValueError(f"y's time index{where} must be increasing and unique")
            if min_length > 1:  # fit: the rows before the validation tail must train
                trained = len(frame) - round(len(frame) * self.validation_size)
                if trained < min_length:
                    need = (
                        "one input and one target"
                        if self.context_length is None
                        else f"context_length={self.context_length} inputs and one target"
                    )
                    tail = " before the validation tail" if self.validation_size else ""
                    raise ValueError(
                        f"y{where} has {trained} observations{tail}, fewer than the "
                        f"{min_length} the model needs ({need})"
                    )

    def _exogenous(self, X, instances) -> dict:
        """Each series' exogenous rows at its target rows (None without exogenous data)."""
        if self.x_columns_ is None:
            return {key: None for key, _ in instances}
        if X is None:
            raise ValueError("X is required: the forecaster was fitted with exogenous data")
        self._check_x(X)
        by_key = dict(_split_instances(X))
        exog = {}
        for key, frame in instances:
            x = by_key.get(key)
            if x is None or not frame.index.isin(x.index).all():
                where = "" if key is None else f" of series {key!r}"
                raise ValueError(f"X must cover every time point of y{where}")
            exog[key] = x.loc[frame.index]
        return exog

    def _check_x(self, X: pd.DataFrame) -> None:
        if list(X.columns) != self.x_columns_:
            raise ValueError(f"X's columns {list(X.columns)} differ from fit's {self.x_columns_}")
        check_real_columns(X, "X")
        if not np.isfinite(X.to_numpy(dtype=np.float64)).all():
            raise ValueError("X contains NaN or inf values; AarenForecaster needs finite data")

    # ------------------------------------------------------------------ features
    def _scaled(self, frame: pd.DataFrame, scaling: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
        mean, std = scaling
        values = (frame.to_numpy(dtype=np.float64) - mean) / std
        check_float32(values, "y" if list(frame.columns) == self.columns_ else "X")
        return torch.tensor(values, dtype=torch.float32).to(self._device)

    def _scaled_rows(self, frames: dict, exog: dict) -> tuple[dict, dict]:
        """Each series' rows and exogenous rows, scaled with its fitted statistics."""
        scaled = {key: self._scaled(frame, self.scaling_[key]) for key, frame in frames.items()}
        xs = {
            key: None if exog[key] is None else self._scaled(exog[key], self.x_scaling_[key])
            for key in frames
        }
        return scaled, xs

    def _window_data(self, values: list, xs: list | None, horizon: int, **kwargs) -> WindowData:
        """Windows of ``values`` in this forecaster's windowed layout; X is both the tokens'
        past covariates and the known-future ones."""
        return WindowData(
            values,
            horizon,
            int(self.context_length),
            self.n_lags,
            self.channel_independent,
            inputs_x=xs,
            futures=xs,
            stride=self.token_stride,
            **kwargs,
        )

    def _layout(
        self, values: torch.Tensor, x: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scaled rows ``(T, C)`` and exogenous rows ``(T, n_x)`` -> the full-history
        network's sequences ``(B_s, T, n_targets)`` and ``(B_s, T, n_x)``: one sequence, or
        one per channel with ``channel_independent`` (each with every exogenous channel)."""
        sequences = self._targets(values)
        if x is not None:
            x = x.unsqueeze(0).expand(sequences.shape[0], -1, -1)
        return sequences, x

    def _targets(self, values: torch.Tensor) -> torch.Tensor:
        """``(T, C)`` -> the network's target layout ``(B_s, T, n_targets)``."""
        return values.T.unsqueeze(-1) if self.channel_independent else values.unsqueeze(0)

    def _last_forecast(self, out: torch.Tensor) -> torch.Tensor:
        """Network output at the last position -> ``(H, C, Q)``."""
        if self.channel_independent:  # (C, H, 1, Q)
            return out[:, :, 0].transpose(0, 1)
        return out[0]

    def _last_units(self, units: torch.Tensor) -> np.ndarray:
        """Local centre or scale ``(B_s, n_targets)`` at the last position -> ``(C,)``."""
        units = units[:, 0] if self.channel_independent else units[0]
        return units.double().cpu().numpy()

    def _encode(self, values, x, stream: dict | None, last, net=None) -> dict:
        """Read new scaled rows ``values`` after ``stream``; return the advanced stream,
        whose last absorbed index is ``last``.

        Full history: the rows go through the recurrence from the stored state. Windowed:
        the stored last ``context_length`` rows are extended and the window re-read.
        """
        net = self.network_ if net is None else net
        with torch.no_grad():
            if self.context_length is None:
                [(kept, forecast, centre, scale)] = self._read_rows(net, [(values, x, stream)])
            else:
                if stream is not None:
                    values = torch.cat([stream["window"], values])
                    x = None if x is None else torch.cat([stream["x_window"], x])
                window = values[-self.context_length :]
                x_window = None if x is None else x[-self.context_length :]
                kept = {"window": window, "x_window": x_window}
                forecast, centre, scale = window_forecast(
                    net,
                    window.unsqueeze(0),
                    self.n_lags,
                    self.channel_independent,
                    None if x_window is None else x_window.unsqueeze(0),
                    stride=self.token_stride,
                )
                forecast = forecast[0]
                centre = centre[0, 0].double().cpu().numpy()
                scale = scale[0, 0].double().cpu().numpy()
        return _stream(kept, forecast, centre, scale, last)

    def _read_rows(self, net, items: list) -> list:
        """Full history: new rows through the network from each stream's state, in chunks
        (a long history's forecasts at every row would not fit in memory), each stream's
        interval record advanced with them (``_interval_tracking``; the rows read in fit
        only fill it, later rows also move its shifts).

        ``items`` = ``[(values, x, stream or None)]``, every one with the same number of
        rows: the network reads them in one batched call per chunk (the backbone's rows are
        independent along the batch; several streams only with a batch-first state, see
        ``_advance``), and each record is advanced with its own slice (a record pools over
        its own series only). Returns per item the kept state and the last row's forecast
        ``(H, C, Q)``, centre and scale ``(C,)``."""
        layouts = [self._layout(values, x) for values, x, _ in items]
        counts = [sequences.shape[0] for sequences, _ in layouts]
        sequences = _joined([sequences for sequences, _ in layouts])
        exog = None if layouts[0][1] is None else _joined([e for _, e in layouts])
        streams = [stream for _, _, stream in items]
        state = batched_state([None if s is None else s["state"] for s in streams])
        trackers = [
            start_tracking(self.quantile_shifts_, n, sequences.shape[2], sequences.device)
            if s is None
            else s["tracker"]
            for s, n in zip(streams, counts, strict=True)
        ]
        rate = float(self.calibration_rate)
        step = self._read_chunk()
        for start in range(0, sequences.shape[1], step):
            part = slice(start, start + step)
            out, centre, scale, state = net(
                sequences[:, part], state, None if exog is None else exog[:, part]
            )
            # the rows read in fit only fill the records; later rows also move the shifts
            # (a call reads either fit's new streams or stored ones, never both)
            trackers = record_many(
                trackers, out, centre, scale, sequences[:, part], net.quantiles, rate,
                adapt=streams[0] is not None and rate > 0,
            )  # fmt: skip
        outputs = zip(
            split_state(state, counts),
            trackers,
            out.split(counts),
            centre.split(counts),
            scale.split(counts),
            strict=True,
        )
        return [
            (
                {"state": st, "tracker": t},
                self._last_forecast(o[:, -1]),
                self._last_units(c[:, -1]),
                self._last_units(sc[:, -1]),
            )
            for st, t, o, c, sc in outputs
        ]

    def _read_chunk(self) -> int:
        """Rows read per network call when streaming (the forecasts at every row of a long
        history would not fit in memory; chunks shorter than this only add calls)."""
        return max(int(self.chunk_length), 1024)

    def _advance(self, net, fresh: dict, scaled: dict, xs: dict) -> dict:
        """Every series in ``fresh`` advanced by its new rows: full history on the Aaren
        backbone reads the series with equal numbers of new rows in one batched call (the
        backbone's state is batch-first); otherwise one ``_encode`` per series."""
        out = {}
        together: dict[int, list] = {}
        batchable = self.context_length is None and self.backbone == "aaren"
        for key, rows in fresh.items():
            if batchable:
                together.setdefault(len(rows), []).append(key)
            else:
                out[key] = self._encode(
                    scaled[key], xs[key], self.streams_[key], rows.index[-1], net
                )
        for group in together.values():
            items = [(scaled[k], xs[k], self.streams_[k]) for k in group]
            with torch.no_grad():
                read = self._read_rows(net, items)
            for key, parts in zip(group, read, strict=True):
                out[key] = _stream(*parts, fresh[key].index[-1])
        return out

    def _progress(self):
        """Per-epoch reporting for ``verbose=True``: a tqdm bar when tqdm is installed."""
        if not self.verbose:
            return None, lambda: None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return (lambda e, loss: print(f"epoch {e + 1}/{self.max_epochs}: loss {loss:.4f}")), (
                lambda: None
            )
        bar = tqdm(total=self.max_epochs, desc=f"AarenForecaster ({self.backbone})", unit="epoch")

        def report(epoch: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")

        return report, bar.close

    def _network(self, n_targets: int, n_x: int, horizon: int, instances) -> torch.nn.Module:
        size = {
            "quantiles": self.quantiles,
            "backbone": self.backbone,
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "dropout": self.dropout,
            "n_future": n_x,
        }
        if self.context_length is not None:
            return ForecastNet(
                n_inputs=n_targets * self.n_lags + n_x,
                n_targets=n_targets,
                horizon=horizon,
                context_length=self.context_length,
                **size,
            )
        shortest = min(len(frame) for _, frame in instances)
        return StreamNet(
            n_targets,
            horizon,
            n_lags=self.n_lags,
            local_window=self._resolved_local_window(shortest, horizon),
            n_exog=n_x,
            recency=self.recency,
            **size,
        )

    def _training_data(self, scaled: dict, xs: dict, horizon: int):
        keys = list(scaled)
        futures = None if self.x_columns_ is None else [xs[k] for k in keys]
        if self.context_length is not None:
            return self._window_data(
                [scaled[k] for k in keys],
                futures,
                horizon,
                batch_size=self.batch_size,
                validation_size=self.validation_size,
                windows_per_epoch=self.windows_per_epoch,
                min_steps=MIN_STEPS_PER_EPOCH,
            )
        sequences, exog = zip(*(self._layout(scaled[k], xs[k]) for k in keys), strict=True)
        exog = None if self.x_columns_ is None else list(exog)
        return SeriesData(
            list(sequences),
            horizon,
            exog=exog,
            futures=exog,
            chunk_length=self.chunk_length,
            batch_size=self.batch_size,
            validation_size=self.validation_size,
            min_steps=MIN_STEPS_PER_EPOCH,
        )

    # ------------------------------------------------------------------ sktime API
    def _fit(self, y: pd.DataFrame, X=None, fh=None):
        self._check_params()
        self._validate_y(y, self._min_length())
        self._device = resolve_device(self.device)
        processes = check_devices(self.devices, self.strategy, self._device)
        horizon = self._horizon(fh)
        instances = _split_instances(y)
        # one regular time grid for every series; a ragged panel's cutoff gets its frequency
        self.grid_ = panel_grid(instances, getattr(self._cutoff, "freq", None))
        self._cutoff = self.grid_.with_freq(self._cutoff)
        times = _absolute_times(fh)
        if times is not None:  # a horizon given at fit is kept for predict: on the grid
            furthest = float(np.max(fh.to_relative(self._cutoff).to_numpy()))  # may be 2.5
            check_horizon_on_grid(self.grid_, self._cutoff, times, max(1, math.ceil(furthest)))
        self.columns_ = list(y.columns)
        self.x_columns_ = None if X is None else list(X.columns)
        exog = self._exogenous(X, instances)
        stats = {
            key: standardisation(frame.to_numpy(dtype=np.float64), "y") for key, frame in instances
        }
        self.scaling_ = {key: (mean, std) for key, (mean, std, _) in stats.items()}
        # a column constant in the training data has no scale to learn from: it is forecast
        # as that constant (the network's output in units of a stand-in std of 1 would not be)
        self.constant_columns_ = {key: constant for key, (_, _, constant) in stats.items()}
        self.x_scaling_ = {
            key: _standardisation(x, "X") for key, x in exog.items() if x is not None
        }
        scaled, xs = self._scaled_rows(dict(instances), exog)
        n_channels, n_x = len(self.columns_), len(self.x_columns_ or [])
        n_targets = 1 if self.channel_independent else n_channels
        seed = 0 if self.random_state is None else int(self.random_state)
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed if self.random_state is not None else torch.seed())
            self.network_ = checked_build(
                lambda: self._network(n_targets, n_x, horizon, instances),
                "AarenForecaster",
                {"max_horizon": horizon, "d_model": self.d_model, "n_layers": self.n_layers,
                 "n_lags": self.n_lags, "context_length": self.context_length},
            ).to(self._device)  # fmt: skip
            data = self._training_data(scaled, xs, horizon)
            fit_kwargs = {
                "max_epochs": self.max_epochs,
                "max_steps": self.max_steps,
                "lr": self.lr,
                "patience": self.patience,
            }
            self.loss_history_, self.world_size_ = train_network(
                self.network_,
                data,
                processes=processes,
                strategy=self.strategy,
                device=self._device,
                generator=generator,
                verbose=self.verbose,
                progress=self._progress,
                **fit_kwargs,
            )
        self.quantile_shifts_ = np.zeros((horizon, len(self.quantiles)))
        if self.calibrate and data.validating:
            shifts = quantile_shifts(*data.validation(self.network_), self.network_.quantiles)
            if self.context_length is None:
                # full history: calibration sets the intervals; the point forecast is the
                # network's (a median shift learned on the tail is a drift that need not last)
                shifts[:, list(self.quantiles).index(0.5)] = 0.0
            self.quantile_shifts_ = shifts.numpy()
        streams = {
            key: {
                **self._encode(scaled[key], xs[key], None, frame.index[-1]),
                "tail": tail(None, frame.index, frame.to_numpy(dtype=np.float64)),
            }
            for key, frame in instances
        }
        self.streams_ = self._tabled(streams, GridClock.of(self.grid_, instances[0][1].index))
        return self

    def _tabled(self, streams: dict, clock: GridClock | None = None):
        """Full history on the Aaren backbone: the streams as one ``StreamTable`` (its
        state is batch-first: every series advances in one batched step). Other settings,
        and streams saved before tables, stay one dict per series."""
        grid = getattr(self, "grid_", None)
        if self.context_length is not None or self.backbone != "aaren" or grid is None:
            return streams
        if not all("tail" in s and "tracker" in s for s in streams.values()):
            return streams
        if clock is None:  # the resolution of the absorbed times
            clock = GridClock.of(grid, next(iter(streams.values()))["tail"][0])
        return StreamTable.from_streams(streams, clock, self.scaling_, self.constant_columns_)

    def _set_cutoff_from_y(self, y):
        # sktime finds no frequency for a panel whose series end at different times
        super()._set_cutoff_from_y(y)
        grid = getattr(self, "grid_", None)
        if grid is not None:
            self._cutoff = grid.with_freq(self._cutoff)

    # Atomic public methods: on any error every attribute is put back as it was, so a
    # failed fit (sktime resets first), update (the cutoff moves first) or predict (a new fh
    # is stored first) leaves the forecaster exactly as before the call. They also run one
    # at a time per forecaster: sktime reads the stored fh back during predict_interval.
    fit = atomic(threaded(_x_levels_checked(BaseForecaster.fit)))

    def _plain_rows(self, y, X) -> pd.DataFrame | pd.Series | None:
        """``y`` when it is a plain series or panel of the kind seen in fit (numeric, same
        columns and index type, no X): what sktime's checks would hand to ``_update`` (as a
        frame); None for anything else, which then goes through sktime's checks and
        conversions.

        Those checks cost about 2 ms per call, twice the O(1) step itself: a live stream
        of single observations would spend most of its time re-checking the input's type.
        """
        if X is not None or self.x_columns_ is not None or self._is_vectorized:
            return None
        if self.get_config()["remember_data"]:  # sktime must append y to self._y
            return None
        panel = None not in self.streams_  # fitted on a panel: keys are tuples
        if panel and getattr(self, "grid_", None) is None:  # saved before grids were kept
            return None
        if isinstance(y, pd.Series) and not panel:
            if [0 if y.name is None else y.name] != self.columns_:
                return None
            dtypes = [y.dtype]
        elif isinstance(y, pd.DataFrame) and list(y.columns) == self.columns_:
            dtypes = list(y.dtypes)
        else:
            return None
        frame = y
        cutoff = self.cutoff
        if panel:  # the same levels as fit, the time level of the cutoff's kind
            key = next(iter(self.streams_))
            if not isinstance(frame.index, pd.MultiIndex):
                return None
            if frame.index.nlevels != len(key) + 1 or frame.index.has_duplicates:
                return None
            time = frame.index.levels[-1]
            same_kind = type(time) is type(cutoff) or (
                not isinstance(cutoff, (pd.DatetimeIndex, pd.PeriodIndex))
                and not isinstance(time, (pd.DatetimeIndex, pd.PeriodIndex))
            )
            index_ok = same_kind and time.dtype == cutoff.dtype
        else:
            index_ok = (
                type(frame.index) is type(cutoff)
                and frame.index.dtype == cutoff.dtype
                and getattr(frame.index, "freq", None) == getattr(cutoff, "freq", None)
            )
        plain = (
            len(frame) > 0
            and index_ok
            and all(pd.api.types.is_numeric_dtype(t) for t in dtypes)
            and not any(pd.api.types.is_bool_dtype(t) for t in dtypes)
            # complex columns count as numeric: sktime's path refuses them (as fit does)
            and not any(pd.api.types.is_complex_dtype(t) for t in dtypes)
        )
        return y if plain else None

    def _update_plain_or_checked(self, y, X=None, update_params=True):
        # see _plain_rows; the result is the same as BaseForecaster.update's.
        # sktime passes update_params on unchecked: "no" or None would read as a choice
        update_params = boolean(update_params, "update_params")
        rows = self._plain_rows(y, X) if self.is_fitted else None
        if rows is None:
            return BaseForecaster.update(self, y, X, update_params=update_params)
        table = None
        if isinstance(self.streams_, StreamTable) and not (update_params and self.update_steps):
            # every row new and on the grid: read in array operations (_table_update)
            table = plain_table_update(
                self.streams_,
                rows.index,
                rows.to_numpy(dtype=np.float64).reshape(len(rows), -1),
                self.network_,
                channel_independent=self.channel_independent,
                rate=float(self.calibration_rate),
                chunk=self._read_chunk(),
            )
        if table is None:
            frame = rows.to_frame(name=self.columns_[0]) if isinstance(rows, pd.Series) else rows
            self._update(frame, None, update_params=update_params)
        else:
            self.streams_ = table
        if isinstance(rows.index, pd.MultiIndex):  # a panel's cutoff: its latest time
            times = rows.index.get_level_values(-1)
            latest = times[[int(times.argmax())]]
            if isinstance(latest, pd.RangeIndex):  # sktime's cutoff is a plain Index here
                latest = pd.Index(latest.to_numpy())
            self._set_cutoff(self.grid_.with_freq(latest))
        else:
            self._set_cutoff(rows.index[-1:])
        return self

    _update_plain_or_checked.__doc__ = BaseForecaster.update.__doc__

    def _plain_horizon(self, fh, X) -> ForecastingHorizon | None:
        """The stored horizon, when ``predict`` asks for it again (``fh`` None, the same
        object, or the same relative integer steps) with no X, on a forecaster that reads no
        X and loops over nothing; None for anything else, which then goes through sktime's
        checks and conversions (and stores a new horizon, plain from the next call on).

        A stream asks for the same horizon after every observation: sktime's checks of it
        and of the output cost about 1 ms, the forecast itself a few dozen microseconds.
        """
        if X is not None or self.x_columns_ is not None or self._is_vectorized:
            return None
        stored = self._fh
        steps = None if stored is None else relative_steps(stored)
        if steps is None or steps.min() < 1:  # none, absolute, or in-sample: sktime's path
            return None
        if fh is not None and fh is not stored:
            if not isinstance(fh, (list, tuple, range, np.ndarray)):
                return None
            values = np.asarray(fh)
            if values.ndim != 1 or values.dtype.kind not in "iu":
                return None
            if not np.array_equal(values, steps):
                return None
        return stored

    def _predict_plain_or_checked(self, fh=None, X=None):
        # see _plain_horizon; the result equals BaseForecaster.predict's
        plain = self._plain_horizon(fh, X) if self.is_fitted else None
        mtype = self._y_metadata["mtype"] if plain is not None else None
        if mtype not in ("pd.Series", "pd.DataFrame", "pd-multiindex", "pd_multiindex_hier"):
            return BaseForecaster.predict(self, fh, X)
        if mtype != "pd.Series":
            return self._predict(plain)
        # what sktime's conversion back gives: the one column, named as the series fitted or
        # updated (built directly: a frame and its column cost a fifth of the tick)
        index, values = self._quantile_values(plain, [0.5])
        return pd.Series(values[0.5][:, 0], index=index, name=self._converter_store_y.get("name"))

    _predict_plain_or_checked.__doc__ = BaseForecaster.predict.__doc__

    def _check_fh_on_grid(self, fh) -> None:
        """Absolute forecast times on the fitted grid (``check_horizon_on_grid``), checked
        before sktime converts them to steps."""
        times = _absolute_times(fh)
        grid = getattr(self, "grid_", None)  # None: saved before grids were kept
        if times is None or grid is None or not self.is_fitted:
            return
        check_horizon_on_grid(grid, self.cutoff, times, self.network_.horizon)

    update = atomic(threaded(_x_levels_checked(_update_plain_or_checked)))
    predict = atomic(threaded(_grid_checked(_predict_plain_or_checked)))
    predict_interval = atomic(threaded(_grid_checked(BaseForecaster.predict_interval)))
    predict_quantiles = atomic(threaded(_grid_checked(BaseForecaster.predict_quantiles)))
    predict_var = atomic(threaded(_grid_checked(BaseForecaster.predict_var)))
    predict_proba = atomic(threaded(_grid_checked(BaseForecaster.predict_proba)))

    def _update(self, y: pd.DataFrame, X=None, update_params=True):
        instances = _split_instances(y)  # once: splitting a panel costs about 0.2 ms a series
        self._validate_y(y, instances=instances)
        fresh = {}
        for key, frame in instances:
            if key not in self.streams_:
                raise ValueError(f"update got a series {key!r} that was not seen in fit")
            if list(frame.columns) != self.columns_:
                raise ValueError(
                    f"update's columns {list(frame.columns)} differ from fit's {self.columns_}"
                )
            where = "" if key is None else f" for series {key!r}"
            grid = getattr(self, "grid_", None)  # None: saved before the grid was kept
            if grid is not None:
                check_kind(grid, frame.index, where)
            stream = self.streams_[key]
            last = stream["last"]
            if frame.index[-1] < last:
                raise ValueError(
                    f"update data{where} ends at {frame.index[-1]}, before the last observation "
                    f"already absorbed ({last}): updates must move forward in time"
                )
            # sktime passes the whole window seen so far: read only what is new, after
            # checking that what it repeats is what was absorbed
            if frame.index[0] > last:  # only new rows (a live stream's usual tick)
                new_rows = frame
            else:
                check_overlap(stream.get("tail"), frame, last, where)
                new_rows = frame.loc[frame.index > last]
            if grid is not None:
                check_continues(grid, new_rows.index, last, where)
            if len(new_rows):
                fresh[key] = new_rows
        exog = self._exogenous(X, list(fresh.items())) if fresh else {}
        scaled, xs = self._scaled_rows(fresh, exog)
        net = self.network_
        if update_params and self.update_steps > 0 and fresh:
            net = self._fine_tuned(scaled, xs)
        new_streams = dict(self.streams_)
        advanced = self._advance(net, fresh, scaled, xs)
        for key, rows in fresh.items():
            old = self.streams_[key]
            new_streams[key] = {
                **advanced[key],
                "tail": tail(old.get("tail"), rows.index, rows.to_numpy(dtype=np.float64)),
            }
        if isinstance(self.streams_, StreamTable):
            new_streams = self._tabled(new_streams, self.streams_.clock)
        # assigned only once everything succeeded
        self.network_, self.streams_ = net, new_streams
        return self

    def _fine_tuned(self, scaled: dict, xs: dict) -> ForecastNet:
        """A copy of the network after ``update_steps`` Adam steps on the new rows.

        Full history: each series' new rows are read from its stored state, with the pinball
        loss on the targets that fall inside the new rows. Windowed: the windows that end in
        the stored window or the new rows and have targets among the new rows. The streams
        are then advanced with the new weights.
        """
        net = copy.deepcopy(self.network_)
        net.train()
        optimizer = adam(net.parameters(), lr=self.lr)
        seed = 0 if self.random_state is None else int(self.random_state)
        generator = torch.Generator().manual_seed(seed)
        scorers = self._new_rows_scorers(scaled, xs, net.horizon)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for _ in range(self.update_steps if scorers else 0):  # none: too few new rows
                loss = torch.stack([score(net, generator) for score in scorers]).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        net.eval()
        return net

    def _new_rows_scorers(self, scaled: dict, xs: dict, horizon: int) -> list:
        """One loss function ``(net, generator) -> loss`` per series with targets among its
        new rows; their inputs are built once, only the network changes between steps."""
        scorers = []
        for key, values in scaled.items():
            stream, x = self.streams_[key], xs[key]
            if self.context_length is None:
                sequences, exog = self._layout(values, x)
                future = None if exog is None else future_targets(exog, horizon)
                target = future_targets(self._targets(values), horizon)
                if torch.isnan(target).all():
                    continue

                def score(
                    net,
                    generator,
                    sequences=sequences,
                    state=stream["state"],
                    exog=exog,
                    future=future,
                    target=target,
                ):
                    forecast, centre, scale, _ = net(sequences, state, exog, future)
                    forecast = in_row_units(forecast, centre, scale)
                    return pinball_loss(forecast, target, net.quantiles)

                scorers.append(score)
                continue
            if stream["window"].shape[0] < self.context_length:
                continue  # the stored window is shorter than a context: nothing to score
            window = torch.cat([stream["window"], values])
            x_all = None if x is None else [torch.cat([stream["x_window"], x])]
            data = self._window_data([window], x_all, horizon, batch_size=window.shape[0])
            scorers.append(lambda net, generator, data=data: next(data.epoch(net, generator)))
        return scorers

    # ------------------------------------------------------------------ prediction
    def _series_horizon(self, key, last, fh) -> tuple[np.ndarray, pd.Index]:
        """The steps ahead of series ``key`` (last observation ``last``) that ``fh`` asks
        for, and the times they label: sktime's convention for a panel, where each series
        is forecast from its own end. A relative ``fh`` counts from that end (a series that
        stopped earlier is labelled at earlier times); an absolute one names times, each
        read as the step it lies after the series' end. Steps outside 1..horizon are a
        named error."""
        cutoff = self.cutoff
        if last != cutoff[0]:
            # a ragged panel's cutoff may carry no frequency: the grid's is the series'
            grid = getattr(self, "grid_", None)
            freq = getattr(cutoff, "freq", None) or fh.freq or getattr(grid, "freq", None)
            if isinstance(cutoff, pd.PeriodIndex):
                cutoff = pd.PeriodIndex([last], freq=freq)
            elif isinstance(cutoff, pd.DatetimeIndex):
                cutoff = pd.DatetimeIndex([last], freq=freq)
            else:
                cutoff = pd.Index([last])
        relative = relative_steps(fh)
        steps = fh.to_relative(cutoff).to_numpy().astype(int) if relative is None else relative
        horizon = self.network_.horizon
        if steps.min() < 1 or steps.max() > horizon:
            name = key[0] if isinstance(key, tuple) and len(key) == 1 else key
            series = "" if key is None else f" of series {name!r} (last observation {last})"
            raise ValueError(
                f"forecasting horizon steps {steps.tolist()}{series} must lie in 1..{horizon}, "
                "the maximum fitted (set max_horizon, or pass a longer fh to fit)"
            )
        labels = None if relative is None else horizon_labels(cutoff, steps)
        return steps, fh.to_absolute_index(cutoff) if labels is None else labels

    def _future_term(self, key, times, steps: np.ndarray, x: pd.DataFrame | None) -> np.ndarray:
        """The known-future term ``(H, 1 or C, Q)`` from this series' X at the forecast times
        (0 where X does not give them: the network was trained to forecast without them)."""
        horizon = self.network_.horizon
        if self.x_columns_ is None or x is None:
            return np.zeros((horizon, 1, len(self.quantiles)))
        future = np.full((horizon, len(self.x_columns_)), np.nan)
        mean, std = self.x_scaling_[key]
        for step, time in zip(steps, times, strict=True):
            if time in x.index:
                future[step - 1] = (x.loc[time].to_numpy(dtype=np.float64) - mean) / std
        # as every X that update reads: beyond float32 after scaling, refused by name
        check_float32(future[~np.isnan(future)], "X")
        covariates = torch.tensor(future, dtype=torch.float32, device=self._device)
        with torch.no_grad():
            term = self.network_.future_term(covariates)  # (H, n_targets, Q)
        return term.cpu().numpy().astype(np.float64)

    def _quantile_frame(self, fh, levels: list[float], X=None) -> dict[float, pd.DataFrame]:
        """The forecast at each quantile level of ``levels``, every series at once: the
        stored forecasts ``(S, H, C, Q)`` are shifted, sorted, rescaled and read at the
        asked steps and levels in array operations, and one frame is built (a loop over
        series, pandas frames per series, cost about 3 ms per series)."""
        index, values = self._quantile_values(fh, levels, X)
        return {
            q: pd.DataFrame(values[q], index=index, columns=self.columns_) for q in levels
        }  # fmt: skip

    def _quantile_values(self, fh, levels: list[float], X=None) -> tuple[pd.Index, dict]:
        """``_quantile_frame``'s rows and, per level, its values ``(rows, columns)``."""
        learned = np.asarray(self.quantiles, dtype=np.float64)
        stored = self._stored_forecasts()
        keys = stored["keys"]
        if len(keys) == 1:  # a single series: no sorting out of distinct times
            own_steps, own_labels = self._series_horizon(keys[0], stored["times"](_FIRST)[0], fh)
            steps, labels = own_steps[None], [own_labels]  # (1, L)
        else:
            # steps and labels once per distinct last time (a panel's series mostly end
            # together); checked for every series before any is read
            distinct, which = np.unique(stored["last"], return_inverse=True)
            first = np.zeros(len(distinct), dtype=np.int64)
            first[which[::-1]] = np.arange(len(keys))[::-1]  # a series ending at each time
            pairs = zip(first, stored["times"](first), strict=True)
            found = [self._series_horizon(keys[i], last, fh) for i, last in pairs]
            which = which.ravel()
            steps = np.stack([f[0] for f in found])[which]  # (S, L)
            labels = [found[g][1] for g in which]
        forecast, scale, centre = stored["forecast"], stored["scale"], stored["centre"]
        if self.x_columns_ is not None and X is not None:
            self._check_x(X)
            x_by_key = dict(_split_instances(X))
            terms = np.stack(
                [
                    self._future_term(key, labels[i], steps[i], x_by_key.get(key))
                    for i, key in enumerate(keys)
                ]
            )  # (S, H, 1 or C, Q)
            if self.context_length is None:  # rows' units, the forecast local ones
                terms = terms / scale[:, None, :, None]
            forecast = forecast + terms
        # the quantile shifts (S, H, Q): the fitted ones, or, in full-history mode, where
        # each stream's online tracking has moved them
        if self.context_length is None:
            shifts = stacked_shifts(stored["shifts"], self.network_.horizon)
        else:
            shifts = np.broadcast_to(
                self.quantile_shifts_, (len(keys), *self.quantile_shifts_.shape)
            )
        # sorting makes the quantiles monotone before interpolating between them
        forecast = np.sort(forecast + shifts[:, :, None, :], axis=-1)
        forecast = forecast * scale[:, None, :, None] + centre[:, None, :, None]
        chosen = forecast[np.arange(len(keys))[:, None], steps - 1]  # (S, L, C, Q)
        mean, std = stored["mean"], stored["std"]
        out_scale = np.where(stored["constant"], 0.0, std)[:, None, :]
        index = self._forecast_index(keys, labels)
        values = {}
        for q in levels:
            level = _interp_level(chosen, learned, q) * out_scale + mean[:, None, :]
            values[q] = level.reshape(-1, level.shape[-1])
        return index, values

    def _stored_forecasts(self) -> dict:
        """Every series' stored forecast as arrays, series along the first axis: ``keys``,
        ``last`` (comparable numbers) of the last absorbed rows and ``times`` (rows -> their
        times as index scalars, built only for the rows asked), ``forecast``
        ``(S, H, C, Q)``, ``centre``, ``scale``, ``mean``, ``std``, ``constant`` ``(S, C)``,
        and the tracked quantile ``shifts`` (full history)."""
        streams = self.streams_
        if isinstance(streams, StreamTable):  # stacked already
            return {
                "keys": streams.keys_,
                "last": streams.last,
                "times": lambda rows: streams.clock.times(streams.last[rows]),
                "forecast": streams.forecast.numpy().astype(np.float64),
                "centre": streams.centre,
                "scale": streams.scale,
                "mean": streams.mean,
                "std": streams.std,
                "constant": streams.constant,
                "shifts": streams.tracker.shifts,
            }
        keys = list(streams)
        parts = [streams[key] for key in keys]
        times = [s["last"] for s in parts]
        return {
            "keys": keys,
            "last": pd.Index(times).factorize()[0],  # equal times, equal numbers
            "times": lambda rows: [times[i] for i in rows],
            "forecast": np.stack([s["forecast"].numpy() for s in parts]).astype(np.float64),
            "centre": np.stack([np.asarray(s["centre"], dtype=np.float64) for s in parts]),
            "scale": np.stack([np.asarray(s["scale"], dtype=np.float64) for s in parts]),
            "mean": np.stack([self.scaling_[key][0] for key in keys]),
            "std": np.stack([self.scaling_[key][1] for key in keys]),
            "constant": np.stack([self.constant_columns_[key] for key in keys]),
            "shifts": (
                torch.stack([s["tracker"].shifts for s in parts])
                if self.context_length is None
                else None
            ),
        }

    def _forecast_index(self, keys: list, labels: list[pd.Index]) -> pd.Index:
        """The rows of a forecast: the labels of a plain series, or (series key..., time)
        for a panel, series after series."""
        if keys == [None]:
            return labels[0]
        n = len(labels[0])
        first = labels[0]
        shared = all(i is first for i in labels)  # one set of labels for every series
        if shared and isinstance(self.streams_, StreamTable) and first.is_monotonic_increasing:
            # the series levels factorised once per table, repeated: the index
            # from_arrays builds below, without factorising series x steps entries
            series = self.streams_.key_levels()
            if isinstance(first, pd.DatetimeIndex):  # a factorised level has no frequency
                first = pd.Index(first.to_numpy(), dtype=first.dtype)
            return pd.MultiIndex(
                levels=[*series.levels, first],
                codes=[*(np.repeat(c, n) for c in series.codes), np.tile(np.arange(n), len(keys))],
                verify_integrity=False,
            )
        parts = [key if isinstance(key, tuple) else (key,) for key in keys]
        levels = [np.repeat(np.array(level, dtype=object), n) for level in zip(*parts, strict=True)]
        times = first[np.tile(np.arange(n), len(keys))] if shared else first.append(labels[1:])
        return pd.MultiIndex.from_arrays([*levels, times])

    def _check_levels(self, levels: list[float]) -> None:
        """Levels between the learned ones are interpolated; outside them nothing was
        learned, and reading the nearest learned level instead would state a coverage the
        forecast does not have."""
        if not levels:
            raise ValueError("alpha/coverage is empty: ask for at least one level")
        low, high = min(self.quantiles), max(self.quantiles)
        outside = [float(a) for a in levels if not low - 1e-9 <= a <= high + 1e-9]
        if outside:
            raise ValueError(
                f"quantile levels {outside} lie outside the learned range [{low}, {high}] "
                f"(quantiles={tuple(self.quantiles)}); a coverage c needs levels "
                "(1 - c) / 2 and (1 + c) / 2: refit with quantiles that include them"
            )

    def _predict(self, fh, X=None):
        return self._quantile_frame(fh, [0.5], X)[0.5]

    def _predict_quantiles(self, fh, X=None, alpha=None):
        alphas = list(alpha)
        self._check_levels(alphas)
        frames = self._quantile_frame(fh, alphas, X)
        columns = pd.MultiIndex.from_product([self.columns_, alphas])
        out = pd.concat([frames[a] for a in alphas], axis=1, keys=alphas)
        out = out.swaplevel(0, 1, axis=1).reindex(columns=columns)
        return out

    @classmethod
    def get_test_params(cls, parameter_set="default"):
        """Tiny settings for sktime's conformance suite (a few steps, width 8): the
        full-history mode, a GRU without local scaling, and the windowed mode with patches and
        calibration."""
        return [
            {
                "d_model": 8,
                "n_layers": 1,
                "n_heads": 2,
                "max_epochs": 1,
                "max_steps": 3,
                "chunk_length": 16,
            },
            {
                "backbone": "gru",
                "local_window": None,
                "d_model": 8,
                "n_layers": 1,
                "max_epochs": 1,
                "max_steps": 3,
                "max_horizon": 5,
                "random_state": 0,
            },
            {
                "context_length": 4,
                "channel_independent": True,
                "n_lags": 4,
                "token_stride": 2,
                "validation_size": 0.25,
                "d_model": 8,
                "n_layers": 1,
                "n_heads": 2,
                "max_epochs": 1,
                "max_steps": 3,
                "random_state": 0,
            },
        ]
