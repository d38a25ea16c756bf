"""W5: every job writes argv[1] bytes of output the bench can check, byte for byte."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job


def expected_output(uuid: str, size: int) -> str:
    """What a job with this UUID writes: its digest, repeated to ``size`` characters."""
    seed = hashlib.sha256(uuid.encode()).hexdigest()
    return (seed * (size // len(seed) + 1))[:size]


def call(jobs: list[Job]) -> None:
    for job in jobs:
        job.write_output(expected_output(job.uuid, int(job.args[1])))
        job.set_status(0)
