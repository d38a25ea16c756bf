"""Loops until stopped from outside: for time-limit tests.

argv[1], if given, is a file written once the loop is entered.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job


def call(jobs: list[Job]) -> None:
    if len(jobs[0].args) > 1:
        with open(jobs[0].args[1], "w", encoding="utf-8") as handle:
            handle.write("looping\n")
    while True:
        time.sleep(0.05)
