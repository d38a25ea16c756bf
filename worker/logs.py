"""One log format for every amworker process: human lines, or JSON lines.

Every line logged while a batch is being handled carries the batch's
function, batch UUID and (in a Celery pool process) slice. They come from
:func:`batch_context`, which the shim's lanes and the slice task enter: a
filter on amworker's handler copies them onto each record, so lines from any
module (the registry, bookkeeping, a client script's logger) get them without
passing them around. Context variables are per thread, so the shim's
concurrent lanes never mix their batches up.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

#: The human format: time, level, process role, logger, batch context, message.
TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(processName)s] %(name)s:%(context)s %(message)s"

#: The record attributes that describe a batch, in the order they are shown.
CONTEXT_KEYS = ("function", "batch", "slice")

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "amworker_batch", default=None
)


@contextlib.contextmanager
def batch_context(function: str, batch: str, slice: str | None = None) -> Iterator[None]:
    """Tag every record logged inside the block with ``function``, ``batch``, ``slice``.

    ``batch`` is the controller's batch UUID (see :func:`worker.contract.keys.unique_of`).
    """
    values = {"function": function, "batch": batch}
    if slice is not None:
        values["slice"] = slice
    token = _context.set(values)
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copy the current batch context onto records that do not carry their own."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


class TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT`, with `` (function batch=… slice=…)`` when a batch is known."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record.context = _describe(record)
        return super().format(record)


def _describe(record: logging.LogRecord) -> str:
    function, batch, part = (getattr(record, key, None) for key in CONTEXT_KEYS)
    if function is None and batch is None:
        return ""
    words = [str(function or "-")]
    if batch is not None:
        words.append(f"batch={batch}")
    if part is not None:
        words.append(f"slice={part}")
    return f" ({' '.join(words)})"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(fmt: str) -> logging.Formatter:
    """The formatter for ``text`` or ``json``."""
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure(level: str | int = "INFO", fmt: str = "text") -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_amworker", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._amworker = True  # type: ignore[attr-defined]
    handler.setFormatter(formatter(fmt))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    # gearman3 logs every poll at DEBUG; it drowns everything else.
    logging.getLogger("gearman").setLevel(max(logging.INFO, root.level))


def keep_off_standard_fds() -> None:
    """Point amworker's handlers at private copies of fd 1 and fd 2 (idempotent).

    A pool process points fd 1 and fd 2 into pipes while a script runs
    (worker.pool.stray_output); amworker's own log lines must keep going where
    they went, not into the script's bounded stray output.
    """
    for handler in logging.getLogger().handlers:
        if not (getattr(handler, "_amworker", False) and isinstance(handler, logging.StreamHandler)):
            continue
        stream = handler.stream
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            continue
        if fd in (1, 2):
            stream.flush()
            handler.setStream(open(os.dup(fd), "w", encoding="utf-8",  # noqa: SIM115
                                   errors="backslashreplace", buffering=1))
