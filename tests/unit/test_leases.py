"""Unit tests of worker.pool.leases: one thread per pool process renews the running slices' leases."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

import pytest

from worker import logs
from worker.pool import leases
from worker.pool.leases import LeaseKeeper

pytestmark = pytest.mark.timeout(30)

BEAT = 0.02  # seconds: real time, so each test's renewals come quickly


class Renewals:
    """A renew() that records keys and lets a test wait for the renewals it expects."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.changed = threading.Condition()
        self.fail_next = 0
        self.threads: set[threading.Thread] = set()
        self.contexts: list[dict[str, str] | None] = []

    def __call__(self, key: str) -> None:
        with self.changed:
            self.threads.add(threading.current_thread())
            self.contexts.append(logs._context.get())
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
    with keeper.holding("lease:b"):
        renewals.wait_for(lambda keys: "lease:b" in keys)
    assert set(renewals.keys) == {"lease:a", "lease:b"}
    assert renewals.threads == {keeper._thread} and threading.current_thread() not in renewals.threads


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


def test_slices_held_at_once_are_each_renewed_and_end_apart() -> None:
    # Under a thread pool a process runs several slices at once.
    renewals = Renewals()
    keeper = LeaseKeeper(renewals, BEAT)
    with keeper.holding("lease:a"):
        with keeper.holding("lease:b"):
            renewals.wait_for(lambda keys: {"lease:a", "lease:b"} <= set(keys))
        ended = len(renewals.wait_for(lambda keys: True))
        renewals.wait_for(lambda keys: keys[ended:].count("lease:a") >= 2)
    assert "lease:b" not in renewals.keys[ended:]


class Blocking:
    """A renew() that blocks until released, the first time it is called."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, key: str) -> None:
        self.seen.append(key)
        self.entered.set()
        if not self.release.wait(10):
            self.seen.append("never released")


def test_no_renewal_of_a_finished_slice_is_in_flight_once_holding_returns() -> None:
    renew = Blocking()
    keeper = LeaseKeeper(renew, BEAT)
    exited = threading.Event()

    def slice_() -> None:
        with keeper.holding("lease:slow"):
            assert renew.entered.wait(10)
        exited.set()

    thread = threading.Thread(target=slice_)
    thread.start()
    assert renew.entered.wait(10)
    # The slice ended while its lease was being written: it waits for the write.
    assert not exited.wait(0.2)
    renew.release.set()
    assert exited.wait(10)
    thread.join(10)
    written = len(renew.seen)
    renew.entered.clear()
    with keeper.holding("lease:next"):
        assert renew.entered.wait(10)
    assert set(renew.seen[:written]) == {"lease:slow"}
    assert set(renew.seen[written:]) == {"lease:next"}


class Interrupted(Exception):
    pass


def test_a_slice_interrupted_while_its_lease_is_written_is_still_let_go() -> None:
    # Celery's soft time limit raises from a signal handler, which can cut
    # short the wait for the keeper's lock: the lease must still stop.
    renew = Blocking()
    keeper = LeaseKeeper(renew, BEAT)

    def interrupt(*_: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with pytest.raises(Interrupted), keeper.holding("lease:cut"):
            assert renew.entered.wait(10)
            signal.setitimer(signal.ITIMER_REAL, 0.2)  # lands in the wait for the lock
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    renew.entered.clear()
    renew.release.set()
    # Ten beats with no slice: a lease still held would be written again.
    assert not renew.entered.wait(10 * BEAT)
    assert renew.seen == ["lease:cut"]


def test_a_failed_renewal_is_logged_once_in_the_slices_context_and_tried_again(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=leases.__name__)
    renewals = Renewals()
    renewals.fail_next = 3
    keeper = LeaseKeeper(renewals, BEAT)
    with logs.batch_context("noop_v0.0", "batch-1", "1/1"), keeper.holding("lease:a"):
        keys = renewals.wait_for(lambda keys: "lease:a" in keys)
    assert keys[:4] == ["failed lease:a"] * 3 + ["lease:a"]
    warnings = [r.getMessage() for r in caplog.records if r.name == leases.__name__]
    assert len(warnings) == 1
    assert "could not renew the lease lease:a" in warnings[0] and "redis went away" in warnings[0]
    assert renewals.contexts[0] == {"function": "noop_v0.0", "batch": "batch-1", "slice": "1/1"}


def test_a_keeper_used_before_a_fork_renews_in_the_child() -> None:
    # Celery's pool forks its processes: a keeper copied into one must not
    # rely on its parent's thread, lock or waiters.
    renewals = Renewals()
    keeper = LeaseKeeper(renewals, BEAT)
    with keeper.holding("lease:parent"):
        renewals.wait_for(lambda keys: "lease:parent" in keys)
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its own keeper renewed
        code = 1
        try:
            with keeper.holding("lease:child"), renewals.changed:
                if renewals.changed.wait_for(lambda: "lease:child" in renewals.keys, timeout=5):
                    code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
