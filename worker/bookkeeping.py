"""Task-row bookkeeping: start and end of a slice, in bulk, retried.

The controller is the source of truth for results (it gets them over
Gearman); the ``Tasks`` rows are bookkeeping for the dashboard. So a failed
write is retried with backoff and finally logged, but it never turns a
script's result into a failure.

A slice costs a constant number of statements whatever its size: one UPDATE
for the start, one transaction holding one CASE-based UPDATE for the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from worker.wire import TaskResult, sanitize_text

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a database write is retried.

    The defaults ride out a database restart of about 15 seconds
    (0.5 + 1 + 2 + 4 + 8) before the write is given up and logged.
    """

    attempts: int = 6
    first_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 8.0

    def delays(self) -> list[float]:
        """The pauses between attempts."""
        return [
            min(self.first_delay * self.factor**i, self.max_delay)
            for i in range(self.attempts - 1)
        ]


def with_retries(
    action: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> T | None:
    """Run ``action``; on a database error reconnect, wait and retry.

    Returns the action's value, or ``None`` after the last attempt failed.
    """
    from django.db import DatabaseError, InterfaceError, close_old_connections, connection

    delays = policy.delays()
    for attempt in range(policy.attempts):
        try:
            return action()
        except (DatabaseError, InterfaceError) as exc:
            # A dead connection stays dead until closed; the next attempt
            # opens a fresh one.
            connection.close()
            close_old_connections()
            if attempt == len(delays):
                log.error("giving up on %s after %d attempts: %s", what, policy.attempts, exc)
                return None
            log.warning(
                "%s failed (attempt %d of %d), retrying in %.1fs: %s",
                what,
                attempt + 1,
                policy.attempts,
                delays[attempt],
                exc,
            )
            sleep(delays[attempt])
    return None


def mark_started(
    uuids: Sequence[str], *, when: datetime, client: str, policy: RetryPolicy
) -> int | None:
    """Set ``startTime`` and ``client`` of the slice's rows in one UPDATE."""
    from worker.models import Task

    if not uuids:
        return 0
    return with_retries(
        lambda: Task.objects.filter(pk__in=list(uuids)).update(starttime=when, client=client),
        what=f"recording the start of {len(uuids)} task(s)",
        policy=policy,
    )


def mark_finished(
    results: Sequence[TaskResult], *, capture_output: bool, policy: RetryPolicy
) -> int | None:
    """Write end time, exit code and (if captured) output of every row at once.

    Rows that do not exist (a smoke test, a task the controller never
    recorded) are simply not matched: that is not an error.
    """
    from django.db import transaction

    from worker.models import Task

    if not results:
        return 0
    fields = ["endtime", "exitcode"] + (["stdout", "stderror"] if capture_output else [])
    rows = [
        Task(
            taskuuid=result.uuid,
            endtime=result.finished_at,
            exitcode=result.exit_code,
            stdout=sanitize_text(result.stdout) if capture_output else None,
            stderror=sanitize_text(result.stderr) if capture_output else None,
        )
        for result in results
    ]

    def write() -> int:
        with transaction.atomic():
            return Task.objects.bulk_update(rows, fields, batch_size=len(rows))

    return with_retries(
        write, what=f"recording the end of {len(results)} task(s)", policy=policy
    )
