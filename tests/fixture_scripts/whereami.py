"""Reports which Celery worker ran each job: the pool process's parent pid.

The pool process's parent is the Celery worker's main process, whose pid the
tests know, so a test can tell which worker (and so which queue) ran a slice.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job


def concurrent_instances() -> int:
    return 2


def call(jobs: list[Job]) -> None:
    for job in jobs:
        job.print_output(f"ppid={os.getppid()}")
        job.set_status(0)
