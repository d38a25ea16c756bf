"""The result watcher's reconnection loop: the one backoff, started over after each success.

Redis is replaced by a scripted pub/sub that fails on cue, and the watcher's
stop event by one that records each pause instead of sleeping, so the loop
runs synchronously and in microseconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from worker.backoff import Backoff
from worker.batch import watcher as watcher_module
from worker.batch.watcher import ResultWatcher

pytestmark = pytest.mark.timeout(10)

EXACT = Backoff(first=0.5, factor=2.0, maximum=4.0)


class ScriptedPubSub:
    """Subscribes or fails as the script says; once subscribed, the next read fails."""

    def __init__(self, subscribes: bool) -> None:
        self.subscribes = subscribes
        self.closed = False

    def psubscribe(self, *patterns: str) -> None:
        if not self.subscribes:
            raise redis.ConnectionError("connection refused")

    def get_message(self, timeout: float) -> None:
        raise redis.ConnectionError("connection reset by peer")

    def close(self) -> None:
        self.closed = True


class ScriptedClient:
    """Hands out one scripted pub/sub per connection attempt."""

    def __init__(self, script: list[bool]) -> None:
        self._script: Iterator[bool] = iter(script)
        self.opened: list[ScriptedPubSub] = []

    def pubsub(self, ignore_subscribe_messages: bool = False) -> ScriptedPubSub:
        pubsub = ScriptedPubSub(next(self._script))
        self.opened.append(pubsub)
        return pubsub


class RecordingStop:
    """A stop event whose wait records the pause; it stops the loop after ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pauses: list[float] = []

    def is_set(self) -> bool:
        return len(self.pauses) >= self.limit

    def wait(self, timeout: float) -> bool:
        self.pauses.append(timeout)
        return self.is_set()

    def set(self) -> None:
        self.limit = 0


def run_watcher(script: list[bool], monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], ScriptedClient]:
    monkeypatch.setattr(watcher_module, "RECONNECT", EXACT)
    client = ScriptedClient(script)
    watcher = ResultWatcher(client, prefixes=["celery-task-meta-"])  # type: ignore[arg-type]
    stop = RecordingStop(limit=len(script))
    watcher._stopping = stop  # type: ignore[assignment]
    watcher._run()
    return stop.pauses, client


def test_failed_connections_back_off_by_the_schedule_up_to_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses, client = run_watcher([False] * 6, monkeypatch)

    assert pauses == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(pubsub.closed for pubsub in client.opened)


def test_a_subscription_that_held_starts_the_next_outage_from_the_first_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Three refusals, then a subscription that is lost on its first read,
    # then refusals again: the second outage must not inherit the first's 4 s.
    pauses, _ = run_watcher([False, False, False, True, False, False], monkeypatch)

    assert pauses == [0.5, 1.0, 2.0, 0.5, 1.0, 2.0]

