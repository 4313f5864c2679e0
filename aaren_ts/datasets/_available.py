"""Which data files the loaders would find without downloading anything."""

from __future__ import annotations

from . import events, forecasting, uea

# the loaders with splits; "forecasting" (one file per data set) is the third kind
_SPLIT_KINDS = {"uea": uea._missing, "events": events._missing}


def missing_files(
    kind: str, name: str, split: str | None = None, *, cache: bool = True
) -> dict[str, str | None]:
    """The files of a data set that are not local: ``{path under AAREN_TS_DATA: download URL,
    or None where there is no direct download}``; empty when the loader needs no download.

    Parameters
    ----------
    kind : {"forecasting", "uea", "events"}
        The loader: ``load_forecasting``, ``load_uea`` or ``load_event_sequences``.
    name : str
        The data set, as the loader takes it.
    split : str, optional
        One split (``"train"``, ``"test"``; events also ``"valid"``); default every split.
        ``load_forecasting`` has no split (one file).
    cache : bool, default True
        Whether a file in the download cache (``$AAREN_TS_CACHE``, else
        ``~/.cache/aaren_ts``) counts; ``$AAREN_TS_DATA`` always does.

    Only where the files are is checked, not their checksums (the loaders check those).

    Examples
    --------
    >>> import os, tempfile
    >>> from unittest import mock
    >>> from aaren_ts.datasets import missing_files
    >>> with tempfile.TemporaryDirectory() as empty:  # nothing local, whatever is installed
    ...     with mock.patch.dict(os.environ, AAREN_TS_DATA=empty, AAREN_TS_CACHE=empty):
    ...         print(sorted(missing_files("uea", "BasicMotions")))
    ...         print(missing_files("forecasting", "weather"))  # no direct download
    ['classification/BasicMotions/BasicMotions_TEST.ts', 'classification/BasicMotions/BasicMotions_TRAIN.ts']
    {'forecasting/weather.csv': None}
    """  # noqa: E501
    if kind == "forecasting":
        if split is not None:
            raise ValueError("forecasting data sets have no split: one file each")
        return forecasting._missing(name, cache)
    if kind not in _SPLIT_KINDS:
        raise ValueError(
            f"kind must be one of {sorted(['forecasting', *_SPLIT_KINDS])}, got {kind!r}"
        )
    return _SPLIT_KINDS[kind](name, split, cache)


def data_available(kind: str, name: str, split: str | None = None, *, cache: bool = True) -> bool:
    """Whether the loader finds the data set (one ``split``, or every split) without
    downloading: under ``$AAREN_TS_DATA``, or (``cache=True``) in the download cache.
    Arguments as for ``missing_files``.

    Examples
    --------
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> from unittest import mock
    >>> from aaren_ts.datasets import data_available
    >>> with tempfile.TemporaryDirectory() as root:
    ...     with mock.patch.dict(os.environ, AAREN_TS_DATA=root):
    ...         print(data_available("events", "hawkes1", cache=False))
    ...         (Path(root) / "tpp" / "synthetic_hawkes").mkdir(parents=True)
    ...         (Path(root) / "tpp" / "synthetic_hawkes" / "hawkes1.npz").touch()
    ...         print(data_available("events", "hawkes1", cache=False))  # found, not verified
    False
    True
    """
    return not missing_files(kind, name, split, cache=cache)
