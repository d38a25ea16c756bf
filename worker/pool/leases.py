"""Keeping running slices' leases alive, from one thread per pool process.

A slice's lease (``keys.lease_key``) says "a live process runs this"; it is
written with the claim and expires three beats later unless renewed, so a
shim sees a slice whose process died as lost. One renewing thread, started
on the process's first slice and parked in between, serves every slice the
process runs (one at a time in the prefork pool; several at once under a
thread pool).

A thread started and joined per slice cost about 0.15 ms of each slice's
time on the critical path (the start handshake, then the join), for
renewals that a slice shorter than a beat never needs.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from worker.pool.process_thread import ProcessThread

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Held:
    """One slice's lease while its block runs."""

    key: str
    due: float
    #: Set by the slice, without the keeper's lock, when its block ends: a
    #: signal's exception (Celery's soft time limit) may interrupt the wait
    #: for the lock, but never an attribute write.
    over: bool = False
    warned: bool = False
    #: The slice's logging context (its batch), for the keeper's warnings.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


class LeaseKeeper:
    """Renews the lease of each slice under way every ``every`` seconds.

    ``renew(key)`` writes one lease; a renewal that fails is tried again a
    beat later (a lease's TTL spans three beats). Renewals run under the
    keeper's lock, and a slice's block, once over, waits for that lock: so
    when :meth:`holding` has returned, no renewal of its key is in flight,
    and its lease is never written again.
    """

    def __init__(self, renew: Callable[[str], None], every: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._renew = renew
        self._every = every
        self._clock = clock
        self._changed = threading.Condition()
        self._held: list[_Held] = []
        self._keeper = ProcessThread("lease keeper")
        # Slices of a thread pool may start at once: one thread for them all.
        self._starting = threading.Lock()

    @contextlib.contextmanager
    def holding(self, key: str) -> Iterator[None]:
        """Renew ``key`` every beat while the block runs."""
        self._ensure_thread()
        held = _Held(key, self._clock() + self._every)
        with self._changed:
            self._held.append(held)
            self._changed.notify()
        try:
            yield
        finally:
            held.over = True
            with self._changed:  # waits out a renewal of it under way
                with contextlib.suppress(ValueError):
                    self._held.remove(held)

    @property
    def _thread(self) -> threading.Thread | None:
        return self._keeper.thread

    def _ensure_thread(self) -> None:
        with self._starting:
            if self._keeper.running():
                return
            if self._keeper.copied():
                # The parent's lock and waiters must not be used here either:
                # the copied Condition would hand notifications to a thread
                # that is gone.
                self._changed = threading.Condition()
                self._held = []
            self._keeper.start(self._run)

    def _run(self) -> None:
        with self._changed:
            while True:
                self._held = [held for held in self._held if not held.over]
                now = self._clock()
                for held in self._held:
                    if held.due <= now and not held.over:
                        held.context.run(self._beat, held)
                        held.due = self._clock() + self._every
                soonest = min((held.due for held in self._held), default=None)
                self._changed.wait(None if soonest is None else max(0.0, soonest - self._clock()))

    def _beat(self, held: _Held) -> None:
        try:
            self._renew(held.key)
        except Exception as exc:  # noqa: BLE001 - the keeper must outlive any one renewal
            # Once per slice: during a Redis outage every beat would fail.
            if not held.warned:
                held.warned = True
                log.warning("could not renew the lease %s (trying again every %g s): %s",
                            held.key, self._every, exc)
