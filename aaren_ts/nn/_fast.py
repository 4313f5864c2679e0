"""``module(x)`` for plain torch layers without ``nn.Module``'s per-call overhead.

A stream's step runs a dozen tiny layers per token, where the overhead around each call
costs more than its arithmetic: ``Module.__call__`` checks for hooks, and ``forward`` reads
the weights as attributes, which reach ``Module.__getattr__`` (on Python 3.11 each such
read first raises and formats an AttributeError inside the interpreter). For a plain
``nn.Linear``, ``nn.LayerNorm`` or ``nn.GELU`` with no hook registered (on the layer or
globally) and no JIT tracing, ``module(x)`` is exactly one functional call on the layer's
own parameters; ``call`` makes that call with the parameters read from the layer's
parameter dict. Anything else (a subclass, a hook, tracing) takes ``module(x)``, so results
and hooks are the same either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module

# the global hook registries Module.__call__ consults (dicts, filled in place)
_GLOBAL_HOOKS = tuple(
    getattr(_module, name, {})
    for name in (
        "_global_backward_pre_hooks",
        "_global_backward_hooks",
        "_global_forward_hooks",
        "_global_forward_pre_hooks",
    )
)


def _hookless(module: nn.Module) -> bool:
    """Whether ``module(x)`` would go straight to ``forward`` (``Module._call_impl``'s test)."""
    return not (
        module._backward_hooks
        or module._backward_pre_hooks
        or module._forward_hooks
        or module._forward_pre_hooks
        or any(_GLOBAL_HOOKS)
        or torch._C._get_tracing_state()
    )


def call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, as one functional call for a plain Linear, LayerNorm or GELU.

    >>> import torch
    >>> layer = torch.nn.Linear(3, 2)
    >>> x = torch.randn(4, 3)
    >>> torch.equal(call(layer, x), layer(x))
    True
    """
    kind = type(module)
    if kind is nn.Linear and _hookless(module):
        params = module._parameters
        return F.linear(x, params["weight"], params["bias"])
    if kind is nn.LayerNorm and _hookless(module):
        params = module._parameters
        return F.layer_norm(x, module.normalized_shape, params["weight"], params["bias"],
                            module.eps)  # fmt: skip
    if kind is nn.GELU and _hookless(module):
        return F.gelu(x, approximate=module.approximate)
    return module(x)
