"""How long each Redis key amworker (and Celery, for it) writes must live.

Every lifetime is derived from the deadlines a batch really has, never a flat
week: a slice may wait ``queue_wait`` for a worker, then run for its hard
time limit, then the pool needs a moment to report (``LIMIT_GRACE_SECONDS``).
Past that, the waiting shim has given up on the slice, its message has
expired (see :mod:`worker.batch.dispatch`), and no key about it can matter; a
margin absorbs clock skew between machines. See docs/design.md ("What Redis
keeps, and for how long").
"""

from __future__ import annotations

from worker.config import Settings

#: Added to a slice's hard time limit before the shim gives up on it: the
#: pool needs a moment to kill the child and store the failure.
LIMIT_GRACE_SECONDS = 30.0
#: Slack on every derived lifetime: clock skew between the shim's and the
#: workers' machines, and a check interval or two.
MARGIN_SECONDS = 120.0


def lease_ttl(settings: Settings) -> int:
    """A running slice's lease: three missed beats mean its worker died."""
    return max(1, round(settings.lease_seconds * 3))


def run_bound(settings: Settings, time_limit: float | None) -> float:
    """Longest a slice can matter after it was sent (or claimed): queue, run, report."""
    limit = time_limit or settings.time_limit
    return settings.queue_wait + limit + LIMIT_GRACE_SECONDS + MARGIN_SECONDS


def key_ttl(settings: Settings, time_limit: float | None) -> int:
    """TTL of a batch's plan, claims, outcomes and answer record.

    Capped by ``AMWORKER_RESULT_EXPIRES`` (an operator's ceiling on any key).
    """
    return max(1, int(min(run_bound(settings, time_limit), settings.result_expires)))


def longest_key_ttl(settings: Settings) -> int:
    """:func:`key_ttl` for the slowest function: Celery's one ``result_expires``."""
    limits = [settings.time_limit] + [o.time_limit for o in settings.functions.values() if o.time_limit]
    return max(key_ttl(settings, limit) for limit in limits)


def redelivery_grace(settings: Settings, time_limit: float | None) -> int:
    """How long an answered batch's outcomes stay (``AMWORKER_REDELIVERY_GRACE``).

    gearmand hands a job back only when the shim's connection dropped before
    it read ``WORK_COMPLETE``; the job is then queued again and waits for a
    free lane like any job, up to a queue wait when every lane is busy or
    the shim restarts slowly. So the default is the queue wait: a
    re-delivery within it gets the real results again; a later one finds
    the answer record and is answered "answered before", never re-run.
    Never longer than the outcomes would live anyway (:func:`key_ttl`).
    """
    grace = settings.redelivery_grace if settings.redelivery_grace is not None else settings.queue_wait
    return max(1, int(min(grace, key_ttl(settings, time_limit))))
