"""pytest plugin: amworker's job API stands in for Archivematica's in its own tests.

Loaded with ``-p amworker_standin`` by ``scripts/test-archivematica`` before
any conftest, so every ``client.job`` / ``custom_handlers`` import the suite
and the scripts make resolves through :mod:`worker.scripts.imports`, exactly
as inside an amworker worker. At the end it records, in
``$AMWORKER_STANDIN_REPORT``, which modules were really used, so the
comparison can refuse a run in which the stand-in did not take.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from worker.scripts import imports as script_imports

script_imports.install()

_WATCHED = ("client.job", "custom_handlers")


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    report = os.environ.get("AMWORKER_STANDIN_REPORT")
    if report:
        used = {name: script_imports.resolved(name) for name in _WATCHED}
        with open(report, "w", encoding="utf-8") as handle:
            json.dump(used, handle)


def pytest_report_header() -> str:
    return "amworker stand-in: " + ", ".join(
        f"{name}={script_imports.resolved(name)}" for name in _WATCHED if name in sys.modules
    )
