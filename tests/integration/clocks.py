"""Driving a shim's batch lane by an injected clock, and watching it decide.

:class:`FakeClock` is the wall clock handed to ``BatchRunner``/``Settler``:
time moves only when the test moves it, so a deadline passes exactly when the
test says. :class:`Polls` wraps the settler's check (passing every call
through) so a test waits for "the next check", never for a span of time, and moves the
clock only between checks.
:class:`Lane` runs ``BatchRunner.answer`` in a thread, as one shim lane does.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from worker.batch.answers import Settlement
from worker.batch.runner import BatchRunner
from worker.codec.wire import decode_result


class FakeClock:
    """Wall-clock seconds that move only when the test moves them."""

    def __init__(self, start: float) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """The current (fake) epoch seconds: the runner's ``wallclock``."""
        with self._lock:
            return self._now

    def utc(self) -> datetime:
        """The same moment as an aware datetime: the runner's ``clock``."""
        return datetime.fromtimestamp(self(), UTC)

    def set(self, when: float) -> None:
        """Move to ``when``; never backwards (a deadline once passed stays passed)."""
        with self._lock:
            if when < self._now:
                raise ValueError(f"the clock only moves forward ({when} < {self._now})")
            self._now = when


class Polls:
    """A pass-through around ``Settler.settled`` that lets a test wait for the next check."""

    def __init__(self, settled: Callable[..., Settlement | None]) -> None:
        self._settled = settled
        # Held through each check: see held().
        self._checking = threading.Lock()
        self._changed = threading.Condition()
        self._begun = 0
        #: (sequence number, verdict) of every check that returned, in order.
        self.done: list[tuple[int, Settlement | None]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Settlement | None:
        with self._changed:
            self._begun += 1
            number = self._begun
        result: Settlement | None = None
        try:
            with self._checking:
                result = self._settled(*args, **kwargs)
            return result
        finally:
            with self._changed:
                self.done.append((number, result))
                self._changed.notify_all()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """No check runs during the block: move the clock inside it.

        A check that saw the clock jump between its start and its Redis reply
        would take the jump for a Redis stall (``BrokerTrouble``), and grant
        every lapsed lease a lease TTL more.
        """
        with self._checking:
            yield

    def next(self, timeout: float = 15) -> Settlement | None:
        """What the first check to begin after this call returned (it saw the state as now)."""
        with self._changed:
            after = self._begun
            found = self._changed.wait_for(
                lambda: any(number > after for number, _ in self.done), timeout)
            if not found:
                raise TimeoutError(f"the lane made no check within {timeout}s")
            return next(result for number, result in self.done if number > after)


class Lane:
    """``BatchRunner.answer`` for one batch, running in a thread like a shim lane."""

    def __init__(self, runner: BatchRunner, function: str, unique: str, payload: bytes) -> None:
        self.answer: bytes | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(runner, function, unique, payload),
                                        name=f"lane {unique}", daemon=True)
        self._thread.start()

    def _run(self, runner: BatchRunner, function: str, unique: str, payload: bytes) -> None:
        try:
            self.answer = runner.answer(function, unique, payload)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread by results()
            self.error = exc

    def running(self) -> bool:
        """True while the lane still waits for its batch to settle."""
        return self._thread.is_alive()

    def join(self, timeout: float = 15) -> None:
        """Wait up to ``timeout`` seconds for the lane to answer."""
        self._thread.join(timeout)

    def results(self, timeout: float = 15) -> dict[str, dict[str, object]]:
        """The decoded answer, once the lane has answered (within ``timeout`` seconds)."""
        self.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the lane did not answer within {timeout}s")
        if self.error is not None:
            raise self.error
        assert self.answer is not None, "the lane answered WORK_FAIL"
        return decode_result(self.answer)
