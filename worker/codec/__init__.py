"""Bytes in, values out: the wire format, the safe unpickler, argv splitting.

Pure functions with no I/O and no settings. Nothing here imports from
amworker but :mod:`worker.errors` (an import-linter contract in ``make lint``
holds this), so every codec can be tested, fuzzed and benchmarked alone.
"""
