"""Task-row bookkeeping: start and end of a slice, in bulk, retried.

The controller is the source of truth for results (it gets them over
Gearman); the ``Tasks`` rows are bookkeeping for the dashboard. So a failed
write is retried with backoff and finally logged, but it never turns a
script's result into a failure.

A slice costs a constant number of statements whatever its size (up to
``ROWS_PER_STATEMENT`` tasks): one UPDATE for the start, one transaction
holding one CASE-based UPDATE for the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

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
    from django.db import connection, transaction

    if not results:
        return 0

    def write() -> int:
        updated = 0
        with transaction.atomic():
            with connection.cursor() as cursor:
                for start in range(0, len(results), ROWS_PER_STATEMENT):
                    chunk = results[start:start + ROWS_PER_STATEMENT]
                    sql, params = _finish_statement(connection, chunk, capture_output)
                    cursor.execute(sql, params)
                    updated += max(cursor.rowcount, 0)
        return updated

    return with_retries(
        write, what=f"recording the end of {len(results)} task(s)", policy=policy
    )


#: Rows written by one UPDATE: a whole 128-task batch in one statement, and
#: far below every backend's bound-parameter limit (9 parameters a row).
ROWS_PER_STATEMENT = 500


def _finish_statement(
    connection: Any, rows: Sequence[TaskResult], capture_output: bool
) -> tuple[str, list[Any]]:
    """One ``UPDATE … SET col = CASE taskUUID WHEN … END … WHERE taskUUID IN (…)``.

    Built by hand rather than with ``QuerySet.bulk_update``: Django builds a
    ``Case``/``When`` expression object per row and column, which costs more
    than the database's own work for a 128-row slice.
    """
    from worker.models import Task

    quote = connection.ops.quote_name
    adapt_time = connection.ops.adapt_datetimefield_value
    failed = [row for row in rows if row.exit_code]
    # (column, rows it is written for, value): every column is one CASE.
    columns: list[tuple[str, Sequence[TaskResult], Callable[[TaskResult], Any]]] = [
        ("endtime", rows, lambda r: adapt_time(r.finished_at)),
        ("exitcode", rows, lambda r: r.exit_code),
    ]
    if capture_output:
        columns += [
            ("stdout", rows, lambda r: sanitize_text(r.stdout)),
            ("stderror", rows, lambda r: sanitize_text(r.stderr)),
        ]
    elif failed:
        # Like the stock worker: without capture, a failed task's stderr is
        # still kept, since it is the only record of why it failed.
        columns.append(("stderror", failed, lambda r: sanitize_text(r.stderr)))
    key = quote(Task._meta.pk.column)
    sets: list[str] = []
    params: list[Any] = []
    for name, targets, value_of in columns:
        field = Task._meta.get_field(name)
        column = quote(field.column)
        # PostgreSQL types a bare CASE parameter as text; say what it is.
        slot = f"CAST(%s AS {field.db_type(connection)})" if connection.vendor == "postgresql" else "%s"
        whens = " ".join([f"WHEN %s THEN {slot}"] * len(targets))
        sets.append(f"{column} = CASE {key} {whens} ELSE {column} END")
        for row in targets:
            params += [row.uuid, value_of(row)]
    params += [row.uuid for row in rows]
    keys = ", ".join(["%s"] * len(rows))
    return f"UPDATE {quote(Task._meta.db_table)} SET {', '.join(sets)} WHERE {key} IN ({keys})", params
