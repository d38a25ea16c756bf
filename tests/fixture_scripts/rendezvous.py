"""Two slices that can only succeed if they run at the same time.

argv[1]: a directory shared by the slices; argv[2]: seconds to wait (bounded).
Each slice drops a marker file named after its first job, then waits for a
marker of *another* slice to appear. Run one after the other, the first slice
waits in vain and fails its jobs with exit code 1.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job


def concurrent_instances() -> int:
    return 2


def call(jobs: list[Job]) -> None:
    directory, limit = jobs[0].args[1], float(jobs[0].args[2])
    mine = f"slice-{jobs[0].uuid}"
    with open(os.path.join(directory, mine), "w", encoding="utf-8") as handle:
        handle.write(str(os.getpid()))
    deadline = time.monotonic() + limit
    others: list[str] = []
    while not others and time.monotonic() < deadline:
        others = [n for n in os.listdir(directory) if n.startswith("slice-") and n != mine]
        if not others:
            time.sleep(0.02)
    for job in jobs:
        if others:
            job.print_output(f"pid={os.getpid()} met={others[0]}")
            job.set_status(0)
        else:
            job.print_error(f"pid={os.getpid()} no other slice ran within {limit}s")
            job.set_status(1)
