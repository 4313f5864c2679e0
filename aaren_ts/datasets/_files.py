"""Where data files are looked for, fetching and saving them, shared by every loader: a file
that is neither local nor downloadable is one ``DataUnavailableError`` that says where it was
looked for and how to provide it, and writes never leave a half-written file behind (a
temporary file, then a rename)."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
import warnings
from pathlib import Path


class DataUnavailableError(FileNotFoundError):
    """A data file is neither under ``AAREN_TS_DATA`` nor in the download cache, and cannot be
    downloaded (no network, no direct download, or ``download=False``). Its one-line message
    names the file, the places looked in and the ways to provide it. A ``FileNotFoundError``
    (an ``OSError``), so existing handlers of either keep working."""


def data_root() -> Path | None:
    """The local data folder ``$AAREN_TS_DATA``, or None where it is not set."""
    root = os.environ.get("AAREN_TS_DATA")
    return Path(root) if root else None


def cache_dir() -> Path:
    """The download cache: ``$AAREN_TS_CACHE`` or ``~/.cache/aaren_ts``."""
    return Path(os.environ.get("AAREN_TS_CACHE", Path.home() / ".cache" / "aaren_ts"))


def local_roots(cache: bool = True) -> list[Path]:
    """Where a loader looks before downloading, in order: ``$AAREN_TS_DATA`` (when set), then
    (``cache``) the download cache."""
    root = data_root()
    roots = [] if root is None else [root]
    return [*roots, cache_dir()] if cache else roots


def unavailable(
    what: str, relative: str, why: str, also: str | None = "connect to the network"
) -> DataUnavailableError:
    """The error for ``relative`` (its path under ``AAREN_TS_DATA``, and under the cache) of
    data set ``what``, in neither place, and not downloaded because ``why``; ``also`` is a
    third way to fix it, after providing the file in either place."""
    root, cached = data_root(), cache_dir() / relative
    looked = f"AAREN_TS_DATA ({root / relative})" if root else "AAREN_TS_DATA (not set)"
    ways = [f"set AAREN_TS_DATA to a folder holding {relative}", f"put the file at {cached}"]
    ways += [also] if also else []
    fixes = ", ".join(ways[:-1]) + ", or " + ways[-1] if len(ways) > 2 else " or ".join(ways)
    message = (
        f"{what}: {relative} is not available: it is in neither {looked} nor the cache "
        f"({cached}), and {why}. To fix: {fixes}"
    )
    return DataUnavailableError(" ".join(message.splitlines()))  # one line, whatever ``why``


def fetch(url: str, what: str, relative: str, timeout: float = 60.0) -> bytes:
    """The bytes at ``url`` (``https://`` or ``file://``), the missing file ``relative`` of
    data set ``what``. A failure is one ``DataUnavailableError`` (no chained traceback) that
    names the URL and says where the file was looked for and how to provide it."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (OSError, http.client.HTTPException) as err:  # a cut connection is the latter
        raise unavailable(what, relative, f"the download of {url} failed ({err})") from None


def check_sha256(
    data: bytes, expected: str | None, name: str, where: str, allow_unpinned: bool = False
) -> None:
    """``data`` (read from ``where``) must hash to ``name``'s pinned ``expected`` SHA-256.

    A file without a pin (``expected`` None) is refused unless ``allow_unpinned``, which
    loads it with a warning that reports its digest.
    """
    digest = hashlib.sha256(data).hexdigest()
    if expected is None:
        if not allow_unpinned:
            raise ValueError(
                f"{where}: no pinned checksum for {name}, so its content cannot be checked "
                f"(its sha256 is {digest}); pass allow_unpinned=True to load it anyway"
            )
        warnings.warn(
            f"{where}: no pinned checksum for {name}; its sha256 is {digest}", stacklevel=3
        )
    elif digest != expected:
        raise ValueError(
            f"{where} does not match the published {name}: sha256 {digest}, expected "
            f"{expected}. Delete it (or fix AAREN_TS_DATA) to fetch a clean copy."
        )


def write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file in the same folder and a rename,
    so a reader sees the old file or the whole new one, never a part."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    except OSError as err:
        raise PermissionError(
            f"cannot write {target.name} into {target.parent} ({err.strerror}): set "
            "AAREN_TS_CACHE to a writable folder, or place the file under AAREN_TS_DATA"
        ) from err
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
