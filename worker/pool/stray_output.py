"""A script's stray output: what it writes outside the Job API, bounded in the worker's log.

While a slice runs, fd 1 and fd 2 of the pool process (inherited by the
script's children) and ``sys.stdout``/``sys.stderr`` point into two pipes. A
reader thread logs what comes through under ``amworker.stdout`` (INFO) and
``amworker.stderr`` (WARNING), one record per line, lines longer than
:data:`LINE_BYTES` cut into pieces. Once the slice's budget
(``AMWORKER_MAX_LOG_BYTES``) is spent it logs one marker and only counts the
rest, still reading so a writer never blocks on a full pipe. At the end of
the slice one line says how much was not logged.

Without this a ``print()`` of 200 MB became one 200 MB line in the worker's
log, and nothing bounded a script that chatters on fd 1.

The redirection is per process: it assumes one slice at a time per process,
which Celery's prefork pool (amworker's) guarantees. Under a thread pool
(slices off the main thread) :func:`guard` leaves the descriptors alone.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import queue
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from worker import logs
from worker.pool.process_thread import ProcessThread

#: The longest piece of one line that becomes one log record.
LINE_BYTES = 4096
#: What one record costs against the budget besides its text: the log line's
#: own prefix (time, level, process, logger, batch). Keeps a flood of empty
#: lines as bounded as a flood of long ones.
RECORD_COST = 128
#: How long the reader keeps draining after the slice, for data still in the pipes.
DRAIN_SECONDS = 2.0
#: One read of a pipe (a Linux pipe holds 16 pages: 64 KiB with 4 KiB pages).
PIPE_READ_BYTES = 65536
#: Reads per pipe once the drain time is over: 1 MiB, a full pipe even with
#: 64 KiB pages, and a bound on what an escaped writer can add meanwhile.
FINAL_READS = 16

STDOUT_LOGGER = logging.getLogger("amworker.stdout")
STDERR_LOGGER = logging.getLogger("amworker.stderr")


class StrayOutput:
    """Reads the two pipes and logs their lines within ``limit`` bytes."""

    def __init__(self, pipes: dict[int, tuple[logging.Logger, int]], limit: int) -> None:
        self._pipes = pipes
        self.limit = limit
        self.spent = 0
        self.dropped = 0
        self._partial: dict[int, bytes] = {fd: b"" for fd in pipes}
        self._stopped_at: float | None = None

    def run(self) -> None:
        """Read until every writer is gone (or the drain time after :meth:`stop` ran out)."""
        open_fds = set(self._pipes)
        try:
            while open_fds and not self._drained():
                self._read_ready(open_fds, 0.1)
            # Drain time ran out: what the slice wrote is still in the pipes
            # if this thread got no CPU meanwhile (a loaded host). A bounded
            # number of reads takes what a full pipe holds, and no more, so a
            # writer that escaped the slice still cannot keep the reader.
            for _ in range(FINAL_READS):
                if not self._read_ready(open_fds, 0.0):
                    break
        finally:
            for fd in self._pipes:
                self._flush(fd)
                os.close(fd)

    def _read_ready(self, open_fds: set[int], timeout: float) -> bool:
        """One read of each pipe that has data within ``timeout``; True if any data came.

        A pipe at EOF leaves ``open_fds``.
        """
        ready, _, _ = select.select(list(open_fds), [], [], timeout)
        got = False
        for fd in ready:
            data = os.read(fd, PIPE_READ_BYTES)
            if data:
                self.feed(fd, data)
                got = True
            else:
                open_fds.discard(fd)
        return got

    def stop(self) -> None:
        """The slice is over: drain what is left, then end."""
        self._stopped_at = time.monotonic()

    def _drained(self) -> bool:
        # A writer that escaped the slice (nothing should) must not keep the reader forever.
        return self._stopped_at is not None and time.monotonic() - self._stopped_at > DRAIN_SECONDS

    def feed(self, fd: int, data: bytes) -> None:
        """Log the complete lines of ``data``; keep a partial line for the next read."""
        if self.spent >= self.limit:
            self._drop(len(data))  # over budget: count, never split or decode
            return
        lines = (self._partial[fd] + data).split(b"\n")
        rest = lines.pop()
        for line in lines:
            self._emit(fd, line, newline=True)
        while len(rest) >= LINE_BYTES:
            self._emit(fd, rest[:LINE_BYTES], newline=False)
            rest = rest[LINE_BYTES:]
        self._partial[fd] = rest if self.spent < self.limit else b""
        if self.spent >= self.limit and rest:
            self._drop(len(rest))

    def _flush(self, fd: int) -> None:
        if self._partial[fd]:
            self._emit(fd, self._partial[fd], newline=False)
            self._partial[fd] = b""

    def _emit(self, fd: int, line: bytes, *, newline: bool) -> None:
        cost = len(line) + RECORD_COST
        if self.spent + cost > self.limit:
            self.spent = self.limit
            self._drop(len(line) + newline)
            return
        self.spent += cost
        logger, level = self._pipes[fd]
        logger.log(level, "%s", line.decode("utf-8", "backslashreplace"))

    def _drop(self, size: int) -> None:
        """Count ``size`` bytes not logged; the first time, say so in the log."""
        if not self.dropped:
            STDERR_LOGGER.warning(
                "amworker: stray output truncated: this slice's output outside the Job API "
                "passed AMWORKER_MAX_LOG_BYTES (%d bytes); the rest is counted, not logged",
                self.limit)
        self.dropped += size

    def report(self) -> None:
        """One line saying how much was not logged, if anything was not."""
        if self.dropped:
            STDERR_LOGGER.warning(
                "amworker: stray output truncated: %d byte(s) of this slice's output outside the "
                "Job API were not logged (AMWORKER_MAX_LOG_BYTES=%d); scripts should use "
                "job.write_output()/job.write_error()", self.dropped, self.limit)


def guard(limit: int) -> contextlib.AbstractContextManager[object]:
    """:func:`bounded` for a slice on the main thread (the prefork pool), else nothing.

    Slices of a thread pool share one process's fd 1 and 2: redirecting them
    for one slice would swallow another's, so there the output is not bounded.
    """
    if threading.current_thread() is threading.main_thread():
        return bounded(limit)
    return contextlib.nullcontext()


@contextlib.contextmanager
def bounded(limit: int) -> Iterator[StrayOutput]:
    """Send fd 1/2 and ``sys.stdout``/``sys.stderr`` through a :class:`StrayOutput` meanwhile."""
    logs.keep_off_standard_fds()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    saved = {1: os.dup(1), 2: os.dup(2)}
    os.dup2(out_write, 1)
    os.dup2(err_write, 2)
    os.close(out_write)
    os.close(err_write)
    reader = StrayOutput({out_read: (STDOUT_LOGGER, logging.INFO),
                          err_read: (STDERR_LOGGER, logging.WARNING)}, limit)
    # The reader's records carry the slice's batch context, like the script's own.
    done = _READERS.run(functools.partial(contextvars.copy_context().run, reader.run))
    previous = sys.stdout, sys.stderr
    ours = _text(1), _text(2)
    sys.stdout, sys.stderr = ours
    try:
        yield reader
    finally:
        for stream in ours:
            with contextlib.suppress(Exception):
                stream.flush()
            with contextlib.suppress(Exception):
                stream.close()  # a reference the script kept must not write around the bound
        sys.stdout, sys.stderr = previous
        for fd, copy in saved.items():
            os.dup2(copy, fd)  # closes this process's write end of the pipe
            os.close(copy)
        reader.stop()
        done.wait(DRAIN_SECONDS + 1)
        reader.report()


class _Standby:
    """The process's reader thread, parked between slices.

    A pool process runs one slice at a time, so one thread reads every
    slice's pipes in turn: starting and joining a thread per slice cost
    about 0.15 ms of each slice's time. A reader still draining when the
    next slice starts (a writer that escaped its slice holds a pipe open
    for up to :data:`DRAIN_SECONDS`) is not waited for: that slice's reader
    gets a thread of its own, as every slice's did before.
    """

    def __init__(self) -> None:
        self._todo: queue.SimpleQueue[tuple[Callable[[], object], threading.Event]] = queue.SimpleQueue()
        self._reader = ProcessThread("stray output")
        self._last: threading.Event | None = None

    @property
    def _thread(self) -> threading.Thread | None:
        return self._reader.thread

    def run(self, work: Callable[[], object]) -> threading.Event:
        """Start ``work`` on a reader thread; the event is set when it has returned."""
        done = threading.Event()
        if self._last is not None and not self._last.is_set() and self._reader.running():
            threading.Thread(target=_run_then_set, args=(work, done), name="stray output",
                             daemon=True).start()
            return done
        if not self._reader.running():
            self._todo = queue.SimpleQueue()  # not the parent's, after a fork
            self._reader.start(self._serve)
        # Before the put: should a signal's exception (a soft time limit)
        # land between the two, later slices only get threads of their own.
        self._last = done
        self._todo.put((work, done))
        return done

    def _serve(self) -> None:
        while True:
            _run_then_set(*self._todo.get())


def _run_then_set(work: Callable[[], object], done: threading.Event) -> None:
    try:
        work()
    except BaseException:  # noqa: BLE001 - the reader thread serves the slices after this one
        STDERR_LOGGER.exception("amworker: reading the slice's stray output failed")
    finally:
        done.set()


_READERS = _Standby()


def _text(fd: int) -> TextIO:
    """A line-buffered text stream on ``fd`` that does not own it."""
    return open(fd, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                buffering=1, closefd=False)
