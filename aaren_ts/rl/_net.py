"""``DecisionNet``: the Decision Transformer layout around any backbone of ``aaren_ts.nn``.

Each environment step ``t`` becomes three tokens, ``(R_t, s_t, a_t)``: the return still to
earn, the observation and the action, each embedded linearly plus an embedding of ``t`` (as
in Chen et al. 2021), then layer-normalised. The backbone reads the interleaved sequence
causally and the action ``a_t`` is predicted from the output at ``s_t``, so it sees ``R_t``,
``s_t`` and everything before, never ``a_t`` itself.

``forward`` runs whole sequences (training, and the parallel reference of a stream);
``tokens_for_step`` builds what one ``act`` appends (``a_{t-1}``, ``R_t``, ``s_t``), which the
backbone continues from its state, so a stream equals one pass over the same history.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..nn import make_backbone
from ..nn._fast import call


class DecisionNet(nn.Module):
    """Embeddings, a causal backbone and a tanh action head (actions scaled to [-1, 1])."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        max_timestep: int,
        backbone: str,
        d_model: int,
        n_layers: int,
        n_heads: int,
        dropout: float,
        recency: bool,
    ) -> None:
        super().__init__()
        self.max_timestep = max_timestep
        self.embed_return = nn.Linear(1, d_model)
        self.embed_obs = nn.Linear(obs_dim, d_model)
        self.embed_action = nn.Linear(act_dim, d_model)
        self.embed_time = nn.Embedding(max_timestep, d_model)
        self.embed_norm = nn.LayerNorm(d_model)
        self.embed_dropout = nn.Dropout(dropout)
        kwargs: dict[str, Any] = {}
        if backbone == "aaren":
            kwargs["recency"] = recency
        elif backbone == "transformer":
            kwargs["positional"] = None  # the step embedding gives the order
        self.backbone = make_backbone(
            backbone, d_model=d_model, n_layers=n_layers, n_heads=n_heads, dropout=dropout, **kwargs
        )
        self.head = nn.Sequential(nn.Linear(d_model, act_dim), nn.Tanh())

    def _time(self, timesteps: torch.Tensor) -> torch.Tensor:
        # steps past the longest training episode share the last embedding
        return self.embed_time(timesteps.clamp(0, self.max_timestep - 1))

    def _finish(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = call(self._modules["embed_norm"], tokens)
        if self.training:  # outside training the dropout is an identity: not called
            tokens = self.embed_dropout(tokens)
        return tokens

    def _act(self, out: torch.Tensor) -> torch.Tensor:
        """The action head (a linear layer, then tanh) on backbone outputs."""
        linear, squash = self.head
        return squash(call(linear, out))

    def forward(
        self,
        rtg: torch.Tensor,
        obs: torch.Tensor,
        actions: torch.Tensor,
        timesteps: torch.Tensor,
        state: Any = None,
    ) -> tuple[torch.Tensor, Any]:
        """``rtg (B, T)``, ``obs (B, T, obs_dim)``, ``actions (B, T, act_dim)``, ``timesteps
        (B, T)`` -> predicted actions ``(B, T, act_dim)`` and the backbone's state."""
        batch, steps = rtg.shape
        time = self._time(timesteps)
        tokens = torch.stack(
            [
                self.embed_return(rtg.unsqueeze(-1)) + time,
                self.embed_obs(obs) + time,
                self.embed_action(actions) + time,
            ],
            dim=2,
        ).reshape(batch, 3 * steps, -1)
        out, state = self.backbone(self._finish(tokens), state)
        return self._act(out[:, 1::3]), state

    def tokens_for_step(
        self,
        rtg: torch.Tensor,
        obs: torch.Tensor,
        timestep: torch.Tensor,
        previous_action: torch.Tensor | None,
    ) -> torch.Tensor:
        """The tokens one ``act`` appends: ``(B, 2 or 3, d_model)``."""
        time = self._time(timestep)
        layers = self._modules  # plain layers as single calls (see aaren_ts.nn._fast)
        parts = []
        if previous_action is not None:
            parts.append(call(layers["embed_action"], previous_action) + self._time(timestep - 1))
        parts += [
            call(layers["embed_return"], rtg.unsqueeze(-1)) + time,
            call(layers["embed_obs"], obs) + time,
        ]
        return self._finish(torch.stack(parts, dim=1))

    def continue_from(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Feed ``tokens`` after ``state``; the action predicted at the last one (``s_t``).

        The head reads that token alone, so the backbone's top layer computes its output
        only (``last_only``); the state is the full pass's."""
        out, state = self.backbone(tokens, state, last_only=True)
        return self._act(out), state
