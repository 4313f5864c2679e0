"""Fetching and saving data files, shared by every loader: download errors that name the URL,
and writes that never leave a half-written file behind (a temporary file, then a rename)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
import warnings
from pathlib import Path


def fetch(url: str, timeout: float = 60.0) -> bytes:
    """The bytes at ``url`` (``https://`` or ``file://``); ``OSError`` names the URL."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except OSError as err:
        raise OSError(f"could not download {url}: {err}") from err


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
