"""Celery's consumer, publishing a worker's task events a few at a time.

Flower learns what slices do from task events (received, started,
succeeded...). Celery's worker buffers them and publishes what it holds at
the end of every turn of its event loop, which on a busy worker is one
broker round trip per event: a third of the main process's CPU on W2
(bench/analysis.md, round thirteen). Here the first event buffered starts a
timer and the events buffered meanwhile go out with it, in one publish:
what Flower shows is late by at most :data:`FLUSH_SECONDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer

#: The longest a task event waits in the worker before it is published.
FLUSH_SECONDS = 0.05


class FlushTimer:
    """Runs ``flush`` once, ``delay`` seconds after the first of any number of requests.

    ``call_later(delay, callback)`` is the event loop's timer. Requests made
    while a flush is pending join it; the next request after it ran starts a
    new one, so flushes are always more than ``delay`` apart.
    """

    def __init__(self, call_later: Callable[[float, Callable[[], None]], Any],
                 flush: Callable[[], None], delay: float = FLUSH_SECONDS) -> None:
        self._call_later = call_later
        self._flush = flush
        self._delay = delay
        self._pending = False

    def request(self) -> None:
        """Flush within ``delay`` seconds (joining a pending flush if there is one)."""
        if not self._pending:
            self._pending = True
            self._call_later(self._delay, self._fire)

    def _fire(self) -> None:
        # Cleared first: an event buffered by the flush itself schedules the next.
        self._pending = False
        self._flush()


class BatchingEventsConsumer(Consumer):
    """Celery's consumer with task events flushed by a :class:`FlushTimer`.

    Selected by the ``worker_consumer`` setting (worker.celery). Celery still
    flushes at once when its buffer holds 24 events, and only a worker with
    an event loop buffers at all (the prefork pool has one).
    """

    # Celery's, left out of celery-types' stub.
    hub: Any
    _flush_events: Callable[[], None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._events_timer = (FlushTimer(self.hub.call_later, self._flush_events)
                              if self.hub is not None else None)

    def on_send_event_buffered(self) -> None:  # type: ignore[override]  # the stub's return type is wrong
        if self._events_timer is not None:
            self._events_timer.request()

    def shutdown(self) -> None:
        # What waits for the timer goes out before the dispatcher is closed.
        self._flush_events()
        super().shutdown()
