"""The ``Job`` object a client script's ``call(jobs)`` receives.

A client script reports each task's result through its ``Job``: an exit code
(:meth:`Job.set_status`) plus standard output and error text. Everything a
script, its tests or the controller can observe behaves as the stock
worker's ``Job`` does (docs/design.md, "The controller contract"; docs/scripts.md):
the constructor and its keyword names, the initial attributes, ``set_status``,
``pyprint``'s targets, the text ``JobContext`` writes for an exception, and
what a logger passed to ``JobContext`` adds to the job.

Where amworker differs on purpose (docs/migrating.md, "Differences from the
stock worker"):

* Output is **bounded** (:mod:`worker.client.output`): each stream keeps at
  most ``max_output_bytes`` of UTF-8, then one truncation marker.
* ``write_*`` and assignment also accept UTF-8 bytes; ``get_exit_code()``
  reads an ``int_code`` a script set to ``None`` as 0.
* ``JobContext`` accepts a ``LoggerAdapter`` as well as a ``Logger``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from worker.client import rows
from worker.client.log_capture import capture_handler
from worker.client.output import (
    DEFAULT_MAX_OUTPUT_BYTES,
    TRUNCATION_MARKER,
    OutputBuffer,
    Writable,
    as_text,
    assign,
    utf8_size,
)

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "TRUNCATION_MARKER",
    "Job",
    "OutputBuffer",
    "UnrecognisedPrintFile",
    "utf8_size",
]

_log = logging.getLogger("amworker.job")

AnyLogger = logging.Logger | logging.LoggerAdapter[logging.Logger]


class UnrecognisedPrintFile(Exception):  # noqa: N818 - stock raises a bare Exception
    """``pyprint`` was given a ``file`` other than the current stdout or stderr."""


def _now() -> datetime:
    return datetime.now(UTC)


class Job:
    """One task of a batch, as a client script sees it.

    ``args`` is ``[name] + arguments``. A script reports failure with
    :meth:`set_status` and text through the ``write_*``/``print_*`` methods
    (or by assigning :attr:`output`/:attr:`error`). The executor sets
    ``start_time``/``end_time`` and reads :meth:`get_exit_code`,
    :meth:`get_stdout` and :meth:`get_stderr` when the script returns.

    Keyword-only, amworker's own: ``caller_wants_output`` (the older name of
    ``capture_output``), ``max_output_bytes`` (the bound on each stream) and
    ``log_every_record`` (what ``JobContext(logger=…)`` captures; see
    :mod:`worker.client.log_capture`).
    """

    def __init__(
        self,
        name: str,
        uuid: str,
        arguments: Iterable[str],
        capture_output: bool = False,
        *,
        caller_wants_output: bool | None = None,
        max_output_bytes: int | None = None,
        log_every_record: bool = False,
    ) -> None:
        limit = DEFAULT_MAX_OUTPUT_BYTES if max_output_bytes is None else max_output_bytes
        self.name = name
        self.uuid = uuid
        self.args: list[str] = [name, *arguments]
        self.capture_output = bool(capture_output or caller_wants_output)
        self.int_code: int = 0
        self.status_code = ""
        self.output_buffer = OutputBuffer(limit)
        self.error_buffer = OutputBuffer(limit)
        self.start_time: datetime | None = None
        self.end_time: datetime | None = None
        self.log_every_record = log_every_record
        #: Exceptions a ``JobContext`` lets through instead of failing this
        #: job alone: the executor's soft time limit, which stops the slice.
        self.passes_through: tuple[type[BaseException], ...] = ()

    def __repr__(self) -> str:
        return f"<Job {self.name} {self.uuid} exit={self.int_code}>"

    @property
    def caller_wants_output(self) -> bool:
        """Older name of :attr:`capture_output`."""
        return self.capture_output

    @caller_wants_output.setter
    def caller_wants_output(self, value: bool) -> None:
        self.capture_output = value

    # --- the stock worker's bookkeeping (see worker.client.rows) ---------------

    @classmethod
    def bulk_set_start_times(cls, jobs: Sequence[Job]) -> None:
        """Give every job, and its ``Tasks`` row, the same start time: now."""
        started = _now()
        for job in jobs:
            job.start_time = started
        rows.update_rows(
            [job.uuid for job in jobs], f"recording the start of {len(jobs)} task(s)",
            starttime=started,
        )

    @classmethod
    def bulk_mark_failed(cls, jobs: Sequence[Job], message: str) -> None:
        """Fail every job: rows get exit code 1, ``message`` as stderr and an end time.

        As in the stock worker, each job's ``status_code`` becomes ``message``
        and its own stderr is left as it was.
        """
        rows.update_rows(
            [job.uuid for job in jobs], f"marking {len(jobs)} task(s) failed",
            stderror=str(message), exitcode=1, endtime=_now(),
        )
        for job in jobs:
            job.set_status(1, status_code=message)

    def update_task_status(self) -> None:
        """Set :attr:`end_time` to now and write the result to this job's row."""
        self.end_time = _now()
        columns = rows.finished_columns(
            self.get_exit_code(), self.end_time, self.get_stdout(), self.get_stderr(),
            capture=rows.capture_output(),
        )
        rows.update_rows([self.uuid], "recording the end of 1 task", **columns)

    def log_results(self) -> None:
        """Log the job's name, exit code, status, UUID, stdout and stderr at INFO."""
        _log.info("%s", self.dump())

    def dump(self) -> str:
        """Return a readable multi-line summary of the job and its result."""
        return (
            f"Job {self.name} (uuid {self.uuid})\n"
            f"args: {self.args!r}\n"
            f"exit code: {self.get_exit_code()} (status: {self.status_code})\n"
            f"----- stdout -----\n{self.get_stdout()}\n"
            f"----- stderr -----\n{self.get_stderr()}\n"
            "----- end -----"
        )

    # --- results ----------------------------------------------------------------

    def set_status(self, int_code: int, status_code: str = "success") -> None:
        """Set the exit code unless ``int_code`` is falsy; always set ``status_code``.

        Exit codes only move away from 0: a script that reported a failure
        and later calls ``set_status(0)`` still fails (with the new status).
        """
        if int_code:
            self.int_code = int(int_code)
        self.status_code = status_code

    @property
    def output(self) -> str:
        """Everything written to stdout so far (bounded)."""
        return self.output_buffer.getvalue()

    @output.setter
    def output(self, value: Writable) -> None:
        assign(self.output_buffer, as_text(value, "Job.output"))

    @property
    def error(self) -> str:
        """Everything written to stderr so far (bounded)."""
        return self.error_buffer.getvalue()

    @error.setter
    def error(self, value: Writable) -> None:
        assign(self.error_buffer, as_text(value, "Job.error"))

    def write_output(self, s: Writable) -> None:
        """Append ``s`` to stdout as-is (bytes are decoded as UTF-8)."""
        self.output_buffer.write(as_text(s, "write_output()"))

    def write_error(self, s: Writable) -> None:
        """Append ``s`` to stderr as-is (bytes are decoded as UTF-8)."""
        self.error_buffer.write(as_text(s, "write_error()"))

    def print_output(self, *args: object) -> None:
        """Append the arguments, joined by spaces, and a newline to stdout."""
        self.write_output(" ".join(map(str, args)) + "\n")

    def print_error(self, *args: object) -> None:
        """Append the arguments, joined by spaces, and a newline to stderr."""
        self.write_error(" ".join(map(str, args)) + "\n")

    def pyprint(self, *objects: object, **kwargs: Any) -> None:
        """Print into this job: ``file`` (default ``sys.stdout``) picks the stream.

        ``file`` is compared by identity with ``sys.stdout``, then
        ``sys.stderr``, as they are when this is called; any other object
        raises. ``sep`` and ``end`` are used through ``str()``; other keywords
        (``flush``) are ignored.
        """
        target = kwargs.get("file", sys.stdout)
        text = str(kwargs.get("sep", " ")).join(map(str, objects)) + str(kwargs.get("end", "\n"))
        if target is sys.stdout:
            self.write_output(text)
        elif target is sys.stderr:
            self.write_error(text)
        else:
            raise UnrecognisedPrintFile(f"Unrecognised print file: {target}")

    def get_exit_code(self) -> int:
        """Return the exit code (0 unless a non-zero code was set)."""
        return self.int_code or 0

    def get_stdout(self) -> str:
        """Return the job's standard output text."""
        return self.output

    def get_stderr(self) -> str:
        """Return the job's standard error text."""
        return self.error

    @contextlib.contextmanager
    def JobContext(self, logger: AnyLogger | None = None) -> Iterator[None]:  # noqa: N802
        """Run a block on behalf of this job.

        An ``Exception`` escaping the block is suppressed: ``str(e)`` and then
        the traceback (which starts in this frame, as stock's does) are
        appended to stderr, and the job fails with exit code 1 and status
        ``"error"``, so the script goes on with its next job. ``SystemExit``
        and ``KeyboardInterrupt`` pass through (the executor fails the slice's
        jobs on ``SystemExit``), and so do the exceptions the executor names
        in :attr:`passes_through` (the slice's soft time limit: caught here,
        it would fail one job and let the script run on, past its limit and
        into the hard one, which kills the pool process and every result
        with it). So the slice stops, and each of its jobs fails with the
        time limit's cause, those finished before it too.

        With ``logger``, a capture handler is attached for the block (see
        :mod:`worker.client.log_capture`) and removed, without a flush, at the
        end.
        """
        target = logger.logger if isinstance(logger, logging.LoggerAdapter) else logger
        handler = capture_handler(self, self.log_every_record) if target else None
        if target and handler:
            target.addHandler(handler)
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - stock's boundary: any script fault
            if isinstance(exc, self.passes_through):
                raise
            # Stock's text and exit code, not worker.contract.results.fail_jobs
            # (a cause on a line of its own, a failed job's code kept): scripts
            # and their tests compare this stderr with the stock worker's.
            self.write_error(str(exc))
            self.write_error(traceback.format_exc())
            self.set_status(1, status_code="error")
        finally:
            if target and handler:
                target.removeHandler(handler)
