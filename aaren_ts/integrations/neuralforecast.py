"""``Aaren`` as a neuralforecast 3.x model.

Importing this module imports neuralforecast (the ``neuralforecast`` extra) and registers
``Aaren`` in ``neuralforecast.core.MODEL_FILENAME_DICT`` under ``"aaren"`` and ``"autoaaren"``
(the lower-case keys neuralforecast uses), so ``NeuralForecast.save`` / ``NeuralForecast.load``
handle it. ``NeuralForecast.load`` looks a saved model's class up in that dictionary by name:
import this module before loading.

``Aaren`` is quiet by default (see the class docstring, "Quiet by default"): no Lightning
logger folder, no model summary, and Lightning's per-call INFO lines ("GPU available: ...",
"Seed set to ...", "`Trainer.fit` stopped: ...") held back while it builds, fits and predicts.
"""

from __future__ import annotations

import contextlib
import logging
import math

import torch
from neuralforecast.common._base_model import BaseModel
from neuralforecast.core import MODEL_FILENAME_DICT
from neuralforecast.losses.pytorch import MAE
from pytorch_lightning.utilities import rank_zero as _pl_rank_zero
from torch import nn

from .._checks import positive_int
from ..nn import Aaren as AarenStack

__all__ = ["Aaren"]

# Trainer settings Aaren chooses unless the caller passes them: no logger (Lightning's default
# writes ./lightning_logs/ in the working directory) and no model summary table.
QUIET_TRAINER_DEFAULTS = {"logger": False, "enable_model_summary": False}

# Loggers through which Lightning reports, at INFO, what every build, fit and predict does:
# rank_zero_info ("GPU available: ...", "TPU available: ...", "HPU available: ...",
# "`Trainer.fit` stopped: ..."), seed_everything ("Seed set to ...", called by BaseModel's
# __init__) and the CUDA accelerator ("LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [...]").
_CHATTY_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning_fabric.utilities.seed",
    "pytorch_lightning.accelerators.cuda",
)


@contextlib.contextmanager
def quiet_lightning_info():
    """Hold back Lightning's routine INFO lines (``_CHATTY_LOGGERS``) for the ``with`` block.

    Each of those loggers that has no level of its own (``NOTSET``, so it inherits the
    ``pytorch_lightning`` / ``lightning_fabric`` logger's ``INFO``) is set to ``WARNING`` and
    set back to ``NOTSET`` on exit; warnings and errors still pass. A logger the caller has
    given a level (``logging.getLogger("lightning_fabric.utilities.seed").setLevel(
    logging.INFO)``) is left alone, which is how to see these lines again. Other Lightning
    INFO output (a model summary asked for with ``enable_model_summary=True``, early stopping
    messages) goes through other loggers and is untouched. Logger levels are process-wide:
    while one thread is inside the block, the same lines from another thread are held back
    too.
    """
    loggers = {logging.getLogger(name) for name in _CHATTY_LOGGERS}
    # where rank_zero_info actually writes (Lightning points it at one of the names above)
    rank_zero_log = getattr(getattr(_pl_rank_zero, "rank_zero_module", None), "log", None)
    if isinstance(rank_zero_log, logging.Logger):
        loggers.add(rank_zero_log)
    raised = [logger for logger in loggers if logger.level == logging.NOTSET]
    for logger in raised:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger in raised:
            logger.setLevel(logging.NOTSET)


def patch_tokens(window: torch.Tensor, patch_len: int, stride: int) -> torch.Tensor:
    """``(B, L)`` -> ``(B, P, patch_len)``: overlapping patches, the last ending at step L.

    Patches are counted back from the window's newest value, so the newest patch is always
    complete; where the first patch would start before the window, the window's first value
    is repeated (PatchTST repeats the last value at the end instead, but a causal reader must
    see the newest values unpadded). ``P = ceil((L - patch_len) / stride) + 1`` (1 when
    ``L <= patch_len``).

    Examples
    --------
    >>> import torch
    >>> patch_tokens(torch.arange(7.0)[None], patch_len=4, stride=2)
    tensor([[[0., 0., 1., 2.],
             [1., 2., 3., 4.],
             [3., 4., 5., 6.]]])
    """
    length = window.shape[-1]
    n_patches = max(math.ceil((length - patch_len) / stride), 0) + 1
    pad = patch_len + stride * (n_patches - 1) - length
    if pad > 0:
        window = torch.cat([window[..., :1].expand(*window.shape[:-1], pad), window], dim=-1)
    return window.unfold(-1, patch_len, stride)


class Aaren(BaseModel):
    """Aaren (attention as an RNN) as a neuralforecast model: patch tokens, an Aaren stack, a
    direct multi-horizon head.

    Univariate and channel-independent, like PatchTST: every series (``unique_id``) is its
    own sequence and all share the weights; no exogenous variables. For each window of the
    last ``input_size`` values the model

    1. normalises the window by its own mean and standard deviation (RevIN without affine
       weights; ``revin=False`` leaves it to ``scaler_type``),
    2. cuts it into overlapping patches of ``patch_len`` values every ``stride`` steps, the
       last patch ending at the newest value, and embeds each patch linearly,
    3. runs the Aaren stack (``aaren_ts.nn.Aaren``: pre-norm blocks whose attention is a
       learned query over every prefix) over the patch tokens,
    4. reads the ``h`` forecasts (times the loss's outputs) from the last token's output,
       plus a linear map of the normalised window (``linear_skip``; the "RevIN + linear"
       baseline that windowed forecasters are measured against, which helped the Aaren
       forecaster on ETTh1, see ``benchmarks/RESULTS.md``), and undoes the normalisation.

    **Recurrent inference.** The Aaren stack can absorb one token at a time in O(1) time
    and memory (``aaren_ts.nn.Aaren.step``), so a forecast of an unbounded stream never
    re-reads history. neuralforecast's API does not let that serve: every forecast,
    training window and cross-validation cutoff is a fixed window of ``input_size`` values
    handed to ``forward`` afresh, and the per-window normalisation makes each forecast a
    function of its window as a whole, so no state can be carried from one cutoff to the
    next. Within a window the parallel scan (``forward``) is the faster of the two exact
    evaluations of the same recurrence, so that is what runs; ``RECURRENT = False`` here
    means, as for neuralforecast's own models, that the ``h`` steps are forecast directly,
    not rolled out one step at a time. For streaming forecasts with carried state use
    ``aaren_ts.estimators.AarenForecaster`` (stream mode).

    Parameters
    ----------
    h : int
        Forecast horizon.
    input_size : int
        Length of the input window (``L``).
    d_model : int, default 64
        Width of the tokens and of the Aaren stack.
    n_layers : int, default 2
        Aaren blocks.
    n_heads : int, default 4
        Attention heads; must divide ``d_model``.
    d_ff : int, optional
        Feed-forward width of each block (default ``4 * d_model``).
    patch_len : int, default 16
        Values per token. ``patch_len=1, stride=1`` reads the raw values one per token.
    stride : int, default 8
        Steps between consecutive tokens; the stack reads about ``input_size / stride``
        tokens.
    dropout : float, default 0.1
        Dropout inside the blocks and on the head's input.
    revin : bool, default True
        Normalise each window by its own mean and standard deviation. Must be False with a
        distribution loss (whose scale parameters must not be shifted).
    linear_skip : bool, default True
        Add a linear map from the normalised window to the forecasts.
    recency : bool, default False
        Learnable per-head recency term in the attention scores (``aaren_ts.nn.Aaren``).
    stat_exog_list, hist_exog_list, futr_exog_list : list of str, optional
        Must be empty: the model reads the target only.
    exclude_insample_y : bool, default False
        Must be False (the target is the only input).
    loss, valid_loss : neuralforecast loss, optional
        Point, quantile (``MQLoss``) or, with ``revin=False``, distribution losses. ``loss``
        defaults to a new ``MAE()`` for each model (not one instance shared by every model
        built with the default, as a ``loss=MAE()`` default would be: ``.eval()`` on one
        model would then leave the next one's loss in eval mode, and Lightning warns);
        ``valid_loss`` to ``loss``.
    val_check_steps : int, optional
        Training steps between validation checks (with ``val_size > 0``); default
        ``min(100, max_steps)``, so a short run does not trip neuralforecast's
        "val_check_steps is greater than max_steps" warning. An explicit value is passed on
        as given.
    max_steps, learning_rate, num_lr_decays, early_stop_patience_steps, val_monitor, \
batch_size, valid_batch_size, windows_batch_size, \
inference_windows_batch_size, start_padding_enabled, training_data_availability_threshold, \
step_size, scaler_type, random_seed, drop_last_loader, alias, optimizer, optimizer_kwargs, \
lr_scheduler, lr_scheduler_kwargs, dataloader_kwargs
        As for every neuralforecast model (``neuralforecast.common._base_model.BaseModel``);
        the defaults are PatchTST's except ``learning_rate=1e-3`` and ``max_steps=1000``.
    **trainer_kwargs
        Passed to the PyTorch Lightning ``Trainer`` (``accelerator``, ``logger``,
        ``enable_progress_bar``, ...). ``logger`` defaults to ``False`` and
        ``enable_model_summary`` to ``False`` (``QUIET_TRAINER_DEFAULTS``); a value passed
        here wins. ``enable_progress_bar`` keeps Lightning's default (on).

    Notes
    -----
    **Quiet by default.** Besides the two Trainer defaults above (so nothing is written to
    ``./lightning_logs/`` and no summary table is printed), building, ``fit`` and ``predict``
    run inside ``quiet_lightning_info()``, which holds back Lightning's routine INFO lines
    ("GPU available: ...", "TPU available: ...", "Seed set to ...", "`Trainer.fit` stopped:
    ...") for the duration of the call only and restores the loggers after. Warnings are not
    filtered: those raised inside neuralforecast or Lightning themselves still show.

    Examples
    --------
    >>> from neuralforecast import NeuralForecast
    >>> from neuralforecast.utils import AirPassengersDF
    >>> from aaren_ts.integrations.neuralforecast import Aaren
    >>> model = Aaren(h=12, input_size=24, d_model=16, n_heads=2, max_steps=5,
    ...               accelerator="cpu", enable_progress_bar=False)
    >>> nf = NeuralForecast(models=[model], freq="MS")
    >>> nf.fit(AirPassengersDF)
    >>> forecast = nf.predict()
    >>> list(forecast.columns), len(forecast)
    (['unique_id', 'ds', 'Aaren'], 12)
    """

    # Class attributes, as neuralforecast's own models declare them
    EXOGENOUS_FUTR = False
    EXOGENOUS_HIST = False
    EXOGENOUS_STAT = False
    MULTIVARIATE = False  # univariate: one series per sequence, shared weights
    RECURRENT = False  # direct multi-horizon output (see the docstring)

    def __init__(
        self,
        h: int,
        input_size: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        d_ff: int | None = None,
        patch_len: int = 16,
        stride: int = 8,
        dropout: float = 0.1,
        revin: bool = True,
        linear_skip: bool = True,
        recency: bool = False,
        stat_exog_list=None,
        hist_exog_list=None,
        futr_exog_list=None,
        exclude_insample_y: bool = False,
        loss=None,
        valid_loss=None,
        max_steps: int = 1000,
        learning_rate: float = 1e-3,
        num_lr_decays: int = -1,
        early_stop_patience_steps: int = -1,
        val_monitor: str = "ptl/val_loss",
        val_check_steps: int | None = None,
        batch_size: int = 32,
        valid_batch_size: int | None = None,
        windows_batch_size: int = 1024,
        inference_windows_batch_size: int = 1024,
        start_padding_enabled: bool = False,
        training_data_availability_threshold=0.0,
        step_size: int = 1,
        scaler_type: str = "identity",
        random_seed: int = 1,
        drop_last_loader: bool = False,
        alias: str | None = None,
        optimizer=None,
        optimizer_kwargs=None,
        lr_scheduler=None,
        lr_scheduler_kwargs=None,
        dataloader_kwargs=None,
        **trainer_kwargs,
    ):
        # checked before BaseModel runs, so a bad value fails with a message naming it
        for name, value in (
            ("h", h),
            ("input_size", input_size),
            ("d_model", d_model),
            ("n_layers", n_layers),
            ("n_heads", n_heads),
            ("patch_len", patch_len),
            ("stride", stride),
        ):
            positive_int(value, name)
        if d_ff is not None:
            positive_int(d_ff, "d_ff")
        if d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
        if stride > patch_len:
            raise ValueError(
                f"stride={stride} > patch_len={patch_len} would skip values between patches"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if exclude_insample_y:
            raise ValueError("exclude_insample_y=True leaves Aaren no input: it reads y only")
        for name, value in (
            ("stat_exog_list", stat_exog_list),
            ("hist_exog_list", hist_exog_list),
            ("futr_exog_list", futr_exog_list),
        ):
            if value:
                raise ValueError(f"Aaren reads the target only; {name} must be empty")
        if loss is None:
            loss = MAE()
        if revin and getattr(loss, "is_distribution_output", False):
            raise ValueError(
                f"revin=True would shift the parameters of the distribution loss "
                f"{type(loss).__name__}; pass revin=False and a scaler_type instead"
            )
        if val_check_steps is None:
            # neuralforecast warns when val_check_steps > max_steps, then uses max_steps
            checks = min(100, max_steps)
        else:
            checks = val_check_steps
        # The quiet defaults under the user's trainer_kwargs; save_hyperparameters records
        # the merged values (a bool logger is saved, a logger object is not), so a saved
        # model loads with the same settings.
        quiet_trainer_kwargs = {**QUIET_TRAINER_DEFAULTS, **trainer_kwargs}
        with quiet_lightning_info():  # BaseModel.__init__ calls seed_everything
            super().__init__(
                h=h,
                input_size=input_size,
                stat_exog_list=stat_exog_list,
                hist_exog_list=hist_exog_list,
                futr_exog_list=futr_exog_list,
                exclude_insample_y=exclude_insample_y,
                loss=loss,
                valid_loss=valid_loss,
                max_steps=max_steps,
                learning_rate=learning_rate,
                num_lr_decays=num_lr_decays,
                early_stop_patience_steps=early_stop_patience_steps,
                val_monitor=val_monitor,
                val_check_steps=checks,
                batch_size=batch_size,
                valid_batch_size=valid_batch_size,
                windows_batch_size=windows_batch_size,
                inference_windows_batch_size=inference_windows_batch_size,
                start_padding_enabled=start_padding_enabled,
                training_data_availability_threshold=training_data_availability_threshold,
                step_size=step_size,
                scaler_type=scaler_type,
                random_seed=random_seed,
                drop_last_loader=drop_last_loader,
                alias=alias,
                optimizer=optimizer,
                optimizer_kwargs=optimizer_kwargs,
                lr_scheduler=lr_scheduler,
                lr_scheduler_kwargs=lr_scheduler_kwargs,
                dataloader_kwargs=dataloader_kwargs,
                **quiet_trainer_kwargs,
            )
        self.patch_len = patch_len
        self.stride = stride
        self.revin = revin
        self.c_out = self.loss.outputsize_multiplier
        self.embed = nn.Linear(patch_len, d_model)
        self.backbone = AarenStack(d_model, n_layers, n_heads, d_ff, dropout, recency=recency)
        self.head_dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, h * self.c_out)
        self.window_linear = nn.Linear(input_size, h * self.c_out) if linear_skip else None

    def fit(self, *args, **kwargs):
        """``BaseModel.fit``, with Lightning's routine INFO lines held back (see the Notes)."""
        with quiet_lightning_info():
            return super().fit(*args, **kwargs)

    def predict(self, *args, **kwargs):
        """``BaseModel.predict``, with Lightning's routine INFO lines held back (see the Notes)."""
        with quiet_lightning_info():
            return super().predict(*args, **kwargs)

    def forward(self, windows_batch):
        """``windows_batch["insample_y"]`` ``(B, input_size, 1)`` -> ``(B, h, c_out)``."""
        window = windows_batch["insample_y"][..., 0]  # (B, L)
        if self.revin:
            centre = window.mean(-1, keepdim=True)
            scale = torch.sqrt(window.var(-1, unbiased=False, keepdim=True) + 1e-5)
            window = (window - centre) / scale
        tokens = self.embed(patch_tokens(window, self.patch_len, self.stride))
        hidden, _ = self.backbone(tokens)
        out = self.head(self.head_dropout(hidden[:, -1]))
        if self.window_linear is not None:
            out = out + self.window_linear(window)
        out = out.reshape(window.shape[0], self.h, self.c_out)
        if self.revin:
            out = out * scale[..., None] + centre[..., None]
        return out


# NeuralForecast.save writes the lower-cased class name; NeuralForecast.load maps it back
# through this dictionary (the "auto" key mirrors neuralforecast's own entries).
MODEL_FILENAME_DICT["aaren"] = Aaren
MODEL_FILENAME_DICT["autoaaren"] = Aaren
