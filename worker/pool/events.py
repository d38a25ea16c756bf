"""Celery's consumer, publishing a worker's task events a few at a time.

Flower learns what slices do from task events (received, started,
succeeded...). Celery's worker buffers them and publishes what it holds at
the end of every turn of its event loop, which on a busy worker is one
broker round trip per event: a third of the main process's CPU on W2
(bench/analysis.md, round thirteen). Here the first event buffered starts a
timer and the events buffered meanwhile go out with it, in one publish:
Flower shows them about :data:`FLUSH_SECONDS` later than it would have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from celery.worker.consumer import Consumer

#: How long the first task event buffered waits for others before they are published.
FLUSH_SECONDS = 0.05


class TimerEntry(Protocol):
    """What the event loop's ``call_later`` returns (kombu's timer ``Entry``)."""

    canceled: bool


class FlushTimer:
    """Runs ``flush`` once, ``delay`` seconds after the first of any number of requests.

    ``call_later(delay, callback)`` is the event loop's timer. Requests made
    while a flush is pending join it; the next request after it ran starts a
    new one, so the timer's flushes are always more than ``delay`` apart. A
    pending timer that was cancelled (the consumer cancels its connection's
    timers when the connection is lost) is started again, never waited on.
    """

    def __init__(self, call_later: Callable[[float, Callable[[], None]], TimerEntry],
                 flush: Callable[[], None], delay: float = FLUSH_SECONDS) -> None:
        self._call_later = call_later
        self._flush = flush
        self._delay = delay
        self._pending: TimerEntry | None = None

    def request(self) -> None:
        """Flush within ``delay`` seconds (joining a pending flush if there is one)."""
        if self._pending is None or self._pending.canceled:
            self._pending = self._call_later(self._delay, self._fire)

    def _fire(self) -> None:
        # Cleared first: an event buffered by the flush itself schedules the next.
        self._pending = None
        self._flush()


class BatchingEventsConsumer(Consumer):
    """Celery's consumer with task events flushed by a :class:`FlushTimer`.

    Selected by the ``worker_consumer`` setting (worker.celery). Celery still
    flushes at once when its buffer holds 24 events, and only a worker with
    an event loop buffers at all (the prefork pool has one). Whatever waits
    for the timer is flushed before the event dispatcher is replaced (a lost
    broker connection) or closed (shutdown), as Celery's own flush would have.
    """

    # Celery's own attribute and method, which celery-types' stub leaves out.
    hub: Any
    _flush_events: Callable[[], None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._events_timer = (FlushTimer(self.hub.call_later, self._flush_events)
                              if self.hub is not None else None)

    def on_send_event_buffered(self) -> None:  # type: ignore[override]  # the stub's return type is wrong
        if self._events_timer is not None:
            self._events_timer.request()

    def on_close(self) -> None:
        # The connection was lost and the consumer restarts: Events.start
        # closes this dispatcher and carries over only what failed to publish.
        self._flush_events()
        super().on_close()

    def shutdown(self) -> None:
        # Events.shutdown closes the dispatcher next; the timer may never fire.
        self._flush_events()
        super().shutdown()
