"""What ``JobContext(logger=…)`` adds to a job's output: the two capture handlers.

By default, exactly what the stock worker's handler adds, odd as it is
(:class:`BufferedJobLogHandler`): records are held in a buffer of
:data:`BUFFER_CAPACITY`; only when it fills are their messages written to the
job, without line breaks; whatever is still buffered when the block ends is
dropped. So a script that logs fewer than 100 records contributes nothing to
its task's stdout or stderr, which matters because the controller parses some
functions' stdout as JSON and writes others to the unit's log files.

``AMWORKER_SCRIPT_LOGS_IN_OUTPUT`` opts into :class:`EveryRecordHandler`
instead: every record, formatted, one line each, as it is logged.

Either way the records also propagate to the worker's own log.
"""

from __future__ import annotations

import logging
from logging.handlers import BufferingHandler
from typing import Protocol

BUFFER_CAPACITY = 100
"""Records the stock handler holds before writing them all to the job."""

CAPTURE_LEVEL = logging.INFO
"""Both handlers ignore records below this level."""


class JobStreams(Protocol):
    """The part of a ``Job`` the handlers write to."""

    def write_output(self, s: str) -> None: ...

    def write_error(self, s: str) -> None: ...


def _write(job: JobStreams, record: logging.LogRecord, text: str) -> None:
    """ERROR and up to the job's stderr, everything else to its stdout."""
    if record.levelno >= logging.ERROR:
        job.write_error(text)
    else:
        job.write_output(text)


class BufferedJobLogHandler(BufferingHandler):
    """The stock worker's capture, record for record.

    ``flush`` runs when the buffer holds :data:`BUFFER_CAPACITY` records (and
    on ``close``, which ``JobContext`` never calls): each record's message,
    with its arguments merged but no traceback and no line break, goes to the
    job. The formatter is set to ``%(message)s`` like stock's, though flushing
    does not use it.
    """

    def __init__(self, job: JobStreams, capacity: int = BUFFER_CAPACITY) -> None:
        super().__init__(capacity)
        self.job = job
        self.setLevel(CAPTURE_LEVEL)
        self.setFormatter(logging.Formatter("%(message)s"))

    def flush(self) -> None:
        self.acquire()
        try:
            for record in self.buffer:
                _write(self.job, record, record.getMessage())
            self.buffer.clear()
        finally:
            self.release()


class EveryRecordHandler(logging.Handler):
    """The opt-in capture: every record of INFO and up, formatted, one line each."""

    def __init__(self, job: JobStreams) -> None:
        super().__init__(level=CAPTURE_LEVEL)
        self.job = job
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # noqa: BLE001 - a bad record must not break the script
            self.handleError(record)
            return
        _write(self.job, record, line)


def capture_handler(job: JobStreams, every_record: bool) -> logging.Handler:
    """The handler ``JobContext`` attaches for ``job``."""
    return EveryRecordHandler(job) if every_record else BufferedJobLogHandler(job)
