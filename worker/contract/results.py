"""Results made by amworker rather than by a script, the same on both sides.

The shim fails tasks it could not dispatch or whose slice was lost; a pool
process fails tasks whose script could not be imported or whose database
rows could not be read, and the jobs of a script that raised or exited.
Every one gives the controller the same shape of answer: exit code 1, the
reason as a line of its own in stderr, and the time it was decided. This
module is the one way to do that, for tasks not yet run
(:func:`fail_tasks`, :func:`failed_results`) and for jobs a script holds
(:func:`fail_jobs`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from worker.codec.records import TaskResult

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


def as_line(reason: str) -> str:
    """``reason`` ending its line, as every cause is written to stderr."""
    return reason if reason.endswith("\n") else reason + "\n"


def failed_results(
    uuids: Sequence[str],
    reason: str,
    *,
    wants_output: Callable[[str], bool] = lambda _uuid: True,
    clock: Clock = utcnow,
) -> list[TaskResult]:
    """Exit code 1 and ``reason`` in stderr for tasks that could not run."""
    now = clock()
    text = as_line(reason)
    return [
        TaskResult(uuid=u, exit_code=1, finished_at=now, stderr=text, wants_output=wants_output(u))
        for u in uuids
    ]


class Wanting(Protocol):
    """A task as either side knows it before it runs (a ``TaskSpec`` or a ``JobSpec``)."""

    @property
    def uuid(self) -> str:
        """The task's UUID."""
        ...

    @property
    def wants_output(self) -> bool:
        """Whether the controller asked for the task's output."""
        ...


def fail_tasks(tasks: Iterable[Wanting], reason: str, *, clock: Clock = utcnow) -> dict[str, TaskResult]:
    """Fail ``tasks`` with ``reason``, by UUID, each keeping whether its output is wanted."""
    wants = {t.uuid: t.wants_output for t in tasks}
    return {r.uuid: r for r in failed_results(list(wants), reason, wants_output=wants.__getitem__,
                                               clock=clock)}


class _Lines(Protocol):
    def ends_with_newline(self) -> bool: ...

    def write_note(self, text: str) -> None: ...


class LiveJob(Protocol):
    """The part of a script's ``Job`` (worker.client.job) that failing it needs."""

    @property
    def error_buffer(self) -> _Lines:
        """The job's stderr so far."""
        ...

    def write_error(self, s: str) -> None:
        """Append to the job's stderr."""
        ...

    def get_exit_code(self) -> int:
        """The exit code so far (0 unless set)."""
        ...

    def set_status(self, int_code: int, status_code: str = ...) -> None:
        """Set the exit code and status."""
        ...


def fail_jobs(jobs: Iterable[LiveJob], reason: str) -> None:
    """Fail jobs a script holds: ``reason`` on a line of its own in stderr, exit code 1.

    A job that had already failed keeps its own, more telling exit code.
    """
    text = as_line(reason)
    for job in jobs:
        stderr = job.error_buffer
        # On a line of its own, and kept even when the script filled stderr
        # (after the truncation marker): a failure must say why.
        stderr.write_note(text if stderr.ends_with_newline() else "\n" + text)
        if not job.get_exit_code():
            job.set_status(1, "error")
