"""Fails at import time, like a script whose dependency is missing."""

from __future__ import annotations

import amworker_no_such_dependency  # noqa: F401


def call(jobs):  # pragma: no cover - never reached
    pass
