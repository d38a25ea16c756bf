"""Planning a batch: the runnable jobs and how they are cut into slices.

``k = min(slices wanted, number of jobs)`` slices of as-equal-as-possible
size, in payload order, so slice ``i`` always holds the same jobs for the same
batch: a re-delivered batch plans exactly the same slices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class JobSpec:
    """One runnable task as a Celery worker receives it (argv already prepared)."""

    uuid: str
    argv: tuple[str, ...]
    wants_output: bool

    def to_json(self) -> dict[str, object]:
        """JSON-safe form for Celery's JSON serializer."""
        return {"uuid": self.uuid, "argv": list(self.argv), "wants_output": self.wants_output}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> JobSpec:
        """Inverse of :meth:`to_json`."""
        argv = data["argv"]
        if not isinstance(argv, list):
            raise TypeError("argv must be a list")
        return cls(
            uuid=str(data["uuid"]),
            argv=tuple(str(a) for a in argv),
            wants_output=bool(data["wants_output"]),
        )


def slice_count(wanted: int, jobs: int) -> int:
    """How many slices a batch of ``jobs`` runnable jobs is cut into."""
    return max(1, min(wanted, jobs))


def split(jobs: Sequence[JobSpec], count: int) -> list[list[JobSpec]]:
    """Cut ``jobs`` into ``count`` contiguous slices whose sizes differ by at most 1."""
    if count < 1:
        raise ValueError("count must be at least 1")
    size, extra = divmod(len(jobs), count)
    slices: list[list[JobSpec]] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        slices.append(list(jobs[start:end]))
        start = end
    return slices
