"""W1/W2: the cheapest real script: status 0 and one line of output per job."""

from __future__ import annotations


def call(jobs):
    for job in jobs:
        job.set_status(0)
        job.write_output("ok\n")
