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

from worker.codec.records import sanitize_text
from worker.pool.bookkeeping import RetryPolicy, with_retries


def update_rows(uuids: Sequence[str], what: str, **columns: Any) -> int | None:
    """``UPDATE Tasks SET … WHERE taskUUID IN (uuids)``, retried; rows matched or ``None``."""
    from worker.models import Task

    if not uuids:
        return 0
    for name in ("stdout", "stderror"):
        if isinstance(columns.get(name), str):
            columns[name] = sanitize_text(columns[name])
    return with_retries(
        lambda: Task.objects.filter(pk__in=list(uuids)).update(**columns),
        what=what,
        policy=RetryPolicy(),
    )


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
