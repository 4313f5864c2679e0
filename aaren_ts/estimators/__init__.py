"""sktime estimators built on the Aaren backbones. They import sktime; the scan core and
layers do not."""

from .forecaster import AarenForecaster

__all__ = ["AarenForecaster"]
