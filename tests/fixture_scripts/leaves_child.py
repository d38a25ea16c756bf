"""Starts a long `sleep` and returns without waiting for it; prints its pid."""

from __future__ import annotations

import subprocess


def call(jobs):
    for job in jobs:
        child = subprocess.Popen(["sleep", "300"])  # noqa: S607
        job.print_output(f"child={child.pid}")
        job.set_status(0)
