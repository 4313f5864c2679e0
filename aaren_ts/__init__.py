"""aaren_ts: Aaren (attention as an RNN) for time series.

Subpackages: ``aaren_ts.scan`` (the scan core), ``aaren_ts.nn`` (layers and backbones),
``aaren_ts.estimators`` (sktime estimators) and ``aaren_ts.datasets`` (benchmark loaders).
Nothing heavy is imported here: ``import aaren_ts.scan`` and ``import aaren_ts.nn`` need only
torch.
"""

__version__ = "0.1.0"

# The sktime estimators, exported lazily: ``from aaren_ts import AarenClassifier`` imports
# sktime only then, so ``import aaren_ts`` stays light.
_LAZY = {
    "AarenClassifier": "aaren_ts.estimators",
    "AarenForecaster": "aaren_ts.estimators",
    "AarenPointProcess": "aaren_ts.estimators",
    "AarenRegressor": "aaren_ts.estimators",
    "HawkesPointProcess": "aaren_ts.estimators",
    "load": "aaren_ts.estimators._persistence",  # checked loading of saved estimators
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aaren_ts' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
