"""Writes argv[1] MB outside the Job API in every way a script can, then its result properly.

One single line of that size through print(), the same through sys.stderr,
raw os.write() to fd 1 and fd 2, and a child process writing to the fd 1 it
inherited. Only "result" goes through the job.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job


def call(jobs: list[Job]) -> None:
    for job in jobs:
        size = int(job.args[1]) * 1024 * 1024
        print("p" * size)  # one giant line
        sys.stderr.write("e" * size + "\n")
        line = b"raw line to fd 1\n" * 1024
        for _ in range(size // len(line)):
            os.write(1, line)
        os.write(2, b"r" * size)  # no newline at all
        subprocess.run(["sh", "-c", f"head -c {size} /dev/zero | tr '\\0' c"], check=True)
        job.write_output("result\n")
        job.set_status(0)
