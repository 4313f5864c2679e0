"""Independent references and error measures used across the tests, and ``needs_dataset``:
the mark every test that reads a data set carries (it skips, saying why, where the data set
is not local and cannot be downloaded)."""

from __future__ import annotations

import http.client
import os
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch

# The shared benchmark data: AAREN_TS_DATA, else ../shared/data beside the checkout.
DATA = Path(os.environ.get("AAREN_TS_DATA") or Path(__file__).resolve().parents[2] / "shared/data")
if not os.environ.get("AAREN_TS_DATA") and DATA.is_dir():
    # the loaders, here and in the examples and scripts the tests start, read the same folder
    os.environ["AAREN_TS_DATA"] = str(DATA)

PROBE_TIMEOUT = 5.0  # seconds for the one look per session at each download host
_reachable_hosts: dict[str, bool] = {}


def _reachable(url: str) -> bool:
    """Whether ``url``'s host answers (any HTTP status counts), asked once per host per
    session, through the proxies the loaders use, within ``PROBE_TIMEOUT`` seconds even
    where name resolution hangs."""
    host = urlsplit(url).netloc
    if host not in _reachable_hosts:
        answer: list[bool] = []

        def probe() -> None:
            request = urllib.request.Request(url, method="HEAD")
            try:
                urllib.request.urlopen(request, timeout=PROBE_TIMEOUT).close()
                answer.append(True)
            except urllib.error.HTTPError:  # the host answered (over HTTPS, as every source is)
                answer.append(True)
            except (OSError, http.client.HTTPException, ValueError):
                answer.append(False)

        thread = threading.Thread(target=probe, daemon=True)
        thread.start()
        thread.join(PROBE_TIMEOUT + 1)
        _reachable_hosts[host] = bool(answer and answer[0])
    return _reachable_hosts[host]


class _Offline:
    """True (skip) when a host of ``urls`` cannot be reached; asked only when a test that
    needs a download is about to run (pytest evaluates ``skipif`` conditions then)."""

    def __init__(self, urls: list[str]):
        self.urls = urls

    def __bool__(self) -> bool:
        return not all(_reachable(url) for url in self.urls)


def needs_dataset(
    kind: str, name: str, split: str | None = None, *, cache: bool = True, download: bool = True
) -> pytest.MarkDecorator:
    """Skip the test, saying why, unless the loader can get the data set: its files
    (``split``, or every split) are under ``AAREN_TS_DATA`` (``DATA``), or in the download
    cache (unless ``cache=False``: tests that point the cache at a scratch folder), or can
    be downloaded now (unless ``download=False``: tests that read the files themselves).

    ``kind`` is the loader (``"forecasting"``, ``"uea"``, ``"events"``), as in
    ``aaren_ts.datasets.missing_files``. The files are looked for when the test module is
    imported; the network only when such a test is about to run, once per host per session.
    """
    from aaren_ts.datasets import missing_files
    from aaren_ts.datasets._files import cache_dir

    missing = missing_files(kind, name, split, cache=cache)
    if not missing:
        return pytest.mark.skipif(False, reason="the data are local")
    files = ", ".join(missing)
    places = f"AAREN_TS_DATA ({DATA})" + (f" or the cache ({cache_dir()})" if cache else "")
    urls = sorted(set(missing.values()), key=str)
    fix = f"set AAREN_TS_DATA to a folder holding {files}"
    if None in urls:
        return pytest.mark.skip(
            reason=f"{name}: {files} not in {places}, and no download exists: {fix}"
        )
    if not download:
        why = "this test reads the files from AAREN_TS_DATA"
        return pytest.mark.skip(reason=f"{name}: {files} not in {places} ({why}): {fix}")
    hosts = " / ".join(sorted({urlsplit(url).netloc for url in urls}))
    return pytest.mark.skipif(
        _Offline(urls),
        reason=f"{name}: {files} not in {places}, and {hosts} cannot be reached (offline): {fix}",
    )


_LOADER_CALLS = {  # the loaders' calls with a literal data set name (and split)
    "forecasting": r"(?:load_forecasting|standard_split)\(\s*[\"'](\w+)[\"']()",
    "uea": r"load_uea\(\s*[\"'](\w+)[\"'](?:\s*,\s*(?:split\s*=\s*)?[\"'](\w+)[\"'])?",
    "events": r"load_event_sequences\(\s*[\"'](\w+)[\"']"
    r"(?:\s*,\s*(?:split\s*=\s*)?[\"'](\w+)[\"'])?",
}


def needs_data_in(code: str) -> list[pytest.MarkDecorator]:
    """``needs_dataset`` marks for every data set ``code`` loads by a literal name (a README
    snippet, an example): the marks follow the code when it changes."""
    wanted = {
        (kind, name, split or None)
        for kind, pattern in _LOADER_CALLS.items()
        for name, split in re.findall(pattern, code)
    }
    return [needs_dataset(kind, name, split) for kind, name, split in sorted(wanted, key=str)]


def numpy_reference(scores, values):
    """Independent float64 reference in NumPy: a plain softmax over each prefix, row by row.

    ``scores`` ``(R, N)``, ``values`` ``(R, N, D)`` (tensors or arrays) -> ``(R, N, D)``.
    """
    s = np.asarray(torch.as_tensor(scores).detach().cpu().double())
    v = np.asarray(torch.as_tensor(values).detach().cpu().double())
    out = np.empty_like(v)
    for k in range(s.shape[-1]):
        logits = s[:, : k + 1]
        p = np.exp(logits - logits.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        out[:, k] = np.einsum("rn,rnd->rd", p, v[:, : k + 1])
    return torch.from_numpy(out)


def rel_err(actual: torch.Tensor, expected: torch.Tensor, scale: float = 0.0) -> float:
    """Max-norm relative error ``max|a - e| / max(max|e|, scale)`` (computed in float64).

    ``scale`` is the natural size of the quantity when ``expected`` may be all but zero (the
    score gradient of a saturated softmax is ~1e-300 while rounding noise is ~eps * |v|).
    """
    a = actual.detach().double().cpu()
    e = expected.detach().double().cpu()
    return float((a - e).abs().max() / e.abs().max().clamp_min(max(scale, 1e-300)))
