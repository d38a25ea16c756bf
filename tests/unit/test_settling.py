"""Unit tests of settling's pure decision (decide) and the broker-trouble clock.

:func:`decide` is table-tested: one row per branch (and per boundary of each
deadline) of what a slice came to, from what Redis says of it and the clock.
No Redis and no sleeping; the whole table runs in milliseconds. The same
decisions, driven through a real Redis by the injected clocks, are in
tests/integration/test_settler_clocks.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from worker.batch.settling import (
    FINISHED,
    PENDING,
    REASON_CHARS,
    BrokerTrouble,
    Deadlines,
    GiveUp,
    SliceState,
    Verdict,
    _decode,
    _failure_reason,
    decide,
)
from worker.errors import Cause, reason

pytestmark = pytest.mark.timeout(10)

#: When the slice's worker claimed it: ``CLAIM["at"]`` in epoch seconds.
STARTED = 1767225600.0
CLAIM = {"worker": "w1@host", "pid": 7, "at": "2026-01-01T00:00:00+00:00"}
#: The deadlines of every row unless it says otherwise (see :func:`when`).
DISPATCHED = STARTED - 1
QUEUE_WAIT = 60.0
LIMIT = 150.0
LEASE_TTL = 3.0
#: Past every deadline of a healthy slice.
LONG_AFTER = STARTED + 10_000


def when(now: float = STARTED + 5, *, lost_at: float | None = None,
         trouble_at: float | None = None) -> Deadlines:
    """The row's deadlines: dispatched just before the claim, a 60 s queue wait, a 150 s limit."""
    return Deadlines(now=now, dispatched_at=DISPATCHED, queue_wait=QUEUE_WAIT, limit=LIMIT,
                     lease_ttl=LEASE_TTL, queue="amworker", lost_at=lost_at, trouble_at=trouble_at)


def meta(status: str, **result: Any) -> dict[str, Any]:
    """A Celery result envelope as the Redis backend stores it."""
    return {"status": status, "result": result or None}


def failure(exc_type: str, exc_message: Any) -> dict[str, Any]:
    """The envelope Celery stores for a task that raised ``exc_type``."""
    return meta("FAILURE", exc_type=exc_type, exc_message=exc_message)


def claim(**changes: Any) -> dict[str, Any]:
    """The claim a worker takes when it starts the slice, with ``changes``."""
    return {**CLAIM, **changes}


#: The marker a shim leaves on a slice it gave up on, in place of a claim.
ABANDONED_REASON = "amworker: time limit: still running after 150s"
ABANDONED = {"abandoned": True, "reason": ABANDONED_REASON}


@dataclass(frozen=True)
class Gives:
    """Expected: a :class:`GiveUp` with this cause, revoke flag and detail fragment."""

    cause: str
    revoke: bool
    says: str


def row(row_id: str, meta: Mapping[str, Any] | None, claim: Mapping[str, Any] | None, leased: bool,
        deadlines: Deadlines, expected: Verdict | Gives, *, stored: bool = False) -> Any:
    """One row of the table, shown by ``row_id`` in pytest's output."""
    return pytest.param(SliceState(meta, claim, leased, stored), deadlines, expected, id=row_id)


TABLE = [
    # -- stored results decide first: the script ran, whatever Celery says after ---------
    row("stored-before-celerys-result", None, CLAIM, True, when(), FINISHED, stored=True),
    row("stored-then-the-pool-process-died", failure("WorkerLostError", "signal 9 (SIGKILL)"),
        CLAIM, False, when(), FINISHED, stored=True),
    row("stored-then-the-hard-time-limit", failure("TimeLimitExceeded", "150"), CLAIM, False,
        when(LONG_AFTER), FINISHED, stored=True),
    row("stored-after-the-shim-gave-up", None, ABANDONED, False, when(LONG_AFTER), FINISHED,
        stored=True),
    row("stored-after-redis-lost-the-state", None, None, False, when(LONG_AFTER, lost_at=STARTED),
        FINISHED, stored=True),
    # -- Celery's stored result decides first ---------------------------------------
    row("success", meta("SUCCESS", index=0), CLAIM, False, when(), FINISHED),
    row("success-unclaimed-long-after-every-deadline", meta("SUCCESS"), None, False,
        when(LONG_AFTER), FINISHED),
    row("success-beats-an-abandoned-claim", meta("SUCCESS"), ABANDONED, False, when(LONG_AFTER), FINISHED),
    row("success-after-redis-lost-the-state", meta("SUCCESS"), None, False,
        when(LONG_AFTER, lost_at=STARTED), FINISHED),
    row("failure-pool-process-died", failure("WorkerLostError", "signal 9 (SIGKILL)"), CLAIM, False,
        when(), Gives(Cause.WORKER_LOST, False, "the pool process running this slice died "
                                                "(signal 9 (SIGKILL))")),
    row("failure-hard-time-limit", failure("TimeLimitExceeded", "150"), CLAIM, True, when(),
        Gives(Cause.TIME_LIMIT, False, "the slice was killed by its hard time limit (150)")),
    row("failure-soft-time-limit", failure("SoftTimeLimitExceeded", "120"), CLAIM, True, when(),
        Gives(Cause.TIME_LIMIT, False, "killed by its hard time limit (120)")),
    row("failure-other-exception", failure("ValueError", "boom"), CLAIM, False, when(),
        Gives(Cause.WORKER_LOST, False, "the slice failed in Celery: ValueError: boom")),
    row("failure-message-as-a-list", failure("ValueError", ["bad", 2]), CLAIM, False, when(),
        Gives(Cause.WORKER_LOST, False, "ValueError: bad 2")),
    row("failure-result-not-a-dict", {"status": "FAILURE", "result": "oops"}, CLAIM, False, when(),
        Gives(Cause.WORKER_LOST, False, "the slice failed in Celery: : ")),
    row("failure-while-still-leased-and-in-time", failure("ValueError", "x"), CLAIM, True, when(),
        Gives(Cause.WORKER_LOST, False, "ValueError: x")),
    # -- other statuses are not final: the claim and the clock decide ------------------
    row("revoked-status-unclaimed-within-queue-wait", meta("REVOKED"), None, False,
        when(DISPATCHED + 30), PENDING),
    row("revoked-status-unclaimed-past-queue-wait", meta("REVOKED"), None, False,
        when(DISPATCHED + QUEUE_WAIT + 1), Gives(Cause.QUEUE_WAIT, True, "within 60s")),
    row("revoked-status-abandoned", meta("REVOKED"), ABANDONED, False, when(),
        Gives(Cause.TIME_LIMIT, False, "still running after 150s")),
    row("pending-status-leased", meta("PENDING"), CLAIM, True, when(), PENDING),
    row("started-status-lease-lapsed", meta("STARTED"), CLAIM, False, when(),
        Gives(Cause.WORKER_LOST, False, "stopped renewing its lease")),
    row("envelope-without-status-leased", {}, CLAIM, True, when(), PENDING),
    # -- nobody claimed it, Redis healthy: the queue wait ---------------------------------
    row("unclaimed-within-queue-wait", None, None, False, when(DISPATCHED + 30), PENDING),
    row("unclaimed-at-queue-wait-exactly", None, None, False, when(DISPATCHED + QUEUE_WAIT), PENDING),
    row("unclaimed-past-queue-wait", None, None, False, when(DISPATCHED + QUEUE_WAIT + 0.5),
        Gives(Cause.QUEUE_WAIT, True, "no worker started this slice within 60s "
                                      "(is a worker consuming queue 'amworker'?)")),
    row("lease-without-claim-counts-as-unclaimed", None, None, True,
        when(DISPATCHED + QUEUE_WAIT + 0.5), Gives(Cause.QUEUE_WAIT, True, "within 60s")),
    # -- nobody's claim, because Redis lost the batch's state ---------------------------
    row("lost-unleased-within-lease-ttl", None, None, False, when(STARTED + 12, lost_at=STARTED + 10),
        PENDING),
    row("lost-unleased-at-lease-ttl-exactly", None, None, False,
        when(STARTED + 10 + LEASE_TTL, lost_at=STARTED + 10), PENDING),
    row("lost-unleased-past-lease-ttl", None, None, False,
        when(STARTED + 10 + LEASE_TTL + 0.5, lost_at=STARTED + 10),
        Gives(Cause.BROKER_LOST, True, "Redis lost this batch's state (restarted without persistence?)")),
    row("lost-unleased-past-queue-wait-within-lease-ttl", None, None, False,
        when(DISPATCHED + QUEUE_WAIT + 10, lost_at=DISPATCHED + QUEUE_WAIT + 9), PENDING),
    row("lost-leased-again-past-lease-ttl", None, None, True,
        when(STARTED + 100, lost_at=STARTED + 10), PENDING),
    row("lost-leased-at-the-run-bound-exactly", None, None, True,
        when(DISPATCHED + QUEUE_WAIT + LIMIT, lost_at=STARTED + 10), PENDING),
    row("lost-leased-past-the-run-bound", None, None, True,
        when(DISPATCHED + QUEUE_WAIT + LIMIT + 0.5, lost_at=STARTED + 10),
        Gives(Cause.BROKER_LOST, True, "Redis lost this batch's state and the slice never reported "
                                       "within 210s")),
    row("lost-unleased-within-lease-ttl-past-the-run-bound", None, None, False,
        when(DISPATCHED + QUEUE_WAIT + LIMIT + 0.5, lost_at=DISPATCHED + QUEUE_WAIT + LIMIT),
        Gives(Cause.BROKER_LOST, True, "never reported within 210s")),
    # -- a claim given up on (by this shim or another lane) -------------------------------
    row("abandoned-keeps-its-reason", None, ABANDONED, False, when(),
        Gives(Cause.TIME_LIMIT, False, "still running after 150s")),
    row("abandoned-without-a-reason", None, {"abandoned": True}, False, when(),
        Gives(Cause.WORKER_LOST, False, "given up")),
    row("abandoned-beats-a-live-lease", None, ABANDONED, True, when(), Gives(Cause.TIME_LIMIT, False, "")),
    row("abandoned-beats-redis-lost", None, ABANDONED, False, when(LONG_AFTER, lost_at=STARTED),
        Gives(Cause.TIME_LIMIT, False, "")),
    row("abandoned-false-is-an-ordinary-claim", None, claim(abandoned=False), True, when(), PENDING),
    # -- claimed, and the lease lapsed ------------------------------------------------------
    row("lapsed-lease-broker-healthy", None, CLAIM, False, when(),
        Gives(Cause.WORKER_LOST, False, "the Celery worker w1@host running this slice stopped renewing "
                                        "its lease; its tasks are not re-run")),
    row("lapsed-lease-claim-without-worker-name", None, {"at": CLAIM["at"]}, False, when(),
        Gives(Cause.WORKER_LOST, False, "the Celery worker ? running")),
    row("lapsed-lease-broker-trouble-just-now", None, CLAIM, False,
        when(STARTED + 40, trouble_at=STARTED + 40), PENDING),
    row("lapsed-lease-broker-trouble-lease-ttl-ago-exactly", None, CLAIM, False,
        when(STARTED + 40, trouble_at=STARTED + 40 - LEASE_TTL), PENDING),
    row("lapsed-lease-broker-trouble-longer-ago", None, CLAIM, False,
        when(STARTED + 40, trouble_at=STARTED + 40 - LEASE_TTL - 0.5),
        Gives(Cause.WORKER_LOST, False, "stopped renewing its lease")),
    row("lapsed-lease-past-the-limit-is-still-worker-lost", None, CLAIM, False,
        when(STARTED + LIMIT + 1), Gives(Cause.WORKER_LOST, False, "stopped renewing")),
    row("lapsed-lease-claim-present-ignores-redis-lost", None, CLAIM, False,
        when(STARTED + 11, lost_at=STARTED + 10), Gives(Cause.WORKER_LOST, False, "stopped renewing")),
    # -- claimed and leased: the time limit -------------------------------------------------
    row("leased-within-limit", None, CLAIM, True, when(STARTED + 100), PENDING),
    row("leased-past-queue-wait-is-running-not-waiting", None, CLAIM, True,
        when(DISPATCHED + QUEUE_WAIT + 1), PENDING),
    row("leased-at-limit-exactly", None, CLAIM, True, when(STARTED + LIMIT), PENDING),
    row("leased-past-limit", None, CLAIM, True, when(STARTED + LIMIT + 0.5),
        Gives(Cause.TIME_LIMIT, True, "still running after 150s")),
    row("leased-past-limit-despite-broker-trouble", None, CLAIM, True,
        when(STARTED + LIMIT + 0.5, trouble_at=STARTED + LIMIT),
        Gives(Cause.TIME_LIMIT, True, "still running after 150s")),
    row("leased-claim-without-start-time", None, claim(at=None), True, when(LONG_AFTER), PENDING),
    row("leased-claim-unparseable-start-time", None, claim(at="yesterday"), True, when(LONG_AFTER),
        PENDING),
    row("leased-claim-numeric-start-time", None, claim(at=STARTED), True, when(LONG_AFTER), PENDING),
]


@pytest.mark.parametrize(("state", "deadlines", "expected"), TABLE)
def test_decide(state: SliceState, deadlines: Deadlines, expected: Verdict | Gives) -> None:
    verdict = decide(state, deadlines)

    if not isinstance(expected, Gives):
        assert verdict is expected
        return
    assert isinstance(verdict, GiveUp), verdict
    assert verdict.revoke is expected.revoke
    assert verdict.text.startswith(reason(expected.cause, "")), verdict.text
    assert expected.says in verdict.text


def test_the_table_has_one_row_per_id() -> None:
    ids = [param.id for param in TABLE]
    assert len(ids) == len(set(ids))


def test_an_abandoned_claim_is_given_up_with_exactly_its_reason() -> None:
    # The reason was written by whoever gave up first (maybe another lane):
    # every lane must answer the tasks with that same text, not its own.
    verdict = decide(SliceState(None, ABANDONED, False), when())
    assert verdict == GiveUp(ABANDONED_REASON, revoke=False)


def test_a_huge_stored_reason_is_cut_before_it_is_copied_into_every_task() -> None:
    # The reason goes into every task of the slice, twice each, and into the
    # answer record: a megabyte in Redis was a quarter of a gigabyte there.
    huge = {"abandoned": True, "reason": "r" * 1_000_000}

    verdict = decide(SliceState(None, huge, False), when())

    assert isinstance(verdict, GiveUp)
    assert verdict.text == "r" * REASON_CHARS + " [cut]"


def test_a_huge_celery_failure_is_cut_too() -> None:
    meta = {"status": "FAILURE",
            "result": {"exc_type": "E" * 100_000, "exc_message": ["m" * 1_000_000] * 1000}}

    text = _failure_reason(meta)

    assert len(text) < 3 * REASON_CHARS
    assert text.endswith(" [cut]")


def test_a_value_nested_thousands_deep_reads_as_unreadable() -> None:
    # A RecursionError escaping here failed the whole batch, healthy slices included.
    assert _decode("[" * 100_000) is None
    assert _decode('{"a": ' * 100_000) is None
    assert _decode('{"worker": "w"}') == {"worker": "w"}


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
