"""``DecisionAaren``: a return-conditioned policy for offline RL (Decision Transformer layout).

The paper's fourth setting (Feng et al. 2024, section 4.4): a policy trained on logged
trajectories to output the action that earns a requested return. With Aaren (or a GRU) the
policy reads the whole episode so far and each new step costs O(1) time and memory; a
Decision Transformer re-reads its last ``K = 20`` steps at every action.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from .._checks import Options, Real
from ..estimators._optim import adam
from ..estimators._params import (
    NETWORK,
    OPTIONAL_POSITIVE_INT,
    PLACEMENT,
    POSITIVE_INT,
    TRAINING,
    check_network_params,
    resolve_device,
)
from ..estimators._sizes import checked_build
from ..estimators._threads import threaded
from ..nn import Aaren, GRUStack, detach_state
from ._net import DecisionNet
from ._stream import EpisodeStream, target_returns
from ._trajectories import Trajectory, check_trajectories, returns_to_go, scale_actions

FORMAT = "aaren_ts.rl.DecisionAaren"
FORMAT_VERSION = "1"


# what each DecisionAaren parameter may be, checked at the start of fit
CONSTRAINTS = {
    **NETWORK,
    "context_length": OPTIONAL_POSITIVE_INT,
    "segment_length": POSITIVE_INT,
    "max_updates": POSITIVE_INT,
    "batch_size": POSITIVE_INT,
    "lr": TRAINING["lr"],
    "weight_decay": Real(0.0),
    "return_scale": (Options(None), Real(0.0, open={"low"})),
    "random_state": TRAINING["random_state"],
    "verbose": TRAINING["verbose"],
    "device": PLACEMENT["device"],
    "n_threads": PLACEMENT["n_threads"],
}


class DecisionAaren(BaseEstimator):
    """Return-conditioned sequence policy: Aaren, Transformer or GRU in the DT layout.

    ``fit(trajectories)`` learns to imitate each logged action given the return the episode
    still earned from there (its return-to-go), the observation and the history before it.
    ``start_episode(target_return)`` then acts: ask for a high return and the policy imitates
    the behaviour that earned it.

    Parameters
    ----------
    backbone : {"aaren", "transformer", "gru"}, default "aaren"
        The sequence model (``aaren_ts.nn.make_backbone``).
    context_length : int or None, default None
        None: the policy reads the whole episode. Aaren and the GRU then carry an O(1)
        state per step (trained on whole episodes, ``segment_length`` steps per gradient
        step, the state carried between segments; each batch row reads its own episode and
        restarts on the next when it ends); a Transformer keeps a KV cache that
        grows with the episode. An int ``K``: the Decision Transformer's sliding window,
        trained on random ``K``-step windows; each action re-reads the last ``K`` steps
        (the paper's Transformer baseline uses ``K = 20``).
    d_model, n_layers, n_heads : int, default 64, 3, 4
        Width, depth and attention heads. Aaren's query is learned, not read from the token,
        so each head is one pooled summary of the past with its own recency: 4 heads beat 1
        and 8 on validation runs (``benchmarks/RESULTS.md``, offline RL); the Transformer
        scored the same with 1 or 4.
    dropout : float, default 0.1
    recency : bool, default True
        Aaren only: a learned per-head recency term, so a long episode's latest steps can
        outweigh its first ones (without it, full-history attention weighs step 1 of a
        1,000-step episode like step 999).
    segment_length : int, default 20
        Steps per gradient step when ``context_length=None`` (truncated backpropagation).
    max_updates : int, default 2000
        Gradient steps.
    batch_size : int, default 32
        Rows per gradient step: windows (``context_length=K``) or episode streams (``None``).
    lr, weight_decay : float, default 1e-3, 1e-4
        AdamW, with a linear warm-up over the first 10% of the updates; gradients are
        clipped at norm 0.25 as in the Decision Transformer.
    return_scale : float or None, default None
        Returns-to-go are divided by it; None: the largest absolute episode return in the
        training data.
    random_state : int or None, default None
        Seeds initialisation and sampling.
    device : str, default "auto"
        "auto" (CUDA when present), "cpu", "cuda", ...
    n_threads : int or None, default None
        Torch threads per call (see the README's "CPU threads"); None: one for small nets.
    verbose : bool, default False
        A progress bar with the loss (tqdm when installed).

    Attributes
    ----------
    network_ : DecisionNet
    obs_mean_, obs_std_ : ndarray
        Observation standardisation.
    action_low_, action_high_ : ndarray
        The range of the logged actions; the head's tanh is mapped onto it.
    return_scale_ : float
    max_timestep_ : int
        The longest training episode; later steps share its step embedding.
    loss_curve_ : list of float
        Mean training loss per 50 updates.

    Examples
    --------
    >>> import numpy as np
    >>> from aaren_ts.rl import DecisionAaren
    >>> rng = np.random.default_rng(0)
    >>> def episode():   # reward 1 when the action matches the sign of the observation
    ...     obs = rng.normal(size=(30, 2)).astype("float32")
    ...     act = np.sign(obs[:, :1]) * rng.uniform(0.5, 1, size=(30, 1))
    ...     return {"observations": obs, "actions": act, "rewards": np.ones(30)}
    >>> policy = DecisionAaren(d_model=16, max_updates=30, random_state=0)
    >>> policy = policy.fit([episode() for _ in range(8)])
    >>> stream = policy.start_episode(target_return=30.0)
    >>> action = stream.act(np.array([0.5, -1.0]))      # O(1) per step
    >>> stream.observe(reward=1.0)
    >>> action.shape
    (1,)
    """

    def __init__(
        self,
        backbone: str = "aaren",
        context_length: int | None = None,
        d_model: int = 64,
        n_layers: int = 3,
        n_heads: int = 4,
        dropout: float = 0.1,
        recency: bool = True,
        segment_length: int = 20,
        max_updates: int = 2000,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        return_scale: float | None = None,
        random_state: int | None = None,
        device: str = "auto",
        n_threads: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.backbone = backbone
        self.context_length = context_length
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.dropout = dropout
        self.recency = recency
        self.segment_length = segment_length
        self.max_updates = max_updates
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.return_scale = return_scale
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting
    def _check_params(self) -> None:
        check_network_params(self, CONSTRAINTS)

    @threaded
    def fit(self, trajectories: Any) -> DecisionAaren:
        """Learn from ``trajectories`` (see ``aaren_ts.rl._trajectories`` for the layouts).

        Everything is checked before any state changes: a failed fit leaves a fitted policy
        as it was.
        """
        self._check_params()
        episodes = check_trajectories(trajectories)
        device = resolve_device(self.device)
        obs = np.concatenate([e.observations for e in episodes])
        acts = np.concatenate([e.actions for e in episodes])
        obs_mean = obs.mean(0)
        obs_std = obs.std(0)
        obs_std = np.where(obs_std > 1e-6, obs_std, 1.0).astype(np.float32)
        low, high = acts.min(0), acts.max(0)
        high = np.where(high - low > 1e-6, high, low + 1.0)  # a constant action: any range
        totals = np.array([float(e.rewards.sum()) for e in episodes])
        if self.return_scale is not None:
            scale = float(self.return_scale)
        else:
            scale = float(np.abs(totals).max()) or 1.0
        max_timestep = max(len(e) for e in episodes)
        seed = 0 if self.random_state is None else int(self.random_state)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed if self.random_state is not None else torch.seed())
            net = checked_build(
                lambda: self._network(obs.shape[1], acts.shape[1], max_timestep),
                "DecisionAaren",
                {"d_model": self.d_model, "n_layers": self.n_layers},
            ).to(device)
            generator = torch.Generator().manual_seed(seed)
            fitted = {
                "obs_mean_": obs_mean.astype(np.float32),
                "obs_std_": obs_std,
                "action_low_": low.astype(np.float32),
                "action_high_": high.astype(np.float32),
                "return_scale_": scale,
                "max_timestep_": max_timestep,
            }
            padded = self._padded(episodes, fitted, device)
            losses = self._train(net, padded, generator)
        net.eval()
        # only now, with everything computed, does the policy change
        for key, value in fitted.items():
            setattr(self, key, value)
        self.network_, self.loss_curve_, self._device = net, losses, device
        self.n_trajectories_ = len(episodes)
        return self

    def _network(self, obs_dim: int, act_dim: int, max_timestep: int) -> DecisionNet:
        """The network these parameters describe, freshly initialised (on the CPU)."""
        return DecisionNet(
            obs_dim=obs_dim,
            act_dim=act_dim,
            max_timestep=max_timestep,
            backbone=self.backbone,
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            dropout=self.dropout,
            recency=self.recency,
        )

    def _padded(self, episodes: list[Trajectory], fitted: dict, device) -> dict:
        """All episodes right-padded to the longest, scaled, with a mask of real steps."""
        n, longest = len(episodes), fitted["max_timestep_"]
        obs_dim, act_dim = episodes[0].observations.shape[1], episodes[0].actions.shape[1]
        obs = np.zeros((n, longest, obs_dim), np.float32)
        acts = np.zeros((n, longest, act_dim), np.float32)
        rtg = np.zeros((n, longest), np.float32)
        lengths = np.array([len(e) for e in episodes])
        for i, e in enumerate(episodes):
            t = len(e)
            obs[i, :t] = (e.observations - fitted["obs_mean_"]) / fitted["obs_std_"]
            acts[i, :t] = scale_actions(e.actions, fitted["action_low_"], fitted["action_high_"])
            rtg[i, :t] = returns_to_go(e.rewards) / fitted["return_scale_"]
        as_tensor = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        return {
            "obs": as_tensor(obs),
            "actions": as_tensor(acts),
            "rtg": as_tensor(rtg),
            "lengths": torch.as_tensor(lengths, device=device),
        }

    def _progress(self):
        if not self.verbose:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is in the dev extra
            return None
        return tqdm(total=self.max_updates, desc=f"DecisionAaren ({self.backbone})", unit="update")

    def _train(self, net: DecisionNet, data: dict, generator: torch.Generator) -> list[float]:
        net.train()
        optimizer = adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        warmup = max(1, self.max_updates // 10)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup)
        )
        if self.context_length is not None:
            batches = self._windows(data, generator)
        elif _row_dim(net.backbone) is not None:
            batches = self._streams(data, generator)
        else:  # a KV cache's rows cannot restart on their own: whole batches of episodes
            batches = self._segments(data, generator)
        bar, losses, running, carried = self._progress(), [], [], None
        for update in range(self.max_updates):
            (rtg, obs, actions, timesteps, mask), fresh = next(batches)
            if isinstance(fresh, torch.Tensor):  # episode streams: the rows that restart
                carried = None if fresh.all() else _restart_rows(net.backbone, carried, fresh)
            elif fresh:
                carried = None
            pred, state = net(rtg, obs, actions, timesteps, carried)
            if self.context_length is None:
                # truncated backpropagation: the next segment starts from this state, detached
                carried = detach_state(state)
            err = ((pred - actions) ** 2).mean(-1)
            loss = (err * mask).sum() / mask.sum().clamp(min=1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 0.25)
            optimizer.step()
            schedule.step()
            running.append(loss.item())
            if len(running) == 50 or update == self.max_updates - 1:
                losses.append(float(np.mean(running)))
                running = []
                if bar is not None:
                    bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return losses

    def _windows(self, data: dict, generator: torch.Generator):
        """Random ``context_length``-step windows, episodes drawn in proportion to length;
        each window starts from an empty state (``fresh``)."""
        lengths = data["lengths"]
        device = lengths.device
        weights = lengths.double().cpu() / lengths.sum().item()
        steps = torch.arange(self.context_length, device=device)
        last = data["rtg"].shape[1] - 1
        while True:
            idx = torch.multinomial(weights, self.batch_size, True, generator=generator)
            idx = idx.to(device)
            start = torch.rand(self.batch_size, generator=generator).to(device) * lengths[idx]
            t = start.long()[:, None] + steps
            mask = (t < lengths[idx, None]).float()
            t = t.clamp(max=last)
            rows = idx[:, None]
            yield _gather(data, rows, t, mask), True

    def _streams(self, data: dict, generator: torch.Generator):
        """Whole episodes for a recurrent backbone, as ``batch_size`` independent streams.

        Each row of the batch reads its own episode ``segment_length`` steps at a time, from
        the state its previous segment left; when the episode ends the row restarts (an empty
        state) on the next episode of a shuffled pass over all of them. Rows sit at different
        episodes and steps, so consecutive updates are nearly independent draws of the data,
        as the windowed Transformer's are; whole-batch episode groups made runs of ~50
        updates on the same few long episodes. ``fresh``: the rows that restart.
        """
        lengths = data["lengths"]
        device = lengths.device
        n, rows = len(lengths), self.batch_size
        queue: list[int] = []

        def next_episode() -> int:
            if not queue:  # a new shuffled pass over the episodes
                queue.extend(torch.randperm(n, generator=generator).tolist())
            return queue.pop()

        episode = torch.tensor([next_episode() for _ in range(rows)], device=device)
        start = torch.zeros(rows, dtype=torch.long, device=device)
        fresh = torch.ones(rows, dtype=torch.bool, device=device)
        steps = torch.arange(self.segment_length, device=device)
        last = data["rtg"].shape[1] - 1
        while True:
            t = start[:, None] + steps
            mask = (t < lengths[episode, None]).float()
            yield _gather(data, episode[:, None], t.clamp(max=last), mask), fresh
            start = start + self.segment_length
            fresh = start >= lengths[episode]
            for row in fresh.nonzero().flatten().tolist():
                episode[row] = next_episode()
            start = torch.where(fresh, 0, start)

    def _segments(self, data: dict, generator: torch.Generator):
        """Whole episodes, ``batch_size`` at a time, ``segment_length`` steps per update;
        ``fresh`` only at an episode batch's first segment (the loop carries the state)."""
        lengths = data["lengths"]
        device = lengths.device
        n = len(lengths)
        while True:
            # episodes of similar length share a batch (little padding); batches shuffled
            jitter = torch.rand(n, generator=generator)
            order = torch.argsort(lengths.cpu().double() + jitter)
            groups = order.split(self.batch_size)
            for g in torch.randperm(len(groups), generator=generator).tolist():
                rows = groups[g].to(device)[:, None]
                span = int(lengths[rows].max())
                for a in range(0, span, self.segment_length):
                    t = torch.arange(a, min(a + self.segment_length, span), device=device)
                    t = t[None].expand(len(rows), -1)
                    mask = (t < lengths[rows]).float()
                    yield _gather(data, rows, t, mask), a == 0

    # ------------------------------------------------------------------ acting
    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet: call fit(trajectories) first"
            )

    def start_episode(self, target_return: float, n_envs: int | None = None) -> EpisodeStream:
        """A stream that acts in one episode (or ``n_envs`` episodes side by side).

        Parameters
        ----------
        target_return : float or array of shape (n_envs,)
            The return to earn; each ``observe(reward)`` subtracts what was earned.
        n_envs : int, optional
            Act in that many episodes at once: ``act`` then takes ``(n_envs, obs_dim)``
            observations and ``observe`` ``(n_envs,)`` rewards.
        """
        self._check_fitted()
        return EpisodeStream(self, target_return, n_envs)

    @threaded
    def predict(self, trajectory: Any, target_return: float | None = None) -> np.ndarray:
        """The action the policy would choose at each step of ``trajectory``, in one pass.

        The history at step ``t`` is the trajectory's own observations, actions and rewards
        before ``t``; ``target_return`` (default: the trajectory's return) sets the return to
        go. A stream fed the same steps (``observe(reward, action=...)``) gives the same
        actions: this is its parallel reference.
        """
        self._check_fitted()
        traj = check_trajectories(trajectory)
        if len(traj) != 1:
            raise ValueError("predict takes one trajectory (a dict), not several")
        traj = traj[0]
        self._check_obs_width(traj.observations)
        if target_return is not None:  # checked as start_episode checks it
            target_return = float(target_returns(target_return, 1)[0])
        device = self._device
        t_len = len(traj)
        rtg = returns_to_go(traj.rewards, target_return) / self.return_scale_
        obs = (traj.observations - self.obs_mean_) / self.obs_std_
        acts = scale_actions(traj.actions, self.action_low_, self.action_high_)
        as_tensor = lambda a: torch.as_tensor(a, device=device)[None]  # noqa: E731
        times = torch.arange(t_len, device=device)[None]
        net = self.network_
        with torch.inference_mode():
            if self.context_length is None or t_len <= self.context_length:
                pred, _ = net(as_tensor(rtg), as_tensor(obs), as_tensor(acts), times)
                return self._unscale(pred[0])
            # the first K-1 steps read the episode from its start, later ones their window
            k = self.context_length
            pred_first, _ = net(
                as_tensor(rtg[:k]), as_tensor(obs[:k]), as_tensor(acts[:k]), times[:, :k]
            )
            windows = torch.arange(k - 1, t_len)[:, None] + torch.arange(k)[None] - (k - 1)
            w = windows.to(device)
            pred_rest, _ = net(
                torch.as_tensor(rtg, device=device)[w],
                torch.as_tensor(obs, device=device)[w],
                torch.as_tensor(acts, device=device)[w],
                w,
            )
            pred = torch.cat([pred_first[0, : k - 1], pred_rest[:, -1]])
            return self._unscale(pred)

    def _unscale(self, scaled: torch.Tensor) -> np.ndarray:
        scaled = scaled.detach().to("cpu", torch.float32).numpy()
        if not np.isfinite(scaled).all():
            # inputs within float32's range but far outside the training data overflow
            raise ValueError(
                "the observations or returns drive the policy to NaN or inf actions: they "
                "are far outside anything fit saw (they overflow float32 inside the "
                "network); rescale them"
            )
        return (scaled + 1) / 2 * (self.action_high_ - self.action_low_) + self.action_low_

    def _check_obs_width(self, observations: np.ndarray) -> None:
        width = observations.shape[-1]
        if width != len(self.obs_mean_):
            raise ValueError(
                f"trajectory observations have {width} columns; the policy was fitted on "
                f"{len(self.obs_mean_)}"
            )

    # ------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted policy to one ``.safetensors`` file (weights and settings; no
        pickled code, so loading an untrusted file cannot run anything). Needs safetensors
        (the ``rl`` extra)."""
        save_file = _safetensors().torch.save_file

        self._check_fitted()
        tensors = {f"net.{k}": v.detach().cpu().contiguous()
                   for k, v in self.network_.state_dict().items()}  # fmt: skip
        for key in ("obs_mean_", "obs_std_", "action_low_", "action_high_"):
            tensors[key] = torch.as_tensor(getattr(self, key))
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "params": json.dumps(self.get_params()),
            "fitted": json.dumps({
                "return_scale_": self.return_scale_,
                "max_timestep_": self.max_timestep_,
                "n_trajectories_": self.n_trajectories_,
                "loss_curve_": self.loss_curve_,
            }),
        }  # fmt: skip
        target = os.fspath(path)
        tmp = f"{target}.tmp{os.getpid()}"
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, target)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> DecisionAaren:
        """Read a policy written by ``save`` onto ``device``."""
        safetensors = _safetensors()
        SafetensorError = safetensors.SafetensorError
        load_file, safe_open = safetensors.torch.load_file, safetensors.safe_open

        try:
            with safe_open(os.fspath(path), framework="pt") as handle:
                meta = handle.metadata() or {}
            tensors = load_file(os.fspath(path))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{path} is not a saved DecisionAaren ({err})") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a saved DecisionAaren (format {meta.get('format')!r})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path} has format version {meta.get('format_version')!r}; "
                             f"this aaren_ts reads {FORMAT_VERSION}")  # fmt: skip
        try:
            params = json.loads(meta["params"])
            fitted = json.loads(meta["fitted"])
        except (KeyError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: its settings are damaged ({err})") from None
        policy = cls(**{**params, "device": device})
        policy._check_params()
        resolved = resolve_device(device)
        weights = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        try:
            net = policy._network(
                weights["embed_obs.weight"].shape[1],
                weights["embed_action.weight"].shape[1],
                int(fitted["max_timestep_"]),
            )
            net.load_state_dict(weights, strict=True)
        except (KeyError, RuntimeError) as err:
            raise ValueError(f"{path}: its weights do not match its settings ({err})") from None
        policy.network_ = net.to(resolved).eval()
        policy._device = resolved
        for key in ("obs_mean_", "obs_std_", "action_low_", "action_high_"):
            policy.__dict__[key] = tensors[key].numpy()
        policy.return_scale_ = float(fitted["return_scale_"])
        policy.max_timestep_ = int(fitted["max_timestep_"])
        policy.n_trajectories_ = int(fitted["n_trajectories_"])
        policy.loss_curve_ = list(fitted["loss_curve_"])
        return policy

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "network_")


def _safetensors():
    try:
        import safetensors
        import safetensors.torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "saving and loading a DecisionAaren needs safetensors: pip install 'aaren-ts[rl]'"
        ) from None
    return safetensors


def _row_dim(backbone: torch.nn.Module) -> int | None:
    """The batch dimension of the backbone's state when its rows can restart on their own
    (Aaren: 0, the GRU's ``(layers, batch, d)``: 1); None for a KV cache, whose rows share
    one context length."""
    if isinstance(backbone, GRUStack):
        return 1
    if isinstance(backbone, Aaren):
        return 0
    return None


def _restart_rows(backbone: torch.nn.Module, state: Any, restart: torch.Tensor) -> Any:
    """``state`` with the rows where ``restart`` is True emptied (see ``_row_dim``)."""
    fresh = backbone.init_state(len(restart), restart.device)
    batch_dim = _row_dim(backbone)

    def merge(old: Any, new: Any) -> Any:
        if isinstance(old, torch.Tensor):
            shape = [1] * old.dim()
            shape[batch_dim] = -1
            return torch.where(restart.view(shape), new, old)
        if isinstance(old, tuple) and hasattr(old, "_fields"):
            return type(old)(*(merge(a, b) for a, b in zip(old, new, strict=True)))
        return type(old)(merge(a, b) for a, b in zip(old, new, strict=True))

    return merge(state, fresh)


def _gather(data: dict, rows: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> tuple:
    """The training tensors of episodes ``rows`` at steps ``t`` (both ``(B, T)``-broadcast)."""
    return data["rtg"][rows, t], data["obs"][rows, t], data["actions"][rows, t], t, mask
