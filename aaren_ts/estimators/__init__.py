"""sktime estimators built on the Aaren backbones. They import sktime; the scan core and
layers do not."""

from .classifier import AarenClassifier, ClassifierStream
from .forecaster import AarenForecaster
from .hawkes import HawkesPointProcess
from .point_process import AarenPointProcess, EventStream
from .regressor import AarenRegressor, RegressorStream

__all__ = [
    "AarenClassifier",
    "AarenForecaster",
    "AarenPointProcess",
    "AarenRegressor",
    "ClassifierStream",
    "EventStream",
    "HawkesPointProcess",
    "RegressorStream",
]
