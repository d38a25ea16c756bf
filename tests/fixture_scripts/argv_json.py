"""Prints ``job.args`` as one JSON line, so a test can compare argv exactly."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job


def call(jobs: list[Job]) -> None:
    for job in jobs:
        job.print_output(json.dumps(job.args))
        job.set_status(0)
