"""Unit tests of settling's pure decision (decide) and the broker-trouble clock."""

from __future__ import annotations

import pytest

from worker.batch.settling import FINISHED, PENDING, BrokerTrouble, Deadlines, GiveUp, SliceState, decide

CLAIM = {"worker": "w1@host", "pid": 7, "at": "2026-01-01T00:00:00+00:00"}
STARTED = 1767225600.0  # CLAIM["at"] in epoch seconds


def when(now: float = STARTED + 5, **changes: float | None) -> Deadlines:
    base = {"dispatched_at": STARTED - 1, "queue_wait": 60.0, "limit": 150.0, "lease_ttl": 3.0}
    base.update(changes)  # type: ignore[arg-type]
    return Deadlines(now=now, queue="amworker", **base)


def test_a_stored_success_is_finished() -> None:
    assert decide(SliceState({"status": "SUCCESS"}, CLAIM, False), when()) is FINISHED


def test_a_dead_pool_process_is_worker_lost_without_revoke() -> None:
    meta = {"status": "FAILURE", "result": {"exc_type": "WorkerLostError", "exc_message": "sig 9"}}
    verdict = decide(SliceState(meta, CLAIM, False), when())
    assert isinstance(verdict, GiveUp) and not verdict.revoke
    assert verdict.text.startswith("amworker: worker lost: the pool process")


def test_an_unclaimed_slice_waits_then_is_not_started_in_time() -> None:
    state = SliceState(None, None, False)
    assert decide(state, when(now=STARTED + 30)) is PENDING
    verdict = decide(state, when(now=STARTED + 61))
    assert isinstance(verdict, GiveUp) and verdict.revoke
    assert verdict.text.startswith("amworker: not started in time:")


def test_an_abandoned_claim_keeps_its_reason() -> None:
    state = SliceState(None, {"abandoned": True, "reason": "amworker: time limit: x"}, False)
    assert decide(state, when()) == GiveUp("amworker: time limit: x", revoke=False)


def test_a_leased_slice_past_its_limit_is_given_up() -> None:
    state = SliceState(None, CLAIM, True)
    assert decide(state, when(now=STARTED + 100)) is PENDING
    verdict = decide(state, when(now=STARTED + 151))
    assert isinstance(verdict, GiveUp) and verdict.text.startswith("amworker: time limit:")


def test_a_lapsed_lease_with_a_healthy_broker_is_worker_lost() -> None:
    verdict = decide(SliceState(None, CLAIM, False), when())
    assert isinstance(verdict, GiveUp)
    assert verdict.text.startswith("amworker: worker lost: the Celery worker w1@host")


@pytest.mark.parametrize("since", [0.0, 1.0, 3.0])
def test_a_lapsed_lease_gets_one_lease_ttl_after_the_broker_returns(since: float) -> None:
    # Redis was stopped longer than the lease TTL: every lease lapsed while
    # no worker could renew it. Not lost until one TTL after Redis is back.
    now = STARTED + 40
    assert decide(SliceState(None, CLAIM, False), when(now=now, trouble_at=now - since)) is PENDING


def test_after_that_ttl_a_lapsed_lease_is_worker_lost_again() -> None:
    now = STARTED + 40
    verdict = decide(SliceState(None, CLAIM, False), when(now=now, trouble_at=now - 3.5))
    assert isinstance(verdict, GiveUp) and "worker lost" in verdict.text


def test_redis_lost_the_state_gives_running_slices_a_lease_ttl() -> None:
    lost_at = STARTED + 10
    state = SliceState(None, None, False)
    assert decide(state, when(now=lost_at + 2, lost_at=lost_at)) is PENDING
    verdict = decide(state, when(now=lost_at + 4, lost_at=lost_at))
    assert isinstance(verdict, GiveUp) and verdict.text.startswith("amworker: broker lost: Redis lost")
    # A slice whose worker re-set its lease in the new Redis is waited for.
    assert decide(SliceState(None, None, True), when(now=lost_at + 4, lost_at=lost_at)) is PENDING


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_broker_trouble_is_noted_on_failure_and_on_return() -> None:
    clock = Clock()
    trouble = BrokerTrouble(stall=1.0, wallclock=clock)
    trouble.answered(clock.now)
    assert trouble.last is None  # a prompt answer is no trouble

    trouble.failed()
    assert trouble.last == 100.0
    clock.now = 130.0
    trouble.answered(129.9)
    # The grace runs from Redis's return, not from the failure.
    assert trouble.last == 130.0
    clock.now = 140.0
    trouble.answered(139.9)
    assert trouble.last == 130.0


def test_a_stalled_round_trip_counts_as_trouble() -> None:
    # SIGSTOPped Redis: the call does not fail, it returns late.
    clock = Clock()
    trouble = BrokerTrouble(stall=1.0, wallclock=clock)
    clock.now = 120.0
    trouble.answered(100.0)
    assert trouble.last == 120.0
