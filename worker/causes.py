"""The causes amworker names when it, not a script, fails a task.

Every such failure has exit code 1 and a stderr line starting
``amworker: <cause>: `` so an operator (and a metric) can tell an
infrastructure failure from a script's own non-zero exit.
"""

from __future__ import annotations


class Cause:
    """The causes a task can fail with besides its own exit code (stderr prefix)."""

    WORKER_LOST = "worker lost"
    TIME_LIMIT = "time limit"
    BROKER_LOST = "broker lost"
    IMPORT_FAILED = "script import failed"
    PAYLOAD_REFUSED = "payload refused"
    QUEUE_WAIT = "not started in time"
    DATABASE_UNAVAILABLE = "database unavailable"
    #: A fault in amworker itself (a bug, unreadable stored state): logged
    #: with its traceback; never blamed on the broker or a worker.
    INTERNAL = "internal error"
    #: A re-delivery of a batch answered so long ago that its results are
    #: gone; it is not run again (scripts are not idempotent).
    ANSWERED_BEFORE = "answered before"
    SCRIPT_MISMATCH = "script mismatch"


#: How every failure amworker makes (rather than a script) starts in stderr.
REASON_PREFIX = "amworker: "


def reason(cause: str, detail: str) -> str:
    """The stderr line of an infrastructure failure."""
    return f"{REASON_PREFIX}{cause}: {detail}"
