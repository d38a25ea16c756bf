"""Keeping a running slice's lease alive, from one thread per pool process.

A slice's lease (``keys.lease_key``) says "a live process runs this"; it is
written with the claim and expires three beats later unless renewed, so a
shim sees a slice whose process died as lost. A pool process runs one slice
at a time, so one renewing thread, started on the process's first slice and
parked in between, serves them all.

A thread started and joined per slice cost about 0.15 ms of each slice's
time on the critical path (the start handshake, then the join), for
renewals that a slice shorter than a beat never needs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews the lease of the slice under way every ``every`` seconds.

    ``renew(key)`` writes one lease; its errors are the caller's to handle
    (a renewal that fails is tried again a beat later, and the lease's TTL
    spans three beats). Renewal runs under the keeper's lock, so once
    :meth:`holding` has returned, no renewal of its key is still in flight:
    a finished slice's lease is never written again.
    """

    def __init__(self, renew: Callable[[str], None], every: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._renew = renew
        self._every = every
        self._clock = clock
        self._changed = threading.Condition()
        self._key: str | None = None
        self._due = 0.0
        self._thread: threading.Thread | None = None
        self._pid = 0

    @contextlib.contextmanager
    def holding(self, key: str) -> Iterator[None]:
        """Renew ``key`` every beat while the block runs."""
        self._ensure_thread()
        with self._changed:
            self._key = key
            self._due = self._clock() + self._every
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._key = None

    def _ensure_thread(self) -> None:
        # A thread does not survive fork: a keeper copied into a new process
        # starts its own there.
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="lease keeper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._changed:
            while True:
                if self._key is None:
                    self._changed.wait()
                    continue
                wait = self._due - self._clock()
                if wait > 0:
                    self._changed.wait(wait)
                    continue
                self._beat(self._key)
                self._due = self._clock() + self._every

    def _beat(self, key: str) -> None:
        try:
            self._renew(key)
        except Exception as exc:  # noqa: BLE001 - the keeper must outlive any one renewal
            log.warning("could not renew the lease %s (trying again in %g s): %s",
                        key, self._every, exc)
