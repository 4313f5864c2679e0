"""UEA multivariate time-series classification archive (sktime ``.ts`` files).

``load_uea(name, split)`` looks for ``<Name>_<SPLIT>.ts``, in order, in

1. ``$AAREN_TS_DATA`` (``<root>/classification/<Name>/``, ``<root>/<Name>/`` or ``<root>/``);
2. the cache folder (``$AAREN_TS_CACHE``, else ``~/.cache/aaren_ts``), under
   ``classification/<Name>/``;
3. the archive's zip of the data set, downloaded and unpacked into the cache
   (``DataUnavailableError``, one line that says where to put the file, where none works),

and checks each file's SHA-256 against the published copy (``UEA_SHA256``), so a
truncated or altered file is an error; a data set without a pinned checksum loads only
with ``allow_unpinned=True``. A downloaded zip with two members of the same name, or one
declaring more than ``MAX_MEMBER_BYTES`` uncompressed, is refused before anything is
unpacked. The file is read by sktime's ``load_from_tsfile``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from .._checks import boolean
from ._files import cache_dir, check_sha256, data_root, fetch, unavailable, write_atomically

# The archive's per-data-set zips (as sktime's and aeon's loaders fetch them).
UEA_URL = "https://timeseriesclassification.com/aeon-toolkit/{name}.zip"

# SHA-256 of the .ts files as published in the archive.
UEA_SHA256: dict[str, str] = {
    "BasicMotions_TRAIN.ts": "8dc43cc6306cb679c888c01e26f91772ac4441a916da43bac8b79734a538b9d6",
    "BasicMotions_TEST.ts": "79213102bc6fca1a398ad98ce1185dff0208fa3d1465e687f48288946b0ff8dc",
    "Handwriting_TRAIN.ts": "c187e2288bd7f0667ab7453de436feeadb5dd417c5778a6c62b71852b50736cc",
    "Handwriting_TEST.ts": "156ee781ad41d58b4e5d48a907aef956f5a3756e1ab2d796c785db1a47863524",
    "JapaneseVowels_TRAIN.ts": "68a430eabd919cc77f40b1f5f3bc0dcafacc1486bca9260785aeb7d262cc78cd",
    "JapaneseVowels_TEST.ts": "b3d41d6a0ca3bcad3afb9ca7d4365382aa51341e2e58bae2a574babdda5b9462",
}


def _file_name(name: str, split: str) -> str:
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
        raise ValueError(f"name must be a UEA data set name such as 'BasicMotions', got {name!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return f"{name}_{split.upper()}.ts"


# the largest member a downloaded archive may declare: the archive's largest .ts files are
# a few hundred MB; a tiny zip declaring more is refused before it is inflated
MAX_MEMBER_BYTES = 2**31


def _download(name: str, missing: str, folder: Path, allow_unpinned: bool) -> None:
    """Fetch the data set's zip (for its ``missing`` file), check both splits' checksums, then
    unpack them into ``folder`` (atomically: nothing is written unless both splits are good)."""
    url = UEA_URL.format(name=name)
    payload = fetch(url, name, _relative(name, missing), timeout=120)
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
    except zipfile.BadZipFile as err:
        raise ValueError(f"download of {url} is not a zip archive; nothing was saved") from err
    files = {}
    for split in ("train", "test"):
        file = _file_name(name, split)
        found = [info for info in archive.infolist() if Path(info.filename).name == file]
        if not found:
            raise ValueError(f"{url} has no {file}; nothing was saved")
        if len(found) > 1:  # which one is "the" file would be up to the unpacker
            raise ValueError(
                f"{url} has {len(found)} members named {file} "
                f"({', '.join(i.filename for i in found)}): refusing an ambiguous archive"
            )
        if found[0].file_size > MAX_MEMBER_BYTES:
            raise ValueError(
                f"{file} in {url} declares {found[0].file_size} bytes uncompressed, more than "
                f"{MAX_MEMBER_BYTES}: refused before inflating it"
            )
        data = archive.read(found[0])
        check_sha256(data, UEA_SHA256.get(file), file, f"{file} in {url}", allow_unpinned)
        files[file] = data
    for file, data in files.items():
        write_atomically(folder / file, data)


def _relative(name: str, file: str) -> str:
    return f"classification/{name}/{file}"


def _local(name: str, file: str, cache: bool = True) -> Path | None:
    """The first local copy of ``file`` of data set ``name`` (not verified), or None."""
    root = data_root()
    folders = [] if root is None else [root / "classification" / name, root / name, root]
    folders += [cache_dir() / "classification" / name] if cache else []
    return next((f / file for f in folders if (f / file).is_file()), None)


def _missing(name: str, split: str | None = None, cache: bool = True) -> dict[str, str | None]:
    files = [_file_name(name, s) for s in (("train", "test") if split is None else (split,))]
    url = UEA_URL.format(name=name)
    return {_relative(name, f): url for f in files if _local(name, f, cache) is None}


def uea_path(
    name: str, split: str = "train", download: bool = True, allow_unpinned: bool = False
) -> Path:
    """The verified local ``.ts`` file of ``name``'s ``split``, downloading it if needed (a
    file without a pinned checksum only with ``allow_unpinned``).

    Raises ``DataUnavailableError`` where it is neither local nor downloadable."""
    file = _file_name(name, split)
    download, allow_unpinned = (
        boolean(download, "download"),
        boolean(allow_unpinned, "allow_unpinned"),
    )
    path = _local(name, file)
    if path is not None:
        check_sha256(path.read_bytes(), UEA_SHA256.get(file), file, str(path), allow_unpinned)
        return path
    if not download:
        raise unavailable(name, _relative(name, file), "download=False", "pass download=True")
    if UEA_SHA256.get(file) is None and not allow_unpinned:  # refuse before any download
        raise ValueError(
            f"{name}: {file} has no pinned SHA-256 in aaren_ts (pinned: "
            f"{sorted({f.rsplit('_', 1)[0] for f in UEA_SHA256})}); a download could not be "
            "verified. Pass allow_unpinned=True to accept it unverified"
        )
    cached = cache_dir() / "classification" / name
    _download(name, file, cached, allow_unpinned)
    return cached / file


def load_uea(
    name: str,
    split: str = "train",
    return_type: str | None = None,
    download: bool = True,
    allow_unpinned: bool = False,
):
    """Load one split of a UEA data set as sktime panel data.

    Parameters
    ----------
    name : str
        The archive's name, such as ``"JapaneseVowels"``, ``"BasicMotions"``, ``"Handwriting"``.
    split : {"train", "test"}, default "train"
        The archive's fixed train/test split.
    return_type : str, optional
        Any sktime Panel mtype. Default: ``"numpy3D"`` ``(n, channels, length)`` when every
        series has the same length, else ``"pd-multiindex"`` (ragged series kept as they
        are, no padding).
    download : bool, default True
        Fetch the archive's zip when the file is in neither ``AAREN_TS_DATA`` nor the cache.
    allow_unpinned : bool, default False
        Every file must match its pinned SHA-256 (``UEA_SHA256``: BasicMotions,
        Handwriting, JapaneseVowels). Other data sets load only with
        ``allow_unpinned=True`` (a warning then reports the file's digest).

    Returns
    -------
    X : sktime Panel of ``return_type``
    y : numpy.ndarray of str, the class labels

    Examples
    --------
    >>> from aaren_ts.datasets import load_uea
    >>> X, y = load_uea("JapaneseVowels", split="test")  # doctest: +SKIP
    >>> X.index.nlevels, len(set(y))  # ragged: pd-multiindex  # doctest: +SKIP
    (2, 9)
    """
    from sktime.datasets import load_from_tsfile

    path = uea_path(name, split, download, allow_unpinned)
    X, y = load_from_tsfile(str(path), return_data_type="pd-multiindex")
    return as_return_type(X, return_type), np.asarray(y)


def as_return_type(X, return_type: str | None = None):
    """A pd-multiindex panel as ``return_type``; None: numpy3D when every series has the
    same length, else pd-multiindex (ragged series kept as they are)."""
    if return_type is None:
        lengths = X.groupby(level=0).size()
        return_type = "numpy3D" if lengths.nunique() == 1 else "pd-multiindex"
    if return_type != "pd-multiindex":
        from sktime.datatypes import convert_to

        X = convert_to(X, to_type=return_type)
    return X
