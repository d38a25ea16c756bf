"""Logging for client scripts: :func:`get_script_logger`.

It configures logging the way the stock worker's helper does, so a script's
records propagate to the root logger: they reach the worker's log, and a
script's own tests see them through pytest's ``caplog``. What a record adds
to a task's output is decided by ``JobContext(logger=…)`` alone
(:mod:`worker.client.log_capture`).

Two cases:

* **Outside an amworker process** (a script's tests, a script run by hand):
  exactly stock's ``logging.config.dictConfig``. A console handler on the
  root logger, which sits at WARNING; the ``root`` logger (``archivematica``)
  and ``name`` at ``level``; existing loggers left enabled.
* **Inside an amworker process**, recognised by amworker's handler on the
  root logger (:func:`worker.logs.configure`): the same levels on the two
  named loggers, but the root logger's handlers and level are left alone.
  Running stock's ``dictConfig`` there would replace amworker's text or JSON
  handler with a second, differently formatted one (every line twice, or the
  JSON log broken) and silence the worker's own INFO lines.
"""

from __future__ import annotations

import logging
import logging.config
import logging.handlers
import os
import sys
from collections.abc import Callable
from typing import Any

STANDARD_FORMAT = "%(levelname)-8s  %(asctime)s  %(name)s.%(funcName)s:%(lineno)d  %(message)s"
"""The stock module's general log format (kept for configurations that name it)."""

SCRIPT_FILE_FORMAT = (
    f"{os.path.basename(sys.argv[0])}: "
    "%(levelname)-8s  %(asctime)s  %(name)s:%(funcName)s:%(lineno)d:  %(message)s"
)
"""The default console format of :func:`get_script_logger` outside amworker."""

DEFAULT_ROOT = "archivematica"
"""The parent logger configured along with the script's own."""


def amworker_logging_active() -> bool:
    """Whether this process logs through amworker's root handler (worker.logs)."""
    return any(getattr(h, "_amworker", False) for h in logging.getLogger().handlers)


def stock_logging_config(name: str, formatter: str, root: str, level: int | str) -> dict[str, Any]:
    """The ``dictConfig`` the stock helper applies, for ``name`` under ``root``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"script": {"format": formatter}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "level": "DEBUG",
                "formatter": "script",
            }
        },
        "loggers": {root: {"level": level}, name: {"level": level}},
        "root": {"handlers": ["console"], "level": "WARNING"},
    }


def get_script_logger(
    name: str,
    formatter: str = SCRIPT_FILE_FORMAT,
    root: str = DEFAULT_ROOT,
    level: int | str = logging.INFO,
) -> logging.Logger:
    """Configure logging for the client script logging as ``name``; return its logger.

    ``formatter`` is the console format used outside amworker (inside, the
    worker's own log format applies); ``root`` is the parent logger set to
    ``level`` along with ``name``.
    """
    if amworker_logging_active():
        for logger_name in (root, name):
            logger = logging.getLogger(logger_name)
            logger.setLevel(level)
            logger.propagate = True
            logger.disabled = False
    else:
        logging.config.dictConfig(stock_logging_config(name, formatter, root, level))
    return logging.getLogger(name)


class GroupWriteRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file created group-writable (umask 002 while it is opened).

    Archivematica's logging configuration files name this class as
    ``custom_handlers.GroupWriteRotatingFileHandler``; it is here so those
    files keep loading when ``custom_handlers`` is amworker's.
    """

    def _open(self) -> Any:
        previous = os.umask(0o002)
        try:
            return super()._open()
        finally:
            os.umask(previous)


class CallbackHandler(logging.Handler):
    """Hands each formatted record to ``callback`` (the stock module offers it too)."""

    def __init__(self, callback: Callable[[str], object], module_name: str | None = None) -> None:
        super().__init__()
        fmt = f"{module_name}: {STANDARD_FORMAT}" if module_name else SCRIPT_FILE_FORMAT
        self.setFormatter(logging.Formatter(fmt))
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        self.callback(self.format(record))
