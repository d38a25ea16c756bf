"""W3/W4: CPU-bound jobs; argv[1] is how many MiB each job hashes with SHA-256.

Asks for one slice per core, as a file-level script that can use them would.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job

#: Hashed in pieces this big, so memory stays flat whatever argv[1] asks.
CHUNK = 1024 * 1024


def concurrent_instances() -> int:
    return os.cpu_count() or 1


def call(jobs: list[Job]) -> None:
    for job in jobs:
        job.write_output(burn(job.uuid, int(job.args[1])) + "\n")
        job.set_status(0)


def burn(seed: str, mebibytes: int) -> str:
    """SHA-256 of ``mebibytes`` MiB made from ``seed``: one job's work (bench.ceiling times it too)."""
    digest = hashlib.sha256()
    piece = seed.encode().ljust(CHUNK, b"\0")
    for _ in range(mebibytes):
        digest.update(piece)
    return digest.hexdigest()
