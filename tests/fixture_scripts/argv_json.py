"""Prints ``job.args`` as one JSON line, so a test can compare argv exactly."""

from __future__ import annotations

import json


def call(jobs):
    for job in jobs:
        job.print_output(json.dumps(job.args))
        job.set_status(0)
