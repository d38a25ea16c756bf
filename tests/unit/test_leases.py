"""Unit tests of worker.pool.leases: one thread per pool process renews the running slice's lease."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from worker.pool import leases
from worker.pool.leases import LeaseKeeper

pytestmark = pytest.mark.timeout(30)

BEAT = 0.02  # seconds: real time, so each test's renewals come quickly


class Renewals:
    """A renew() that records keys and lets a test wait for the n-th renewal."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.changed = threading.Condition()
        self.fail_next = 0

    def __call__(self, key: str) -> None:
        with self.changed:
            if self.fail_next:
                self.fail_next -= 1
                self.keys.append(f"failed {key}")
                self.changed.notify_all()
                raise ConnectionError("redis went away")
            self.keys.append(key)
            self.changed.notify_all()

    def wait_for(self, check: Callable[[list[str]], bool]) -> list[str]:
        with self.changed:
            assert self.changed.wait_for(lambda: check(self.keys), timeout=10), self.keys
            return list(self.keys)


def test_the_held_key_is_renewed_every_beat_from_one_thread() -> None:
    renewals = Renewals()
    keeper = LeaseKeeper(renewals, BEAT)
    with keeper.holding("lease:a"):
        renewals.wait_for(lambda keys: len(keys) >= 3)
        first = keeper._thread
    with keeper.holding("lease:b"):
        renewals.wait_for(lambda keys: "lease:b" in keys)
        assert keeper._thread is first and first is not None and first.is_alive()
    assert set(renewals.keys) == {"lease:a", "lease:b"}


def test_a_slice_shorter_than_a_beat_renews_nothing() -> None:
    # The claim wrote the lease: a renewal is due one beat after the slice
    # started, so a slice of no time costs no round trip.
    renewals = Renewals()
    keeper = LeaseKeeper(renewals, 60.0)
    for n in range(50):
        with keeper.holding(f"lease:{n}"):
            pass
    with keeper._changed:  # the keeper's thread is parked, not renewing
        assert renewals.keys == []


def test_no_renewal_of_a_finished_slice_is_in_flight_once_holding_returns() -> None:
    entered, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def slow_renew(key: str) -> None:
        seen.append(key)
        entered.set()
        assert release.wait(10)

    keeper = LeaseKeeper(slow_renew, BEAT)
    exited = threading.Event()

    def slice_() -> None:
        with keeper.holding("lease:slow"):
            assert entered.wait(10)
        exited.set()

    thread = threading.Thread(target=slice_)
    thread.start()
    assert entered.wait(10)
    # The slice ended while its lease was being written: it waits for the write.
    assert not exited.wait(0.2)
    release.set()
    assert exited.wait(10)
    thread.join(10)
    # Not written again once over: the next slice's key is the next renewed.
    entered.clear()
    with keeper.holding("lease:next"):
        assert entered.wait(10)
    assert seen[-1] == "lease:next" and set(seen) == {"lease:slow", "lease:next"}


def test_a_failed_renewal_is_logged_and_the_next_beat_tries_again(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=leases.__name__)
    renewals = Renewals()
    renewals.fail_next = 1
    keeper = LeaseKeeper(renewals, BEAT)
    with keeper.holding("lease:a"):
        keys = renewals.wait_for(lambda keys: "lease:a" in keys)
    assert keys[0] == "failed lease:a"
    assert any("could not renew the lease lease:a" in r.getMessage() and "redis went away"
               in r.getMessage() for r in caplog.records)


def test_a_keeper_copied_into_another_process_starts_its_own_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # After fork the parent's thread is not running in the child; the pid
    # tells the keeper so.
    renewals = Renewals()
    keeper = LeaseKeeper(renewals, BEAT)
    with keeper.holding("lease:parent"):
        renewals.wait_for(lambda keys: "lease:parent" in keys)
    parent_thread = keeper._thread
    monkeypatch.setattr("worker.pool.leases.os.getpid", lambda: -1)
    with keeper.holding("lease:child"):
        renewals.wait_for(lambda keys: "lease:child" in keys)
    assert keeper._thread is not parent_thread
