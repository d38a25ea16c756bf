"""Calls sys.exit with the code given as first argument of the first job."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job


def call(jobs: list[Job]) -> None:
    sys.exit(int(jobs[0].args[1]))
