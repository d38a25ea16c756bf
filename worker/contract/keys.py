"""Every Redis key and Celery id amworker derives, in one place.

Ids are derived from the batch's Gearman ``unique`` (the controller's batch
UUID), so a batch that gearmand re-delivers after a shim restart computes the
same ids and finds the work already under way instead of running it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

#: Prefix of every key amworker writes to Redis itself.
PREFIX = "amworker"


def batch_token(function: str, unique: str, payload: bytes, uuids: Iterable[str]) -> str:
    """A stable id for one batch: its unique (else a payload digest) and its task UUIDs.

    gearmand hands ``unique`` through untouched; the controller always sets
    it, but a hand-made client may not, and then equal payloads are one batch.
    The function is part of the token because a unique is only unique per
    function name in Gearman. The task UUIDs are too: once a job is answered
    the same unique may come again with other tasks (docs/design.md, "The controller contract"), and
    that is a new batch that must run, not a re-delivery that attaches.
    """
    base = unique.strip() or hashlib.sha256(payload).hexdigest()[:32]
    tasks = hashlib.sha256("\n".join(sorted(uuids)).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{function}:{base}:{tasks[:12]}"


def legacy_token(token: str) -> str:
    """The token a shim of amworker before task digests gave the same batch: ``function:unique``.

    A batch dispatched by such a shim and handed back by gearmand to a newer
    one (a rolling upgrade) is found under this token, so it is attached to,
    never run again (see worker.batch.runner).
    """
    return token.rpartition(":")[0] or token


def unique_of(token: str, function: str) -> str:
    """The controller's batch UUID inside a :func:`batch_token` (what logs show)."""
    base, _, _digest = token.removeprefix(f"{function}:").rpartition(":")
    return base or token


def slice_id(token: str, index: int, count: int) -> str:
    """Celery task id of slice ``index`` (0-based) of ``count``."""
    return f"{token}:slice-{index + 1}-of-{count}"


def collect_id(token: str) -> str:
    """Celery task id of the chord callback that combines the slices."""
    return f"{token}:collect"


def plan_key(token: str) -> str:
    """Slice count chosen the first time the batch arrived (kept on re-delivery)."""
    return f"{PREFIX}:plan:{token}"


def claim_key(task_id: str) -> str:
    """Set once when a slice starts (or is given up); a second delivery is ignored."""
    return f"{PREFIX}:claim:{task_id}"


def lease_key(task_id: str) -> str:
    """Refreshed while a slice runs; its expiry means the worker died."""
    return f"{PREFIX}:lease:{task_id}"


def answer_key(token: str) -> str:
    """Record of an answered batch (where its results are), for re-deliveries."""
    return f"{PREFIX}:answer:{token}"


#: Prefix of :func:`outcome_key`: the channel a slice publishes on once its
#: results are stored is named like the key, as Celery names its result channels.
OUTCOME_PREFIX = f"{PREFIX}:outcome:"
#: What a slice publishes there (the shim's watcher only needs the channel).
OUTCOME_STORED = "stored"


def outcome_key(task_id: str) -> str:
    """A finished slice's results, stored by the slice (never sent over pub/sub).

    Its presence is what makes the slice finished: the shim answers from it
    (see worker.batch.settling), and the slice publishes a short note on the
    channel of the same name once it is stored.
    """
    return OUTCOME_PREFIX + task_id


def outcome_more_key(task_id: str) -> str:
    """The rest of a slice's results when they need more than one Redis value: a list of parts.

    Only results over ``slices.OUTCOME_PART_CHARS`` have it; the shim reads
    it only when the first part, under ``outcome_key``, names more parts.
    """
    return f"{outcome_key(task_id)}:more"


@runtime_checkable
class ResultKeys(Protocol):
    """The part of a Celery result backend that names where a task's result is stored.

    Celery's key-value backends (Redis among them) have it; its typed
    ``Backend`` base does not declare it, so backends are checked at run time.
    """

    def get_key_for_task(self, task_id: str, key: str = "") -> bytes | str:
        """The key of ``task_id``'s stored result."""
        ...


#: A task id that names no task: Celery refuses an empty one, so the prefix
#: is what remains of this one's key without it.
_PROBE_ID = "amworker-prefix-probe"


def result_key(backend: object, task_id: str) -> str:
    """The key (and pub/sub channel) of ``task_id``'s stored result, as Celery names it.

    Asked of the backend rather than copied: Celery prefixes it (and a
    ``global_keyprefix`` transport option prefixes that).
    """
    if not isinstance(backend, ResultKeys):
        # Celery's DisabledBackend (no result_backend configured) has none.
        raise ValueError(f"{type(backend).__name__} stores no results: amworker needs a Redis result backend")
    key = backend.get_key_for_task(task_id)
    return key.decode("utf-8") if isinstance(key, bytes) else key


def result_prefix(backend: object) -> str:
    """The prefix of every stored result's key: ``result_key(backend, id) == prefix + id``.

    For the shim's hot paths (one string concatenation per key) and its
    pub/sub pattern. Read it once per process: Celery keeps a backend per
    thread unless the backend says it is thread-safe (the shim's does), and
    asking from a thread of its own would build one there.
    """
    key = result_key(backend, _PROBE_ID)
    if not key.endswith(_PROBE_ID):
        raise ValueError(f"Celery's result key {key!r} does not end with the task id")
    return key.removesuffix(_PROBE_ID)


def wake_prefixes(backend: object) -> tuple[str, str]:
    """The prefixes of the channels a stored result is announced on: Celery's and a slice's own.

    Celery publishes every result it stores on its key's channel; a slice
    publishes on its outcome key's channel once its results are stored.
    """
    return result_prefix(backend), OUTCOME_PREFIX


#: Message header naming the script entry a slice was planned for (a header,
#: not an argument, so a worker of an older amworker ignores it).
SCRIPT_HEADER = "amworker_script"
#: Message header asking the worker to store the slice's results answer-ready
#: (``worker.contract.slices.READY_FORMAT``). A header, so a worker of an older
#: amworker ignores it and stores them as before; and a worker stores them so
#: only when asked, so a shim of an older amworker is never handed a form it
#: cannot read.
RESULTS_HEADER = "amworker_results"
