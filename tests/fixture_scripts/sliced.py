"""Asks for 4 slices; reports the pid of the process that ran each job."""

from __future__ import annotations

import os


def concurrent_instances():
    return 4


def call(jobs):
    for job in jobs:
        job.print_output(f"pid={os.getpid()} jobs_in_slice={len(jobs)}")
        job.set_status(0)
