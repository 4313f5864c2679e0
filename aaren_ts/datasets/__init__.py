"""Loaders for the benchmark data sets (reading ``AAREN_TS_DATA`` first, then a checksummed
download cache)."""

__all__: list[str] = []
