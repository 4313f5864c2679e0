"""``StepGraph``: one token through a whole backbone stack as a single CUDA-graph launch.

A streaming step of a 2-layer Aaren stack is a few dozen tiny kernels (projections, the scan
update, norms); on a GPU each launch costs more than its arithmetic, so an eager step is
launch-bound. ``StepGraph`` captures ``model.step`` once for a fixed batch size and replays it:
one launch per token, whatever the depth.

State stays explicit (passed in, returned), in two sets of static buffers used in turn: the
graph that reads set 0 writes set 1 and the other graph the reverse, so passing back the state
a step returned costs no copy. A state from anywhere else (``init_state``, a parallel
``forward`` over a prefix) is copied into set 0 first. A returned state is overwritten two steps
later: clone it (``map_state(torch.clone, state)``) to keep it. Without CUDA, or for a
backbone whose state grows (the Transformer's KV cache), ``step`` runs the model eagerly with
the same interface and results.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Backbone, map_state


def _leaves(state: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    map_state(lambda t: found.append(t) or t, state)
    return found


class StepGraph:
    """Replay a captured ``model.step`` for ``batch`` streams (see the module docstring).

    Parameters
    ----------
    model : Backbone
        An ``Aaren`` or ``GRUStack`` (fixed-size state), in eval mode; its weights are read at
        every replay, so later weight updates are seen.
    batch : int
        Number of streams stepped together.
    device, dtype : optional
        Default: the model's.

    Examples
    --------
    >>> import torch
    >>> from aaren_ts.nn import Aaren, StepGraph
    >>> model = Aaren(d_model=16, n_layers=2, n_heads=4).eval()
    >>> stepper = StepGraph(model, batch=3)    # captures a CUDA graph on a GPU
    >>> state = stepper.init_state()
    >>> with torch.no_grad():
    ...     for x_t in torch.randn(5, 3, 16):
    ...         y_t, state = stepper.step(x_t, state)
    >>> y_t.shape, stepper.captured == torch.cuda.is_available()
    (torch.Size([3, 16]), True)
    """

    def __init__(
        self,
        model: Backbone,
        batch: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if not isinstance(model, Backbone):
            raise TypeError(f"model must be a Backbone, got {type(model).__name__}")
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        param = next(model.parameters())
        self.model = model
        self.batch = batch
        self.device = torch.device(device) if device is not None else param.device
        self.dtype = dtype or param.dtype
        self.captured = False
        self.reason = "no CUDA device" if self.device.type != "cuda" else ""
        if self.device.type == "cuda":
            self._capture()

    def init_state(self) -> Any:
        """The empty state for ``batch`` streams (in the graph's buffers when captured)."""
        state = self.model.init_state(self.batch, self.device, self.dtype)
        return self.load_state(state) if self.captured else state

    def step(self, x_t: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """``x_t`` ``(batch, d_model)`` -> ``(y_t, state)``, as ``model.step`` (no autograd)."""
        if not self.captured:
            return self.model.step(x_t, state)
        if tuple(x_t.shape) != (self.batch, self.model.d_model):
            raise ValueError(
                f"x_t must have shape {(self.batch, self.model.d_model)} (the captured batch), "
                f"got {tuple(x_t.shape)}"
            )
        if state is None:
            state = self.init_state()
        if state is self._states[1]:
            which = 1
        else:
            which = 0
            if state is not self._states[0]:
                state = self.load_state(state)
        self._x.copy_(x_t)
        self._graphs[which].replay()
        return self._y[which].clone(), self._states[1 - which]

    def load_state(self, state: Any) -> Any:
        """Copy ``state`` into buffer set 0 and return that set (``step`` does this by itself
        for any state it did not return); shapes must match the captured ones."""
        target = _leaves(self._states[0])
        source = _leaves(state)
        if len(source) != len(target) or any(
            s.shape != t.shape for s, t in zip(source, target, strict=False)
        ):
            raise ValueError("state does not match the captured model and batch size")
        torch._foreach_copy_(target, source)
        return self._states[0]

    def _capture(self) -> None:
        model, batch = self.model, self.batch
        x = torch.zeros(batch, model.d_model, device=self.device, dtype=self.dtype)
        s0 = model.init_state(batch, self.device, self.dtype)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.no_grad():  # warm up: allocator, kernels, cuBLAS
            _, s1 = model.step(x, s0)
            _, s1 = model.step(x, s1)
        torch.cuda.current_stream(self.device).wait_stream(side)
        if [t.shape for t in _leaves(s1)] != [t.shape for t in _leaves(s0)]:
            self.reason = "the state changes shape every step (a KV cache): stepped eagerly"
            return
        s1 = map_state(torch.clone, s0)
        self._x = x
        self._states = (s0, s1)
        self._graphs, self._y = [], []
        pool = None
        for src, dst in ((s0, s1), (s1, s0)):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool), torch.no_grad():
                y, new_state = model.step(x, src)
                torch._foreach_copy_(_leaves(dst), _leaves(new_state))
            pool = graph.pool()
            self._graphs.append(graph)
            self._y.append(y)
        self.captured = True
