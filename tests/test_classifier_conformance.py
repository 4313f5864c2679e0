"""sktime's own conformance suite for AarenClassifier and AarenRegressor (every check of
``check_estimator``, with the tiny ``get_test_params``)."""

from __future__ import annotations

from sktime.utils.estimator_checks import check_estimator, parametrize_with_checks

from aaren_ts.estimators import AarenClassifier, AarenRegressor


@parametrize_with_checks([AarenClassifier, AarenRegressor])
def test_sktime_conformance(obj, test_name):
    check_estimator(obj, tests_to_run=test_name, raise_exceptions=True)
