"""Task-row bookkeeping: start and end of a slice, in bulk, retried.

The controller is the source of truth for results (it gets them over
Gearman); the ``Tasks`` rows are bookkeeping for the dashboard. So a failed
write is retried with backoff for a bounded time (``AMWORKER_DATABASE_WAIT``)
and then raises :class:`DatabaseUnavailable`; the runtime decides what that
means (before the script: its tasks fail with the cause; after it: logged,
the script's result stands).

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
from typing import TYPE_CHECKING, Any, TypeVar

from worker.backoff import Backoff
from worker.codec.records import TaskResult, sanitize_text
from worker.config import DEFAULT_DATABASE_WAIT_SECONDS

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models import Field, ForeignObjectRel

log = logging.getLogger(__name__)
T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """A write was given up: the database stayed locked or unreachable for the whole wait."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how patiently a database write is retried.

    ``wait`` bounds the whole write, pauses and attempts together: each
    attempt's own waits on the database (SQLite's busy timeout, PostgreSQL's
    statement timeout, MySQL's lock wait) are cut to what is left of it, so a
    locked database costs a slice at most ``wait`` seconds per write, not a
    driver timeout per attempt. The pauses come from ``backoff``; the default
    ones (0.5, 1, 2, 4, 8, 8 …) ride out a database restart.
    """

    wait: float = DEFAULT_DATABASE_WAIT_SECONDS
    backoff: Backoff = Backoff(first=0.5, factor=2.0, maximum=8.0)
    #: At most this many attempts, even with time left (None: as many as fit).
    attempts: int | None = None

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt number ``attempt`` (1-based)."""
        return self.backoff.delay(attempt - 1)


def with_retries(
    action: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``action``; on a database error reconnect, wait and retry until ``policy.wait``.

    Returns the action's value; raises :class:`DatabaseUnavailable` once the
    wait is spent (or the attempts are), after logging it.
    """
    from django.db import DatabaseError, InterfaceError, close_old_connections, connection

    from worker.database import bounded_waits

    began = clock()
    deadline = began + policy.wait
    attempt = 0
    while True:
        attempt += 1
        try:
            with bounded_waits(deadline - clock()):
                return action()
        except (DatabaseError, InterfaceError) as exc:
            # A dead connection stays dead until closed; the next attempt
            # opens a fresh one.
            connection.close()
            close_old_connections()
            left = deadline - clock()
            if left <= 0 or (policy.attempts is not None and attempt >= policy.attempts):
                spent = clock() - began
                log.error("giving up on %s after %d attempt(s) in %.1fs: %s",
                          what, attempt, spent, exc)
                raise DatabaseUnavailable(
                    f"{what} failed for {spent:.1f}s ({attempt} attempt(s), "
                    f"AMWORKER_DATABASE_WAIT={policy.wait:g}s): {type(exc).__name__}: {exc}"
                ) from exc
            pause = min(policy.delay(attempt), left)
            log.warning("%s failed (attempt %d, %.1fs of %gs left), retrying in %.1fs: %s",
                        what, attempt, left, policy.wait, pause, exc)
            sleep(pause)


def mark_started(
    uuids: Sequence[str], *, when: datetime, client: str, policy: RetryPolicy
) -> int:
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
) -> int:
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
#: far below every backend's bound-parameter limit (9 parameters a row). Not
#: more: the database tries a row's ``CASE`` branches one by one, so a
#: statement's work grows with the square of its rows. On SQLite, with output
#: captured, the end of a 10,000-task slice took 425-580 ms in chunks of 500
#: and 195-215 ms in chunks of 128 (64: 175 ms, for twice the statements).
ROWS_PER_STATEMENT = 128


def _finish_statement(
    connection: BaseDatabaseWrapper, rows: Sequence[TaskResult], capture_output: bool
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
    key = quote(_column(Task._meta.pk))
    sets: list[str] = []
    params: list[Any] = []
    for name, targets, value_of in columns:
        field = Task._meta.get_field(name)
        column = quote(_column(field))
        # PostgreSQL types a bare CASE parameter as text; say what it is.
        slot = f"CAST(%s AS {field.db_type(connection)})" if connection.vendor == "postgresql" else "%s"
        whens = " ".join([f"WHEN %s THEN {slot}"] * len(targets))
        sets.append(f"{column} = CASE {key} {whens} ELSE {column} END")
        for row in targets:
            params += [row.uuid, value_of(row)]
    params += [row.uuid for row in rows]
    keys = ", ".join(["%s"] * len(rows))
    return f"UPDATE {quote(Task._meta.db_table)} SET {', '.join(sets)} WHERE {key} IN ({keys})", params


def _column(field: Field[Any, Any] | ForeignObjectRel | None) -> str:
    """The column ``field`` is stored in, or TypeError.

    ``_meta.pk`` is None on a model without a primary key, ``get_field`` also
    answers reverse relations (no column), and a field not bound to a model
    has none yet: each would otherwise end up as ``None`` inside the SQL.
    """
    from django.db.models import Field

    if not isinstance(field, Field) or not field.column:
        raise TypeError(f"{field!r} is not a column of the Tasks table")
    return field.column
