"""Leaks argv[2] MB per job (kept in a module global) and records ``uuid pid`` in argv[1]."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job

#: What every call so far left behind: the leak outlives the slice, as a real one would.
_LEAKED: list[bytes] = []


def call(jobs: list[Job]) -> None:
    for job in jobs:
        # b"x" * n touches every page, so the leak is resident, not just reserved.
        _LEAKED.append(b"x" * (int(job.args[2]) * 1024 * 1024))
        with open(job.args[1], "a", encoding="utf-8") as handle:
            handle.write(f"{job.uuid} {os.getpid()}\n")
        job.set_status(0)
