"""Logging for client scripts: :func:`get_script_logger`.

A script's logger serves two audiences. Inside ``with job.JobContext(logger=...)``
its INFO-and-up records become the job's output (see ``worker.client.job``),
which is what an Archivematica user sees. The worker's operators still want
those records in the worker's own log, but only as DEBUG detail: a script's
"INFO" is not an event of the worker.

So a script logger does not propagate. Instead it carries one
:class:`WorkerLogForwarder`, which re-emits a DEBUG copy of each record
through the logger ``amworker.scripts.<name>``, where the worker's logging
configuration decides whether to keep it.
"""

from __future__ import annotations

import logging

SCRIPT_LOG_PREFIX = "amworker.scripts."
"""Script records reach the worker's log under this prefix plus the script logger's name."""

_FORWARDED = "_amworker_forwarded"
"""Set on forwarded copies, so a copy that propagates back to a forwarder is not re-sent."""


class WorkerLogForwarder(logging.Handler):
    """Re-emits a DEBUG copy of each record through another logger.

    The original record is left untouched, so other handlers (a job's
    capture handler, for instance) still see its real level.
    """

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, _FORWARDED, False) or not self.target.isEnabledFor(logging.DEBUG):
            return
        copy = logging.makeLogRecord(record.__dict__)
        copy.levelno = logging.DEBUG
        copy.levelname = logging.getLevelName(logging.DEBUG)
        copy.name = self.target.name
        setattr(copy, _FORWARDED, True)
        self.target.handle(copy)


def get_script_logger(
    name: str,
    formatter: str | None = None,
    root: str | None = None,
    level: int | None = None,
) -> logging.Logger:
    """Return the logger ``name``, configured for a client script.

    Its level becomes INFO unless it already has a lower one set (or ``level``
    is given). It stops propagating and gains one :class:`WorkerLogForwarder`
    to ``amworker.scripts.<name>`` (only once, however often this is called).

    ``formatter`` and ``root`` exist only so that calls written for older
    Archivematica releases keep working; they are ignored.
    """
    del formatter, root  # accepted for compatibility; amworker's logging config decides
    logger = logging.getLogger(name)
    if level is not None:
        logger.setLevel(level)
    elif logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.propagate = False
    if not any(isinstance(h, WorkerLogForwarder) for h in logger.handlers):
        logger.addHandler(WorkerLogForwarder(logging.getLogger(SCRIPT_LOG_PREFIX + name)))
    return logger
