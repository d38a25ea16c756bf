"""Unit tests for the one backoff (worker/backoff.py): delays, cap, jitter, reset, overflow."""

from __future__ import annotations

import random

import pytest

from worker.backoff import RECONNECT, Backoff
from worker.pool.bookkeeping import RetryPolicy

pytestmark = pytest.mark.timeout(10)


def test_delays_grow_by_the_factor_from_the_first() -> None:
    backoff = Backoff(first=0.5, factor=2.0, maximum=100.0)

    assert [backoff.delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_delays_are_capped_at_the_maximum() -> None:
    backoff = Backoff(first=1, factor=3, maximum=5)

    assert [backoff.delay(n) for n in range(5)] == [1.0, 3.0, 5.0, 5.0, 5.0]
    assert all(isinstance(backoff.delay(n), float) for n in range(5))


def test_a_factor_of_one_is_a_constant_pause() -> None:
    assert [Backoff(first=2, factor=1, maximum=5).delay(n) for n in (0, 1, 50)] == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("attempt", [1023, 1024, 1100, 10**6, 10**18])
def test_huge_attempt_counts_give_the_cap_instead_of_overflowing(attempt: int) -> None:
    # 0.5 * 2.0**1024 raises OverflowError, and 2**10**18 would never finish:
    # a gearmand down for hours must not crash (or hang) the reconnecting loop.
    assert Backoff(first=0.5, factor=2.0, maximum=10.0).delay(attempt) == 10.0
    assert Backoff(first=1, factor=2, maximum=8).delay(attempt) == 8.0


def test_a_negative_attempt_is_the_first_pause() -> None:
    assert Backoff(first=0.5, factor=2.0, maximum=10.0).delay(-3) == 0.5


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.5, 0.999999])
def test_jitter_only_shortens_a_pause_and_by_at_most_its_fraction(draw: float) -> None:
    backoff = Backoff(first=1.0, factor=2.0, maximum=8.0, jitter=0.25)

    for attempt in range(6):
        exact = Backoff(first=1.0, factor=2.0, maximum=8.0).delay(attempt)
        pause = backoff.delay(attempt, rand=lambda: draw)
        assert exact * 0.75 <= pause <= exact
        assert pause == pytest.approx(exact * (1 - 0.25 * draw))


def test_jittered_pauses_stay_within_bounds_with_the_real_random_source() -> None:
    rng = random.Random(7)
    pauses = [RECONNECT.delay(n, rand=rng.random) for n in range(2000)]

    assert all(0.4 <= p <= 10.0 for p in pauses)
    capped = pauses[10:]
    assert min(capped) >= 8.0 and max(capped) <= 10.0
    assert len(set(capped)) > 100, "jitter spreads the pauses"


def test_without_jitter_the_random_source_is_never_called() -> None:
    def refuse() -> float:
        raise AssertionError("called without jitter")

    assert Backoff().delay(3, rand=refuse) == 4.0


def test_a_schedule_counts_attempts_and_reset_starts_over() -> None:
    schedule = Backoff(first=0.5, factor=2.0, maximum=2.0).schedule()

    assert [schedule.next() for _ in range(4)] == [0.5, 1.0, 2.0, 2.0]
    assert schedule.attempt == 4
    schedule.reset()
    assert schedule.attempt == 0
    assert schedule.next() == 0.5


def test_a_schedule_passes_its_random_source_to_the_jitter() -> None:
    schedule = Backoff(first=4.0, factor=2.0, maximum=4.0, jitter=0.5).schedule(rand=lambda: 1.0)

    assert schedule.next() == 2.0


def test_schedules_of_one_backoff_are_independent() -> None:
    backoff = Backoff(first=1.0, factor=2.0, maximum=8.0)
    first, second = backoff.schedule(), backoff.schedule()

    first.next()
    first.next()
    assert second.next() == 1.0
    assert first.next() == 4.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"first": -1.0}, "first <= maximum"),
        ({"first": 20.0, "maximum": 10.0}, "first <= maximum"),
        ({"factor": 0.5}, "factor must be >= 1"),
        ({"jitter": 1.5}, "jitter must be within"),
        ({"jitter": -0.1}, "jitter must be within"),
    ],
)
def test_nonsense_parameters_are_refused_when_built(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)


def test_the_reconnect_schedule_is_half_a_second_doubling_to_ten() -> None:
    no_jitter = Backoff(first=RECONNECT.first, factor=RECONNECT.factor, maximum=RECONNECT.maximum)

    assert [no_jitter.delay(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert RECONNECT.delay(6, rand=lambda: 0.999) >= 8.0


def test_the_database_retry_policy_takes_its_pauses_from_a_backoff() -> None:
    policy = RetryPolicy(backoff=Backoff(first=0.25, factor=4.0, maximum=3.0))

    # RetryPolicy counts failed attempts from 1; the backoff counts retries from 0.
    assert [policy.delay(n) for n in range(1, 5)] == [0.25, 1.0, 3.0, 3.0]
    assert policy.delay(5000) == 3.0
