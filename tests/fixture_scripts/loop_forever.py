"""Loops forever. With argv[1] == "stubborn" it swallows the soft time limit too.

The soft limit (SoftTimeLimitExceeded) is raised inside the loop; a
well-behaved script lets it propagate, a stubborn one catches it and goes on,
so only the hard limit (the pool kills the process) can end it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job


def call(jobs: list[Job]) -> None:
    stubborn = len(jobs[0].args) > 1 and jobs[0].args[1] == "stubborn"
    while True:
        try:
            time.sleep(0.05)
        except BaseException:  # noqa: BLE001 - the point of this fixture
            if not stubborn:
                raise
