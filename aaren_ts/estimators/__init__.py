"""sktime estimators built on the Aaren backbones (forecasting, classification, regression,
temporal point processes). They import sktime; the scan core and layers do not."""

__all__: list[str] = []
