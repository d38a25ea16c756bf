"""W1/W2: the cheapest real script: status 0 and one line of output per job."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job


def call(jobs: list[Job]) -> None:
    for job in jobs:
        job.set_status(0)
        job.write_output("ok\n")
