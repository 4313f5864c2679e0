"""aaren_ts: Aaren (attention as an RNN) for time series.

Subpackages: ``aaren_ts.scan`` (the scan core), ``aaren_ts.nn`` (layers and backbones),
``aaren_ts.estimators`` (sktime estimators) and ``aaren_ts.datasets`` (benchmark loaders).
Nothing heavy is imported here: ``import aaren_ts.scan`` and ``import aaren_ts.nn`` need only
torch.
"""

__version__ = "0.1.0"
