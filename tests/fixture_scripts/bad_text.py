"""Writes invalid UTF-8 bytes and lone surrogates to the job's stdout and stderr."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job


def call(jobs: list[Job]) -> None:
    for job in jobs:
        job.write_output(b"invalid \xff\xfe utf-8\n")
        job.write_output("lone \ud800 surrogate\n")
        job.write_error("stderr \udcff surrogate\n")
        job.write_error(b"\xc3\x28 bad\n")
        job.set_status(0)
