"""Planning a batch: the runnable jobs, how they are cut into slices, the plan kept.

``k = min(slices wanted, number of jobs)`` slices of as-equal-as-possible
size, in payload order, so slice ``i`` always holds the same jobs for the same
batch: a re-delivered batch plans exactly the same slices. The
:class:`PlanRecord` kept in Redis is what makes a re-delivery find ``k``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from worker.contract import records


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One runnable task as a Celery worker receives it (argv already prepared)."""

    uuid: str
    argv: tuple[str, ...]
    wants_output: bool

    def to_json(self) -> dict[str, object]:
        """JSON-safe form for Celery's JSON serializer."""
        return {"uuid": self.uuid, "argv": list(self.argv), "wants_output": self.wants_output}

    @classmethod
    def from_json(cls, data: object) -> JobSpec:
        """Inverse of :meth:`to_json`; raises :class:`~worker.contract.records.RecordError`."""
        if type(data) is dict:  # exactly what JSON decodes to
            uuid, argv, wants_output = data.get("uuid"), data.get("argv"), data.get("wants_output")
            if (type(uuid) is str and type(argv) is list and type(wants_output) is bool
                    and all(type(arg) is str for arg in argv)):
                # A well-formed job, as every amworker sends: thousands per
                # batch in the pool, so skip the checks that name the problem.
                return cls(uuid=uuid, argv=tuple(argv), wants_output=wants_output)
        what = "job"
        job = records.mapping(data, what)
        uuid = records.field(job, "uuid", str, what)
        what = f"job {records.show(uuid)}"
        argv = records.field(job, "argv", list, what)
        for arg in argv:
            records.check(arg, "argv", str, what)
        return cls(uuid=uuid, argv=tuple(argv), wants_output=records.field(job, "wants_output", bool, what))


@dataclass(frozen=True)
class PlanRecord:
    """A batch's plan, kept in Redis (``keys.plan_key``) from its first arrival.

    Written three times: before the slices are sent (``sent`` false), once
    they are (``sent`` true), and by a shim that found Redis had lost it
    (``lost_at``, so a re-delivery attaches instead of sending again). Read
    by every arrival of the batch, to reuse its slice count.
    """

    #: How many slices the batch was cut into.
    count: int
    #: When the batch was first dispatched (wall-clock seconds, shared by shims).
    at: float
    #: True once the slices were handed to the broker.
    sent: bool = False
    #: When a shim found Redis had lost the batch's state, if one did.
    lost_at: float | None = None

    def to_json(self) -> dict[str, object]:
        """JSON-safe form (``lost_at`` only when set, as earlier releases wrote it)."""
        data: dict[str, object] = {"count": self.count, "at": self.at, "sent": self.sent}
        if self.lost_at is not None:
            data["lost_at"] = self.lost_at
        return data

    @classmethod
    def from_json(cls, data: object) -> PlanRecord:
        """Inverse of :meth:`to_json`; raises :class:`~worker.contract.records.RecordError`."""
        what = "plan record"
        plan = records.mapping(data, what)
        return cls(
            count=records.count(plan, "count", what, minimum=1),
            at=records.seconds(plan, "at", what),
            sent=records.optional(plan, "sent", bool, what, False),
            lost_at=records.optional_seconds(plan, "lost_at", what),
        )

    def encode(self) -> str:
        """The value stored in Redis."""
        return json.dumps(self.to_json())

    @classmethod
    def decode(cls, raw: bytes | str) -> PlanRecord:
        """A stored plan; :class:`~worker.contract.records.RecordError` if it is not one."""
        return cls.from_json(records.loads(raw, "plan record"))


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
