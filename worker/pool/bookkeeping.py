"""Task-row bookkeeping: start and end of a slice, in bulk, retried.

The controller is the source of truth for results (it gets them over
Gearman); the ``Tasks`` rows are bookkeeping for the dashboard. So a failed
write is retried with backoff for a bounded time (``AMWORKER_DATABASE_WAIT``;
an error in the statement itself is not retried)
and then raises :class:`DatabaseUnavailable`; the runtime decides what that
means (before the script: its tasks fail with the cause; after it: logged,
the script's result stands).

A slice of up to ``ROWS_PER_STATEMENT`` tasks costs one UPDATE for the start
and one CASE-based UPDATE for the end, unless the parameter limit or the
output's size cuts them (see :func:`fitted`, ``TEXT_PER_STATEMENT``); a
larger slice writes each end in one transaction. Both statements are built
by hand: Django's query building cost more than the database's work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from worker.backoff import Backoff
from worker.codec.records import TaskResult, storable_text
from worker.config import DEFAULT_DATABASE_WAIT_SECONDS

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models import Field, ForeignObjectRel

log = logging.getLogger(__name__)
T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """A write was given up.

    Either the database stayed locked or unreachable for the whole wait, or
    it refused the write with an error no retry can fix (bad data, bad SQL).
    """


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
    wait is spent (or the attempts are), after logging it. An error that says
    the statement itself is wrong (:func:`_is_fatal`) is given up at once: a
    retry would send the same statement and only hold the slice for the wait.
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
            if _is_fatal(exc):
                log.error("giving up on %s: the database refused it: %s", what, exc)
                raise DatabaseUnavailable(
                    f"{what} refused by the database (not retried): {type(exc).__name__}: {exc}"
                ) from exc
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


def _is_fatal(exc: Exception) -> bool:
    """Whether ``exc`` says the statement is wrong, not that the database is away or busy.

    Locks, deadlocks, lost connections and restarts are ``OperationalError``
    or ``InterfaceError`` on every backend (a deadlock too: PyMySQL, MySQLdb
    and psycopg all raise it as one), and are worth a retry.
    """
    from django.db import DataError, IntegrityError, NotSupportedError, ProgrammingError

    return isinstance(exc, DataError | IntegrityError | NotSupportedError | ProgrammingError)


def mark_started(
    uuids: Sequence[str], *, when: datetime, client: str, policy: RetryPolicy
) -> int:
    """Set ``startTime`` and ``client`` of the slice's rows: one UPDATE per ``KEYS_PER_STATEMENT``."""
    from django.db import connection

    if not uuids:
        return 0
    keys = list(uuids)

    def write() -> int:
        values = [connection.ops.adapt_datetimefield_value(when), client]
        size = fitted(connection, KEYS_PER_STATEMENT, per_item=1, fixed=len(values))
        def start(chunk: Sequence[str]) -> int:
            return _execute(connection, _start_statement(connection, chunk, values))

        return write_in_chunks(chunked(keys, size), start)

    return with_retries(
        write, what=f"recording the start of {len(keys)} task(s)", policy=policy
    )


def mark_finished(
    results: Sequence[TaskResult], *, capture_output: bool, policy: RetryPolicy
) -> int:
    """Write end time, exit code and (if captured) output of every row: few statements, one transaction.

    Rows that do not exist (a smoke test, a task the controller never
    recorded) are simply not matched: that is not an error.
    """
    from django.db import connection

    if not results:
        return 0

    def text_of(row: TaskResult) -> int:
        if capture_output:
            return len(row.stdout) + len(row.stderr)
        return len(row.stderr) if row.exit_code else 0

    def write() -> int:
        size = fitted(connection, ROWS_PER_STATEMENT, per_item=PARAMS_PER_FINISHED_ROW, fixed=0)
        chunks = chunked(results, size, weight=text_of, budget=TEXT_PER_STATEMENT)
        def finish(chunk: Sequence[TaskResult]) -> int:
            return _execute(connection, _finish_statement(connection, chunk, capture_output))

        return write_in_chunks(chunks, finish)

    return with_retries(
        write, what=f"recording the end of {len(results)} task(s)", policy=policy
    )


def fitted(connection: BaseDatabaseWrapper, preferred: int, *, per_item: int, fixed: int) -> int:
    """``preferred``, or fewer items if a statement of that many would pass the parameter limit.

    SQLite's limit is a build option (999 by default before 3.32, 32,766
    since; many distributions raise it): the open connection is asked, where
    Django assumes 999 for every build. A backend without ``getlimit`` (a
    third-party SQLite driver) keeps Django's figure.
    """
    limit = connection.features.max_query_params
    if connection.vendor == "sqlite":
        import sqlite3

        connection.ensure_connection()
        getlimit = getattr(connection.connection, "getlimit", None)
        if getlimit is not None:
            limit = getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    if limit is None:
        return preferred
    return max(1, min(preferred, (limit - fixed) // per_item))


def chunked(
    items: Sequence[T], size: int, *, weight: Callable[[T], int] | None = None, budget: int = 0
) -> list[Sequence[T]]:
    """``items`` in runs of at most ``size``, and (given ``weight``) at most ``budget`` in weight.

    An item heavier than the budget is a run of its own: it is written, in a
    statement that holds nothing else.
    """
    if weight is None:
        return [items[start:start + size] for start in range(0, len(items), size)]
    runs: list[Sequence[T]] = []
    start, carried = 0, 0
    for index, item in enumerate(items):
        heavy = weight(item)
        if index > start and (index - start == size or carried + heavy > budget):
            runs.append(items[start:index])
            start, carried = index, 0
        carried += heavy
    if start < len(items):
        runs.append(items[start:])
    return runs


def write_in_chunks(chunks: Sequence[Sequence[T]], write: Callable[[Sequence[T]], int]) -> int:
    """``write`` each chunk; the rows they updated, summed.

    More than one chunk runs in one transaction, so a retry never finds the
    write half done; a single chunk is one autocommitted statement, which
    spares the BEGIN and COMMIT round trips.
    """
    from django.db import transaction

    if len(chunks) <= 1:
        return sum(write(chunk) for chunk in chunks)
    with transaction.atomic():
        return sum(write(chunk) for chunk in chunks)


def _execute(connection: BaseDatabaseWrapper, statement: tuple[str, list[Any]]) -> int:
    """Run one hand-built statement; the rows it updated."""
    with connection.cursor() as cursor:
        cursor.execute(*statement)
        return max(int(cursor.rowcount), 0)


#: Rows written by one UPDATE: a whole 128-task batch in one statement where
#: the parameter limit allows (9 parameters a row; an SQLite built with the
#: old limit of 999 takes 111 rows a statement). Not more: the database tries
#: a row's ``CASE`` branches one by one, so a statement's work grows with
#: the square of its rows. On SQLite, with output captured, the end of a
#: 10,000-task slice took 425-580 ms in chunks of 500 and 195-215 ms in
#: chunks of 128 (64: 175 ms, for twice the statements).
ROWS_PER_STATEMENT = 128
#: At most: key and value for each of four CASEs, and the key in ``IN``.
PARAMS_PER_FINISHED_ROW = 9
#: Characters of output in one end UPDATE (a single larger row still goes,
#: alone). MySQL's client libraries put the values into the statement, and
#: MariaDB refuses a statement over ``max_allowed_packet`` (16 MiB by
#: default, 4 MiB on older servers): 128 rows of 200 KB output would be 25 MB.
#: A character is at most 4 bytes of UTF-8; the characters escaping doubles
#: (quotes, backslashes, NUL, newlines) are 1-byte ASCII, so a statement stays
#: under about 2 MiB. A single row past the packet limit still fails, as it
#: does for the stock worker, which writes each task's row alone.
TEXT_PER_STATEMENT = 512 * 1024

#: Keys in one start UPDATE (two more parameters: the time and the client).
#: A 128-row start took 0.73 ms through Django's ``filter(pk__in=…).update()``
#: and 0.35 ms hand-built (SQLite, medians). Django does not split a long
#: ``IN`` on any backend but Oracle; this bound does.
KEYS_PER_STATEMENT = 900


def _start_statement(
    connection: BaseDatabaseWrapper, keys: Sequence[str], values: list[Any]
) -> tuple[str, list[Any]]:
    """``UPDATE Tasks SET startTime = %s, client = %s WHERE taskUUID IN (…)``."""
    from worker.models import Task

    quote = connection.ops.quote_name
    meta = Task._meta
    sets = ", ".join(f"{quote(_column(meta.get_field(name)))} = %s" for name in ("starttime", "client"))
    marks = ", ".join(["%s"] * len(keys))
    sql = f"UPDATE {quote(meta.db_table)} SET {sets} WHERE {quote(_column(meta.pk))} IN ({marks})"
    return sql, [*values, *keys]


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
    vendor = connection.vendor
    failed = [row for row in rows if row.exit_code]
    # (column, rows it is written for, value): every column is one CASE.
    columns: list[tuple[str, Sequence[TaskResult], Callable[[TaskResult], Any]]] = [
        ("endtime", rows, lambda r: adapt_time(r.finished_at)),
        ("exitcode", rows, lambda r: r.exit_code),
    ]
    if capture_output:
        columns += [
            ("stdout", rows, lambda r: storable_text(r.stdout, vendor)),
            ("stderror", rows, lambda r: storable_text(r.stderr, vendor)),
        ]
    elif failed:
        # Without capture, a failed task's stderr is still kept: it is the
        # only record of why it failed. The stock worker's per-task write
        # stores output only with capture on; its bulk_mark_failed stores a
        # failed batch's message in stdError whatever the setting.
        columns.append(("stderror", failed, lambda r: storable_text(r.stderr, vendor)))
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
