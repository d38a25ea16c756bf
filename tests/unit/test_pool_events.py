"""The worker's task events wait for one timer, not one publish each (worker.pool.events)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from worker.pool.events import FLUSH_SECONDS, FlushTimer

pytestmark = pytest.mark.timeout(10)


class FakeLoop:
    """The event loop's ``call_later``: timers are kept until the test fires them."""

    def __init__(self) -> None:
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.timers.append((delay, callback))

    def fire(self) -> None:
        due, self.timers = self.timers, []
        for _, callback in due:
            callback()


def test_events_buffered_meanwhile_go_out_in_one_flush() -> None:
    loop, flushes = FakeLoop(), []
    timer = FlushTimer(loop.call_later, lambda: flushes.append(1))
    for _ in range(5):
        timer.request()
    assert [delay for delay, _ in loop.timers] == [FLUSH_SECONDS]
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
    assert [delay for delay, _ in loop.timers] == [0.2]
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
