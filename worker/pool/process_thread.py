"""A helper thread that belongs to one process, and knows when it was copied by fork.

Celery's prefork pool forks its processes, and a thread does not survive
fork: the child gets the parent's objects, the thread object included, but
not the running thread. So a long-lived helper must be started in the
process that uses it, and whatever its owner shares with it (locks,
queues, waiters) made afresh there too.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class ProcessThread:
    """A daemon thread started, at most once per process, by :meth:`start`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.thread: threading.Thread | None = None
        self._pid = 0

    def running(self) -> bool:
        """True if this process started the thread and it still runs."""
        return self.thread is not None and not self.copied() and self.thread.is_alive()

    def copied(self) -> bool:
        """True until this process starts it: the object is a fork's copy, or new."""
        return self._pid != os.getpid()

    def start(self, target: Callable[[], object]) -> None:
        """Run ``target`` on a new daemon thread owned by this process."""
        self._pid = os.getpid()
        self.thread = threading.Thread(target=target, name=self.name, daemon=True)
        self.thread.start()
