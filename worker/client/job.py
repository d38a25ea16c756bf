"""The ``Job`` object a client script's ``call(jobs)`` receives.

A client script reports each task's result through its ``Job``: an exit code
(:meth:`Job.set_status`) plus standard output and error text. The API here is
the one Archivematica's client scripts were written against (see "The
client-script API" in ``docs/ccp-contract.md``), so those scripts run
unchanged.

Two things differ from a naive implementation, both invisible to scripts:

* Output is **bounded**. Each stream is an :class:`OutputBuffer` that keeps at
  most ``max_output_bytes`` of UTF-8 and then records how much it dropped, so
  a runaway script cannot exhaust a worker's memory or the result payload.
* :meth:`Job.JobContext` also turns ``SystemExit`` into a failed job, so one
  script calling ``sys.exit()`` cannot take the rest of its batch down.
"""

from __future__ import annotations

import io
import logging
import sys
import traceback
from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Any, TypeAlias

DEFAULT_MAX_OUTPUT_BYTES = 8 * 1024 * 1024
"""Default bound, in UTF-8 bytes, on each of a job's stdout and stderr (8 MiB).

Archivematica stores both in ``Tasks`` text columns and ships them back over
Gearman; a few MiB is far beyond any useful script output, and the bound keeps
one chatty script from exhausting a worker or a result payload.
"""

TRUNCATION_MARKER = (
    "\n[amworker: output truncated after {kept} bytes; {dropped} more bytes dropped]\n"
)
"""Appended (once) to a stream that went over its bound; filled in on reading."""

_COMPACT_EVERY = 256
"""Join this many buffered pieces into one, so tiny writes cost no per-object memory."""

_COUNT_CHUNK_CHARS = 64 * 1024
"""Non-ASCII text is measured in slices this long, bounding temporary memory."""

_SUCCESS = "success"
"""The initial ``status_code`` and the default of :meth:`Job.set_status`."""

_log = logging.getLogger("amworker.job")

Writable: TypeAlias = str | bytes | bytearray | memoryview
"""What ``write_output``/``write_error`` accept: text, or UTF-8 bytes."""


def utf8_size(text: str) -> int:
    """Return how many bytes ``text`` takes as UTF-8 (lone surrogates as 3 bytes).

    ASCII text (checked in O(1) by CPython) is measured by its length; other
    text is encoded slice by slice, never all at once.
    """
    if text.isascii():
        return len(text)
    return sum(
        len(text[i : i + _COUNT_CHUNK_CHARS].encode("utf-8", "surrogatepass"))
        for i in range(0, len(text), _COUNT_CHUNK_CHARS)
    )


def _utf8_prefix(text: str, limit: int) -> str:
    """Return the longest prefix of ``text`` whose UTF-8 form fits in ``limit`` bytes."""
    head = text[:limit]  # every code point takes at least one byte
    data = head.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return head
    cut = limit
    while cut > 0 and data[cut] & 0xC0 == 0x80:  # back off to a character boundary
        cut -= 1
    return data[:cut].decode("utf-8", "surrogatepass")


def _as_text(value: object, what: str) -> str:
    """Accept what scripts write: any ``str`` as-is, bytes decoded leniently."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    raise TypeError(f"{what} expects str or bytes, not {type(value).__name__}")


class OutputBuffer:
    """An append-only text buffer that keeps at most ``limit_bytes`` of UTF-8.

    Writes are cheap: a piece is appended to a list and measured (O(1) for
    ASCII). Once a write would pass the bound, the part that fits is kept,
    the rest is counted but dropped, and so is everything written after it.
    Reading renders the kept text followed by one :data:`TRUNCATION_MARKER`
    saying how much was dropped; the result is cached until the next write.
    """

    def __init__(self, limit_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> None:
        if limit_bytes < 0:
            raise ValueError(f"limit_bytes must be >= 0, not {limit_bytes}")
        self.limit_bytes = limit_bytes
        self.clear()

    def clear(self) -> None:
        """Forget all content, kept and dropped."""
        self._pieces: list[str] = []
        self._compacted = 0  # pieces before this index are already joined runs
        self._kept_bytes = 0
        self._dropped_bytes = 0
        self._rendered: str | None = ""

    @property
    def kept_bytes(self) -> int:
        """UTF-8 bytes kept so far (never more than ``limit_bytes``)."""
        return self._kept_bytes

    @property
    def dropped_bytes(self) -> int:
        """UTF-8 bytes written past the bound and dropped."""
        return self._dropped_bytes

    @property
    def truncated(self) -> bool:
        """Whether anything was dropped."""
        return self._dropped_bytes > 0

    def write(self, text: str) -> None:
        """Append ``text``, or as much of it as the bound allows."""
        if not text:
            return
        self._rendered = None
        size = utf8_size(text)
        if self._dropped_bytes:
            self._dropped_bytes += size
            return
        room = self.limit_bytes - self._kept_bytes
        if size > room:
            text = _utf8_prefix(text, room)
            kept = utf8_size(text)
            self._dropped_bytes = size - kept
            size = kept
            if not text:
                return
        self._kept_bytes += size
        self._pieces.append(text)
        if len(self._pieces) - self._compacted >= _COMPACT_EVERY:
            run = "".join(self._pieces[self._compacted :])
            del self._pieces[self._compacted :]
            self._pieces.append(run)
            self._compacted = len(self._pieces)

    def replace(self, text: str) -> None:
        """Make ``text`` (bounded like any write) the whole content."""
        self.clear()
        self.write(text)

    def ends_with_newline(self) -> bool:
        """Whether the kept text is empty or ends with a line break."""
        return not self._pieces or self._pieces[-1].endswith("\n")

    def getvalue(self) -> str:
        """Return the kept text, plus the truncation marker if anything was dropped."""
        if self._rendered is None:
            body = "".join(self._pieces)
            self._pieces = [body] if body else []
            self._compacted = len(self._pieces)
            if self._dropped_bytes:
                body += TRUNCATION_MARKER.format(kept=self._kept_bytes, dropped=self._dropped_bytes)
            self._rendered = body
        return self._rendered

    def __str__(self) -> str:
        return self.getvalue()

    def __len__(self) -> int:
        return len(self.getvalue())


class _JobLogHandler(logging.Handler):
    """Copies log records into a job: ERROR and up to stderr, the rest to stdout."""

    def __init__(self, job: Job) -> None:
        super().__init__(level=logging.INFO)
        self.setFormatter(logging.Formatter("%(message)s"))
        self._job = job

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # noqa: BLE001 - a bad record must not break the script
            self.handleError(record)
            return
        if record.levelno >= logging.ERROR:
            self._job.write_error(line)
        else:
            self._job.write_output(line)


class JobContext:
    """Runs a block on behalf of one job; see :meth:`Job.JobContext`."""

    def __init__(
        self,
        job: Job,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self._job = job
        if isinstance(logger, logging.LoggerAdapter):
            logger = logger.logger
        self._logger: logging.Logger | None = logger
        self._handler: _JobLogHandler | None = None
        self._saved_level: int | None = None

    def __enter__(self) -> JobContext:
        logger = self._logger
        if logger is not None:
            self._handler = _JobLogHandler(self._job)
            logger.addHandler(self._handler)
            if logger.getEffectiveLevel() > logging.INFO:
                # Otherwise the script's logger.info() would never reach the job.
                self._saved_level = logger.level
                logger.setLevel(logging.INFO)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._detach()
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            return False
        # Anything else, SystemExit included, fails this job only.
        job = self._job
        if not job.error_buffer.ends_with_newline():
            job.write_error("\n")
        job.write_error("".join(traceback.format_exception(exc_type, exc, tb)))
        job.set_status(1, "error")
        return True

    def _detach(self) -> None:
        logger, handler = self._logger, self._handler
        if logger is None or handler is None:
            return
        logger.removeHandler(handler)
        self._handler = None
        # Restore the level only if the script did not change it meanwhile.
        if self._saved_level is not None and logger.level == logging.INFO:
            logger.setLevel(self._saved_level)
        self._saved_level = None


_JobContextType: TypeAlias = JobContext  # Job.JobContext shadows the name in the class body


class Job:
    """One task of a batch, as a client script sees it.

    ``args`` is ``[name] + argv``. A script reports failure with
    :meth:`set_status` and text through the ``write_*``/``print_*`` methods
    (or by assigning :attr:`output`/:attr:`error`). The executor sets
    ``start_time``/``end_time`` and reads :meth:`get_exit_code`,
    :meth:`get_stdout` and :meth:`get_stderr` when the script returns.
    """

    def __init__(
        self,
        name: str,
        uuid: str,
        args: Iterable[str],
        caller_wants_output: bool = False,
        *,
        capture_output: bool | None = None,
        max_output_bytes: int | None = None,
    ) -> None:
        limit = DEFAULT_MAX_OUTPUT_BYTES if max_output_bytes is None else max_output_bytes
        self.name = name
        self.uuid = uuid
        self.args: list[str] = [name, *args]
        self.capture_output = caller_wants_output if capture_output is None else capture_output
        self.start_time: datetime | None = None
        self.end_time: datetime | None = None
        self.int_code = 0
        self.status_code = _SUCCESS
        self.output_buffer = OutputBuffer(limit)
        self.error_buffer = OutputBuffer(limit)

    def __repr__(self) -> str:
        return f"<Job {self.name} {self.uuid} exit={self.int_code}>"

    @property
    def caller_wants_output(self) -> bool:
        """Older name of :attr:`capture_output`."""
        return self.capture_output

    @caller_wants_output.setter
    def caller_wants_output(self, value: bool) -> None:
        self.capture_output = value

    @property
    def output(self) -> str:
        """Everything written to stdout so far (bounded)."""
        return self.output_buffer.getvalue()

    @output.setter
    def output(self, value: Writable) -> None:
        _assign(self.output_buffer, _as_text(value, "Job.output"))

    @property
    def error(self) -> str:
        """Everything written to stderr so far (bounded)."""
        return self.error_buffer.getvalue()

    @error.setter
    def error(self, value: Writable) -> None:
        _assign(self.error_buffer, _as_text(value, "Job.error"))

    def set_status(self, code: int, status_code: str = _SUCCESS) -> None:
        """Set the exit code and status, unless ``code`` is falsy.

        A falsy code changes nothing, so exit codes only move away from 0: a
        script that reports a failure and later calls ``set_status(0)`` still
        fails.
        """
        if code:
            self.int_code = int(code)
            self.status_code = status_code

    def write_output(self, s: Writable) -> None:
        """Append ``s`` to stdout as-is (bytes are decoded as UTF-8)."""
        self.output_buffer.write(_as_text(s, "write_output()"))

    def write_error(self, s: Writable) -> None:
        """Append ``s`` to stderr as-is (bytes are decoded as UTF-8)."""
        self.error_buffer.write(_as_text(s, "write_error()"))

    def print_output(self, *args: object) -> None:
        """Append the arguments, joined by spaces, and a newline to stdout."""
        self.write_output(" ".join(map(str, args)) + "\n")

    def print_error(self, *args: object) -> None:
        """Append the arguments, joined by spaces, and a newline to stderr."""
        self.write_error(" ".join(map(str, args)) + "\n")

    def pyprint(
        self,
        *objects: object,
        sep: str | None = " ",
        end: str | None = "\n",
        file: Any = None,
        flush: bool = False,
    ) -> None:
        """Like :func:`print`, into this job: ``file`` may only be stdout or stderr.

        ``file`` is compared with both the current ``sys.stdout``/``sys.stderr``
        and the interpreter's original streams, since workers often replace
        the former. ``None`` means stdout, as for :func:`print`.
        """
        buffer = io.StringIO()
        print(*objects, sep=sep, end=end, file=buffer)
        text = buffer.getvalue()
        if file is None or file is sys.stdout or file is sys.__stdout__:
            self.write_output(text)
        elif file is sys.stderr or file is sys.__stderr__:
            self.write_error(text)
        else:
            raise ValueError(
                f"Job.pyprint() can only print to sys.stdout or sys.stderr, not {file!r}"
            )

    def get_exit_code(self) -> int:
        """Return the exit code (0 unless a non-zero code was set)."""
        return self.int_code or 0

    def get_stdout(self) -> str:
        """Return the job's standard output text."""
        return self.output

    def get_stderr(self) -> str:
        """Return the job's standard error text."""
        return self.error

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

    def log_results(self) -> None:
        """Log :meth:`dump` at DEBUG through the ``amworker.job`` logger."""
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("%s", self.dump())

    def JobContext(  # noqa: N802 - the name scripts call
        self,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> _JobContextType:
        """Return a context manager that runs a block on behalf of this job.

        An exception escaping the block (``SystemExit`` included, but not
        ``KeyboardInterrupt``) is suppressed: its traceback goes to this job's
        stderr and the job fails with exit code 1 and status ``"error"``, so
        the script can go on with its next job. With ``logger``, records of
        INFO and up logged through it during the block are copied to this
        job's stdout (ERROR and up to its stderr); the logger's level is
        lowered to INFO for the block if needed.
        """
        return JobContext(self, logger)


def _assign(buffer: OutputBuffer, value: str) -> None:
    """Replace a buffer's content, treating ``x += y`` as an append of ``y``."""
    current = buffer.getvalue()
    if value.startswith(current):
        buffer.write(value[len(current) :])
    else:
        buffer.replace(value)
