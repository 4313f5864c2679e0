"""What every benchmark's JSON record starts with: the command, date, machine, threads and
the versions of the packages it used (so a saved result says how to reproduce it)."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import shlex
import sys
from collections.abc import Sequence


def run_header(
    script: str, argv: Sequence[str] | None, threads: int, packages: Sequence[str]
) -> dict:
    """``{"command", "date", "machine", "threads", "versions"}`` for ``benchmarks/<script>``
    run with ``argv`` (default: this process's arguments); ``packages`` not installed are left
    out of the versions."""
    versions = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "command": f"python benchmarks/{script} " + shlex.join(argv or sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "machine": platform.processor() or platform.machine(),
        "threads": threads,
        "versions": versions,
    }
