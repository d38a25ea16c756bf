"""A tiny stand-in for Archivematica's ``Job``, for testing client scripts.

It has only the public API scripts may use, so a script that runs against it
runs unchanged against the real ``worker.client.job.Job``.
"""

from __future__ import annotations

import sys
import traceback
from types import TracebackType
from typing import Any


class FakeJob:
    """One task: ``args`` is ``[function_name] + argv``; output is kept as text."""

    def __init__(self, args: list[str]) -> None:
        self.args = list(args)
        self.int_code = 0
        self.output = ""
        self.error = ""

    def set_status(self, code: int, status_code: str = "success") -> None:
        """Record ``code``; a falsy code leaves the exit code unchanged."""
        if code:
            self.int_code = int(code)

    def write_output(self, s: str) -> None:
        """Append ``s`` to stdout."""
        self.output += s

    def write_error(self, s: str) -> None:
        """Append ``s`` to stderr."""
        self.error += s

    def print_output(self, *args: object) -> None:
        """Append the arguments, space-separated, and a newline to stdout."""
        self.write_output(" ".join(map(str, args)) + "\n")

    def print_error(self, *args: object) -> None:
        """Append the arguments, space-separated, and a newline to stderr."""
        self.write_error(" ".join(map(str, args)) + "\n")

    def pyprint(self, *objects: object, sep: str = " ", end: str = "\n", file: Any = None) -> None:
        """``print`` into stdout (default) or stderr; any other ``file`` is an error."""
        text = sep.join(map(str, objects)) + end
        if file is None or file is sys.stdout:
            self.write_output(text)
        elif file is sys.stderr:
            self.write_error(text)
        else:
            raise ValueError(f"pyprint cannot write to {file!r}")

    def JobContext(self, logger: Any = None) -> _JobContext:  # noqa: N802 - Archivematica's name
        """A block whose exception becomes exit code 1 and a traceback on stderr."""
        return _JobContext(self)


class _JobContext:
    def __init__(self, job: FakeJob) -> None:
        self._job = job

    def __enter__(self) -> _JobContext:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        self._job.write_error("".join(traceback.format_exception(exc_type, exc, tb)))
        self._job.set_status(1, "error")
        return True
