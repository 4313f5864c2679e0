"""AarenForecaster: an sktime forecaster whose whole history lives in a constant-size state.

It fits one global network across every series of a panel. It forecasts every step up to
``max_horizon`` at once, from a multi-horizon quantile head, and ``update`` reads new
observations through the recurrent state: O(1) time and memory per observation, no
re-encoding, no retraining.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import torch
from sktime.forecasting.base import BaseForecaster

from ._forecast_net import (
    ForecastNet,
    future_targets,
    lagged_inputs,
    pinball_loss,
    train_forecast_net,
)


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for, but no CUDA device is available")
    return resolved


def _standardisation(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation (1 for a constant column)."""
    data = frame.to_numpy(dtype=np.float64)
    std = data.std(0)
    return data.mean(0), np.where(std > 0, std, 1.0)


def _split_instances(y: pd.DataFrame) -> list[tuple[Any, pd.DataFrame]]:
    """``[(instance key, single-series frame)]``; the key is None for a plain series."""
    if not isinstance(y.index, pd.MultiIndex):
        return [(None, y)]
    levels = list(range(y.index.nlevels - 1))
    return [(key, frame.droplevel(levels)) for key, frame in y.groupby(level=levels, sort=False)]


class AarenForecaster(BaseForecaster):
    """Global deep forecaster on an Aaren (or Transformer, or GRU) backbone, streaming updates.

    Every time step is embedded with its last ``n_lags`` (scaled) values. The backbone reads the
    whole history causally, and a head emits quantile forecasts of steps ``1..max_horizon``
    at every position. Training reads each series in consecutive chunks and carries the
    detached state, so that training matches inference. ``update`` feeds only the observations
    after the last one consumed through the recurrence: the forecast after any sequence of
    updates equals one pass over the full history with the same weights.

    Parameters
    ----------
    backbone : {"aaren", "transformer", "gru"}, default "aaren"
        Sequence model; everything else is identical across backbones.
    max_horizon : int, optional
        Largest forecast step. Default: the largest step of ``fh`` given to ``fit`` (1 if none).
    n_lags : int, default 4
        Recent values each step sees besides its own.
    d_model, n_layers, n_heads : int, default 32, 2, 4
        Backbone size.
    dropout : float, default 0.0
    quantiles : tuple of float, default (0.025, 0.1, 0.5, 0.9, 0.975)
        Levels the head learns; must contain 0.5 (the point forecast). Other levels are
        interpolated linearly between the learned ones.
    max_epochs : int, default 20
    chunk_length : int, default 256
        Steps per truncated-backpropagation chunk.
    lr : float, default 1e-3
    validation_size : float, default 0.0
        Fraction of each series' tail held out for early stopping (0: train on everything
        for ``max_epochs``). The best epoch's weights are kept.
    patience : int, default 5
        Epochs without validation improvement before training stops.
    update_steps : int, default 5
        With ``update(..., update_params=True)``: Adam steps (at ``lr``) on the new rows,
        read from each series' stored state, before the state advances with the new weights.
        0 only advances the state, as ``update_params=False`` does.
    device : str, default "auto"
        "auto" picks CUDA when present; "cuda" without a device is an error.
    random_state : int, optional
        Seed: two fits with the same seed give identical forecasts on CPU.
    verbose : bool, default False
        Show training progress and loss per epoch (a tqdm bar when tqdm is installed).

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
        "capability:exogenous": True,  # past values of X enter every step's input
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
        n_lags: int = 4,
        d_model: int = 32,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
        quantiles: tuple[float, ...] = (0.025, 0.1, 0.5, 0.9, 0.975),
        max_epochs: int = 20,
        chunk_length: int = 256,
        lr: float = 1e-3,
        validation_size: float = 0.0,
        patience: int = 5,
        update_steps: int = 5,
        device: str = "auto",
        random_state: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.backbone = backbone
        self.max_horizon = max_horizon
        self.n_lags = n_lags
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.dropout = dropout
        self.quantiles = quantiles
        self.max_epochs = max_epochs
        self.chunk_length = chunk_length
        self.lr = lr
        self.validation_size = validation_size
        self.patience = patience
        self.update_steps = update_steps
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        super().__init__()

    # ------------------------------------------------------------------ helpers
    def _horizon(self, fh) -> int:
        if self.max_horizon is not None:
            if not isinstance(self.max_horizon, (int, np.integer)) or self.max_horizon < 1:
                raise ValueError(f"max_horizon must be a positive int, got {self.max_horizon!r}")
            return int(self.max_horizon)
        if fh is None:
            return 1
        steps = fh.to_relative(self.cutoff).to_numpy()
        return int(max(1, steps.max()))

    def _check_params(self) -> None:
        qs = tuple(self.quantiles)
        if 0.5 not in qs or any(not 0 < q < 1 for q in qs) or list(qs) != sorted(set(qs)):
            raise ValueError(
                "quantiles must be increasing levels in (0, 1) that include 0.5, "
                f"got {self.quantiles!r}"
            )
        if self.n_lags < 1:
            raise ValueError(f"n_lags must be at least 1, got {self.n_lags}")
        if not 0.0 <= self.validation_size < 1.0:
            raise ValueError(f"validation_size must be in [0, 1), got {self.validation_size}")

    def _scaled(self, frame: pd.DataFrame, scaling: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
        mean, std = scaling
        values = (frame.to_numpy(dtype=np.float64) - mean) / std
        return torch.tensor(values, dtype=torch.float32).to(self._device)

    def _features(
        self, key, rows: pd.DataFrame, x: pd.DataFrame | None, previous: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scaled targets of new rows, the network inputs for them (each row's last ``n_lags``
        target values, ``previous`` holding the ``n_lags - 1`` before the block, and the row's
        exogenous values), and the ``n_lags - 1`` rows the next block will need."""
        values = self._scaled(rows, self.scaling_[key])
        if previous is None:
            previous = values.new_zeros(self.n_lags - 1, values.shape[1])
        joined = torch.cat([previous, values], dim=0)
        inputs = lagged_inputs(joined, self.n_lags)[previous.shape[0] :]
        if self.x_columns_ is not None:
            inputs = torch.cat([inputs, self._scaled(x, self.x_scaling_[key])], dim=-1)
        return values, inputs, joined[joined.shape[0] - (self.n_lags - 1) :]

    def _encode(
        self, key, frame: pd.DataFrame, x: pd.DataFrame | None, stream: dict | None, net=None
    ) -> dict:
        """Read ``frame``'s rows after the stream's last one; return the advanced stream."""
        net = self.network_ if net is None else net
        previous, state = (None, None) if stream is None else (stream["lags"], stream["state"])
        _, inputs, lags = self._features(key, frame, x, previous)
        with torch.no_grad():
            forecast, state = net(inputs.unsqueeze(0), state)
        return {
            "state": state,
            "lags": lags,
            "forecast": forecast[0, -1].cpu(),  # (H, C, Q), scaled
            "last": frame.index[-1],
        }

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

    def _validate_y(self, y: pd.DataFrame) -> None:
        if len(y) == 0:
            raise ValueError("y is empty: AarenForecaster needs at least one observation")
        values = y.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("y contains NaN or inf values; AarenForecaster needs finite data")
        for key, frame in _split_instances(y):
            if not frame.index.is_monotonic_increasing or not frame.index.is_unique:
                where = "" if key is None else f" in series {key!r}"
                raise ValueError(f"y's time index{where} must be increasing and unique")

    # ------------------------------------------------------------------ sktime API
    def _fit(self, y: pd.DataFrame, X=None, fh=None):
        self._check_params()
        self._validate_y(y)
        self._device = _resolve_device(self.device)
        horizon = self._horizon(fh)
        instances = _split_instances(y)
        self.columns_ = list(y.columns)
        self.x_columns_ = None if X is None else list(X.columns)
        exog = self._exogenous(X, instances)
        self.scaling_ = {key: _standardisation(frame) for key, frame in instances}
        self.x_scaling_ = {key: _standardisation(x) for key, x in exog.items() if x is not None}
        inputs, targets = [], []
        for key, frame in instances:
            values, features, _ = self._features(key, frame, exog[key], None)
            inputs.append(features)
            targets.append(values)
        seed = 0 if self.random_state is None else int(self.random_state)
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed if self.random_state is not None else torch.seed())
            self.network_ = ForecastNet(
                n_inputs=len(self.columns_) * self.n_lags + len(self.x_columns_ or []),
                n_targets=len(self.columns_),
                horizon=horizon,
                quantiles=self.quantiles,
                backbone=self.backbone,
                d_model=self.d_model,
                n_layers=self.n_layers,
                n_heads=self.n_heads,
                dropout=self.dropout,
            ).to(self._device)
            report, close = self._progress()
            self.loss_history_ = train_forecast_net(
                self.network_,
                inputs,
                targets,
                max_epochs=self.max_epochs,
                chunk_length=self.chunk_length,
                lr=self.lr,
                generator=generator,
                on_epoch=report,
                validation_size=self.validation_size,
                patience=self.patience,
            )
            close()
        self.streams_ = {key: self._encode(key, frame, exog[key], None) for key, frame in instances}
        return self

    def update(self, y, X=None, update_params=True):
        """Update cutoff and state with new data (see ``BaseForecaster.update``).

        Atomic: sktime moves the cutoff before ``_update`` runs, so on any error every
        attribute is put back as it was, and the forecaster stays exactly as before the call.
        """
        snapshot = self.__dict__.copy()  # our _update rebinds attributes, never mutates them
        try:
            return super().update(y, X, update_params=update_params)
        except Exception:
            self.__dict__.clear()
            self.__dict__.update(snapshot)
            raise

    def _exogenous(self, X, instances) -> dict:
        """Each series' exogenous rows at its target rows (None without exogenous data)."""
        if self.x_columns_ is None:
            return {key: None for key, _ in instances}
        if X is None:
            raise ValueError("X is required: the forecaster was fitted with exogenous data")
        if list(X.columns) != self.x_columns_:
            raise ValueError(f"X's columns {list(X.columns)} differ from fit's {self.x_columns_}")
        values = X.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("X contains NaN or inf values; AarenForecaster needs finite data")
        by_key = dict(_split_instances(X))
        exog = {}
        for key, frame in instances:
            x = by_key.get(key)
            if x is None or not frame.index.isin(x.index).all():
                where = "" if key is None else f" of series {key!r}"
                raise ValueError(f"X must cover every time point of y{where}")
            exog[key] = x.loc[frame.index]
        return exog

    def _update(self, y: pd.DataFrame, X=None, update_params=True):
        self._validate_y(y)
        fresh = {}
        for key, frame in _split_instances(y):
            if key not in self.streams_:
                raise ValueError(f"update got a series {key!r} that was not seen in fit")
            if list(frame.columns) != self.columns_:
                raise ValueError(
                    f"update's columns {list(frame.columns)} differ from fit's {self.columns_}"
                )
            last = self.streams_[key]["last"]
            if frame.index[-1] < last:
                where = "" if key is None else f" for series {key!r}"
                raise ValueError(
                    f"update data{where} ends at {frame.index[-1]}, before the last observation "
                    f"already absorbed ({last}): updates must move forward in time"
                )
            # sktime passes the whole window seen so far: read only what is new
            new_rows = frame.loc[frame.index > last]
            if len(new_rows):
                fresh[key] = new_rows
        exog = self._exogenous(X, list(fresh.items())) if fresh else {}
        net = self.network_
        if update_params and self.update_steps > 0 and fresh:
            net = self._fine_tuned(fresh, exog)
        new_streams = dict(self.streams_)
        for key, new_rows in fresh.items():
            new_streams[key] = self._encode(key, new_rows, exog[key], self.streams_[key], net)
        # assigned only once everything succeeded
        self.network_, self.streams_ = net, new_streams
        return self

    def _fine_tuned(self, fresh: dict, exog: dict) -> ForecastNet:
        """A copy of the network after ``update_steps`` Adam steps on the new rows.

        Each series' new rows are read from its stored state, with the pinball loss on the
        targets that fall inside the new rows. The stored states were computed with the old
        weights; the new rows are then re-read with the new ones.
        """
        net = copy.deepcopy(self.network_)
        net.train()
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr)
        seed = 0 if self.random_state is None else int(self.random_state)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for _ in range(self.update_steps):
                losses = []
                for key, rows in fresh.items():
                    stream = self.streams_[key]
                    values, inputs, _ = self._features(key, rows, exog[key], stream["lags"])
                    forecast, _ = net(inputs.unsqueeze(0), stream["state"])
                    target = future_targets(values.unsqueeze(0), net.horizon)
                    if not torch.isnan(target).all():
                        losses.append(pinball_loss(forecast, target, net.quantiles))
                if not losses:
                    break  # too few new rows to score any forecast
                optimizer.zero_grad()
                torch.stack(losses).mean().backward()
                optimizer.step()
        net.eval()
        return net

    def _steps(self, fh) -> np.ndarray:
        steps = fh.to_relative(self.cutoff).to_numpy().astype(int)
        horizon = self.network_.horizon
        if steps.min() < 1 or steps.max() > horizon:
            raise ValueError(
                f"forecasting horizon steps {steps.tolist()} must lie in 1..{horizon}, the "
                "maximum fitted (set max_horizon, or pass a longer fh to fit)"
            )
        return steps

    def _quantile_frame(self, fh, levels: list[float]) -> dict[float, pd.DataFrame]:
        steps = self._steps(fh)
        learned = np.asarray(self.quantiles, dtype=np.float64)
        frames: dict[float, list[pd.DataFrame]] = {q: [] for q in levels}
        for key, stream in self.streams_.items():
            mean, std = self.scaling_[key]
            # sorting makes the learned quantiles monotone before interpolating between them
            forecast = np.sort(stream["forecast"].numpy().astype(np.float64), axis=-1)
            chosen = forecast[steps - 1]  # (len(fh), C, Q)
            index = fh.to_absolute_index(self.cutoff)
            if key is not None:
                keys = key if isinstance(key, tuple) else (key,)
                index = pd.MultiIndex.from_tuples([(*keys, t) for t in index])
            for q in levels:
                values = np.apply_along_axis(
                    lambda row, level=q: np.interp(level, learned, row), -1, chosen
                )
                frames[q].append(
                    pd.DataFrame(values * std + mean, index=index, columns=self.columns_)
                )
        return {q: pd.concat(parts) for q, parts in frames.items()}

    def _predict(self, fh, X=None):
        return self._quantile_frame(fh, [0.5])[0.5]

    def _predict_quantiles(self, fh, X=None, alpha=None):
        alphas = list(alpha)
        frames = self._quantile_frame(fh, alphas)
        columns = pd.MultiIndex.from_product([self.columns_, alphas])
        out = pd.concat([frames[a] for a in alphas], axis=1, keys=alphas)
        out = out.swaplevel(0, 1, axis=1).reindex(columns=columns)
        return out

    @classmethod
    def get_test_params(cls, parameter_set="default"):
        """Tiny settings for sktime's conformance suite (one epoch, width 8)."""
        return [
            {"d_model": 8, "n_layers": 1, "n_heads": 2, "max_epochs": 1, "chunk_length": 16},
            {
                "backbone": "gru",
                "d_model": 8,
                "n_layers": 1,
                "max_epochs": 1,
                "max_horizon": 5,
                "random_state": 0,
            },
        ]
