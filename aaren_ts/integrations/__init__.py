"""Adapters that plug Aaren into other forecasting libraries.

- ``aaren_ts.integrations.neuralforecast``: ``Aaren``, a neuralforecast 3.x model
  (``NeuralForecast(models=[Aaren(h=96, input_size=96)], freq="h")``); needs the
  ``neuralforecast`` extra.

Nothing is imported here: neuralforecast (which imports ray, several seconds) loads only when
``aaren_ts.integrations.neuralforecast`` itself is imported.
"""
