"""Fails at import time, like a script whose dependency is missing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import amworker_no_such_dependency  # noqa: F401

if TYPE_CHECKING:
    from worker.client.job import Job


def call(jobs: list[Job]) -> None:  # pragma: no cover - never reached
    pass
