"""Layers and sequence backbones with one interface: parallel ``forward``, O(1)-state ``step``.

- ``Aaren``: stacked Aaren blocks (the model of the paper), ``AarenBlock``, ``AarenAttention``;
- ``CausalTransformer``: the Transformer baseline, streaming with a KV cache;
- ``GRUStack``: the classic-RNN baseline;
- ``make_backbone(name, ...)``: build any of them by name, as estimators do with ``backbone=``;
- ``StepGraph``: a whole stack's streaming step as one CUDA-graph launch.

State is explicit everywhere (passed in, returned); ``map_state`` / ``detach_state`` help
handle it. Only torch is needed to import this package.
"""

from .aaren import Aaren, AarenBlock
from .attention import AarenAttention, AttentionState
from .base import Backbone, detach_state, map_state
from .factory import BACKBONES, make_backbone
from .gru import GRUStack
from .step_graph import StepGraph
from .transformer import CausalTransformer, KVCache, TransformerState

__all__ = [
    "BACKBONES",
    "Aaren",
    "AarenAttention",
    "AarenBlock",
    "AttentionState",
    "Backbone",
    "CausalTransformer",
    "GRUStack",
    "KVCache",
    "StepGraph",
    "TransformerState",
    "detach_state",
    "make_backbone",
    "map_state",
]
