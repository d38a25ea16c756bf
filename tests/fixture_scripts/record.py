"""Records every execution: appends the task UUID to a file named by argv[1].

Optional argv[2]: seconds to wait on the file named argv[3] appearing
(a gate the test opens), so a test can kill things while it runs.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job


def call(jobs: list[Job]) -> None:
    for job in jobs:
        path = job.args[1]
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{job.uuid} {os.getpid()}\n")
        if len(job.args) > 3:
            limit = time.monotonic() + float(job.args[2])
            while not os.path.exists(job.args[3]) and time.monotonic() < limit:
                time.sleep(0.05)
        job.set_status(0)
