"""This process's settings: read once, on first use, then shared by everything in it.

The hazard this closes: each consumer (Celery's configuration and logging
signals, the worker metrics, the pool runtime, Django's settings module, the
CLI) used to call ``Settings.from_env()`` itself, so one Celery worker read
its environment and re-parsed its TOML file up to five times, and a file
edited during start-up could give one process two different settings. Now
they all call :func:`current_settings`, which reads them the first time and
returns that same object ever after.

Not at import time: the first call reads (so ``os.environ`` changes made by
a process before that call, as the test fixtures and the benchmark do, are
seen). A process forked after it (Celery's prefork pool) inherits the object
and runs with its main process's settings. A failed read is not cached: the
next call raises the same :class:`~worker.errors.ConfigError` again.
"""

from __future__ import annotations

import os
import threading

from worker.config.settings import Settings


class _Cache:
    """The one settings object of this process, built under a lock."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.lock = threading.Lock()

    def renew_lock(self) -> None:
        # A fork while another thread held the lock would leave the child's
        # copy locked forever; the child has only the forking thread.
        self.lock = threading.Lock()


_cache = _Cache()
os.register_at_fork(after_in_child=_cache.renew_lock)


def current_settings() -> Settings:
    """The settings of this process, read from ``os.environ`` on the first call only."""
    with _cache.lock:
        if _cache.settings is None:
            _cache.settings = Settings.from_env()
        return _cache.settings


def reset_settings() -> None:
    """Forget this process's settings, so the next :func:`current_settings` reads again (tests)."""
    with _cache.lock:
        _cache.settings = None
