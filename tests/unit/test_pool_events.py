"""The worker's task events wait for one timer, not one publish each (worker.pool.events)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery.worker.consumer import Consumer

from worker.pool.events import FLUSH_SECONDS, BatchingEventsConsumer, FlushTimer

pytestmark = pytest.mark.timeout(10)


@dataclass
class Entry:
    """A timer entry, as kombu's: it can be cancelled."""

    callback: Callable[[], None]
    delay: float
    canceled: bool = False


@dataclass
class FakeLoop:
    """The event loop's ``call_later``: timers are kept until the test fires them."""

    timers: list[Entry] = field(default_factory=list)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Entry:
        entry = Entry(callback, delay)
        self.timers.append(entry)
        return entry

    def fire(self) -> None:
        due, self.timers = self.timers, []
        for entry in due:
            if not entry.canceled:
                entry.callback()


def test_events_buffered_meanwhile_go_out_in_one_flush() -> None:
    loop, flushes = FakeLoop(), []
    timer = FlushTimer(loop.call_later, lambda: flushes.append(1))
    for _ in range(5):
        timer.request()
    assert [entry.delay for entry in loop.timers] == [FLUSH_SECONDS]
    assert flushes == []
    loop.fire()
    assert flushes == [1]


def test_the_next_event_after_a_flush_starts_a_new_timer() -> None:
    loop, flushes = FakeLoop(), []
    timer = FlushTimer(loop.call_later, lambda: flushes.append(1), delay=0.2)
    timer.request()
    loop.fire()
    timer.request()
    timer.request()
    assert [entry.delay for entry in loop.timers] == [0.2]
    loop.fire()
    assert flushes == [1, 1]
    assert loop.timers == []


def test_an_event_buffered_during_the_flush_is_not_left_behind() -> None:
    loop = FakeLoop()
    flushes: list[int] = []

    def flush() -> None:
        flushes.append(1)
        if len(flushes) == 1:
            timer.request()  # a publish that buffers another event

    timer = FlushTimer(loop.call_later, flush)
    timer.request()
    loop.fire()
    assert len(loop.timers) == 1
    loop.fire()
    assert flushes == [1, 1]


def test_a_cancelled_timer_is_started_again_not_waited_on() -> None:
    loop, flushes = FakeLoop(), []
    timer = FlushTimer(loop.call_later, lambda: flushes.append(1))
    timer.request()
    loop.timers[0].canceled = True  # the consumer lost its connection
    timer.request()
    assert len(loop.timers) == 2
    loop.fire()
    assert flushes == [1]


class FakeDispatcher:
    """Celery's event dispatcher, reduced to what a flush does: empties the buffer."""

    def __init__(self, waiting: int) -> None:
        self.waiting = waiting

    def flush(self) -> None:
        self.waiting = 0


@pytest.mark.parametrize("step", ["on_close", "shutdown"])
def test_events_waiting_for_the_timer_go_out_before_celery_closes_the_dispatcher(
    step: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Celery's own step (the seam) closes or replaces the dispatcher: what
    # it still holds then is dropped, so it must be empty by then.
    left_at_close: list[int] = []

    def celerys_step(consumer: Any) -> None:
        left_at_close.append(consumer.event_dispatcher.waiting)

    monkeypatch.setattr(Consumer, step, celerys_step)
    # Built without Celery's __init__: only the dispatcher matters here
    # (celery-types' stub does not know the attribute, hence Any).
    consumer: Any = object.__new__(BatchingEventsConsumer)
    consumer.event_dispatcher = FakeDispatcher(waiting=3)
    getattr(consumer, step)()
    assert left_at_close == [0]

