"""The ``Tasks`` row writes behind ``Job``'s bookkeeping methods.

The stock worker's ``Job`` has ``bulk_set_start_times``, ``bulk_mark_failed``
and ``update_task_status``, and the stock worker calls them around each
batch. amworker's runtime writes the rows itself, in bulk, around each slice
(worker.pool.bookkeeping), so nothing in amworker calls these; they exist for
scripts and tools written against the stock class. They write the same
columns stock's do, through amworker's ``Task`` model (the same ``Tasks``
table Archivematica's ``main.models.Task`` maps), text cleaned the way
amworker's own writes clean it, and retried like them. Django is imported
only when one is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from worker.codec.records import storable_text
from worker.pool.bookkeeping import (
    KEYS_PER_STATEMENT,
    RetryPolicy,
    chunked,
    fitted,
    with_retries,
    write_in_chunks,
)


def update_rows(uuids: Sequence[str], what: str, **columns: Any) -> int | None:
    """``UPDATE Tasks SET … WHERE taskUUID IN (uuids)``, retried; rows matched or ``None``.

    Cut into statements the way the runtime's own writes are (Django splits
    no ``IN`` list but Oracle's, and a script marking a whole large batch
    would pass SQLite's parameter limit), several in one transaction.
    """
    from django.db import connection

    from worker.models import Task

    if not uuids:
        return 0
    keys = list(uuids)
    for name in ("stdout", "stderror"):
        if isinstance(columns.get(name), str):
            columns[name] = storable_text(columns[name], connection.vendor)

    def write() -> int:
        # The columns take parameters too: keys and values stay within 900.
        size = fitted(connection, KEYS_PER_STATEMENT - len(columns), per_item=1, fixed=len(columns))
        return write_in_chunks(chunked(keys, size),
                               lambda chunk: Task.objects.filter(pk__in=chunk).update(**columns))

    return with_retries(write, what=what, policy=RetryPolicy())


def capture_output() -> bool:
    """Whether task output is stored (``AMWORKER_CAPTURE_OUTPUT`` and its stock fallback)."""
    from worker.config import current_settings

    return current_settings().capture_output


def finished_columns(
    exit_code: int, end_time: datetime, stdout: str, stderr: str, *, capture: bool
) -> dict[str, Any]:
    """The columns ``update_task_status`` writes: stock's, and amworker's failure rule.

    Output is stored when capture is on. When it is off, a failed task's
    stderr is still stored, as amworker's slice bookkeeping does, since it is
    the only record of why the task failed.
    """
    columns: dict[str, Any] = {"exitcode": exit_code, "endtime": end_time}
    if capture:
        columns.update(stdout=stdout, stderror=stderr)
    elif exit_code:
        columns["stderror"] = stderr
    return columns
