"""Starts a long `sleep` and returns without waiting for it; prints its pid."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job


def call(jobs: list[Job]) -> None:
    for job in jobs:
        child = subprocess.Popen(["sleep", "300"])  # noqa: S607
        job.print_output(f"child={child.pid}")
        job.set_status(0)
