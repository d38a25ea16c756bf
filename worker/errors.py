"""What can go wrong, and the words amworker uses to say so.

Three kinds of failure are kept apart:

* a script's non-zero exit is a *result*, never an exception;
* a fault of the infrastructure (worker lost, broker down, deadline passed)
  fails each task it touched with a :class:`Cause`: exit code 1 and a stderr
  line starting ``amworker: <cause>: ``, so an operator (and a metric) can tell
  it from a script's own failure;
* a payload that cannot be read is *permanent*: :class:`DecodeError`.

The exceptions below are the ones amworker raises on purpose.
"""

from __future__ import annotations


class AmworkerError(Exception):
    """Base class of every error amworker raises on purpose."""


class ConfigError(AmworkerError):
    """A setting is missing or malformed; the message names the variable."""


class DecodeError(AmworkerError):
    """A request payload cannot be read at all (permanent, never retried)."""


class ArgvError(AmworkerError):
    """One task's ``arguments`` string cannot be turned into an argv."""


class RegistryError(AmworkerError):
    """The modules file cannot be read or names no usable function."""


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
