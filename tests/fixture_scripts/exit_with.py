"""Exits with the code given as its first argument."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job


def call(jobs: list[Job]) -> None:
    for job in jobs:
        with job.JobContext():
            code = int(job.args[1])
            job.print_output(f"exiting with {code}")
            job.set_status(code)
