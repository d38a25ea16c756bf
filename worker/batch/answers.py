"""What a settled batch came to, and the record kept once it is answered.

A :class:`Settlement` is small whatever the output: which slices finished
(their results wait under their own keys) and the results amworker made
itself. Once a lane has answered, the batch's *answer record*
(``amworker:answer:<token>``) keeps a settlement in the same shape, so a
re-delivery of the batch is answered again instead of run again (see
docs/design.md, "What Redis keeps"). :func:`ready_answer` joins a JSON
answer from the parts the slices stored answer-ready, when it can.

Everything here is a pure codec: no Redis, no clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker.batch.dispatch import SliceRef
from worker.codec.records import Batch, Encoding, TaskResult
from worker.codec.wire import join_json_answer
from worker.contract import records
from worker.contract.records import RecordError
from worker.contract.slices import ReadyResults, results_from_json
from worker.errors import Cause, reason


@dataclass(frozen=True)
class Settlement:
    """A settled batch, before its results are fetched: small, whatever the output."""

    #: Slices whose results wait under their own key.
    finished: tuple[SliceRef, ...] = ()
    #: Results amworker made itself (slices given up), by task UUID.
    failed: Mapping[str, TaskResult] = field(default_factory=dict)
    #: Said of a task whose result is found nowhere.
    missing: str = reason(Cause.WORKER_LOST, "no result came back")
    #: Finished slices' stored results already read by the check that found
    #: them finished (small ones only), by slice id: not fetched again.
    prefetched: Mapping[str, bytes] = field(default_factory=dict)


def answer_record(settlement: Settlement, at: float) -> str:
    """The answer record of ``settlement``, answered at ``at`` (wall-clock seconds)."""
    return json.dumps({"at": at, "slices": [ref.task_id for ref in settlement.finished],
                       "failed": [r.to_json() for r in settlement.failed.values()]})


def answer_record_settlement(raw: bytes | str) -> Settlement:
    """Decode an answer record (raises :class:`~worker.contract.records.RecordError` if it is not one).

    The results of slices that are gone (past the re-delivery grace) are
    answered "answered before": the batch is not run again.
    """
    record = records.loads(raw, "answer record")
    if isinstance(record, list):
        # Written by a shim of amworker before answer records (found through
        # keys.legacy_token during an upgrade): the whole answer.
        return Settlement(failed={r.uuid: r for r in results_from_json(record, "answer record")})
    record = records.mapping(record, "answer record")
    slices = records.field(record, "slices", list, "answer record")
    return Settlement(
        finished=tuple(SliceRef(str(i), ()) for i in slices),
        failed={r.uuid: r for r in results_from_json(record.get("failed"), "answer record's failed")},
        missing=reason(Cause.ANSWERED_BEFORE, f"this batch was answered at {_when(record.get('at'))}; "
                       "its results are no longer kept and it is not run again"),
    )


def answers_tasks(raw: bytes | str, uuids: Iterable[str]) -> bool:
    """False only if ``raw`` is a whole stored answer that lacks one of ``uuids``.

    An old shim keyed batches by ``function:unique`` alone; an answer there
    without these tasks belongs to an earlier batch that reused the unique.
    Anything else (an answer record, an unreadable value) is taken to be this
    batch's: running a batch twice is worse than answering it with a cause.
    """
    try:
        record = records.loads(raw, "a stored answer")
    except RecordError:
        return True
    if not isinstance(record, list):
        return True
    answered = {item.get("uuid") for item in record if isinstance(item, dict)}
    return set(uuids) <= answered


def _when(at: Any) -> str:
    """``at`` (wall-clock seconds) as local ISO time; "?" if it is none or absurd."""
    if not isinstance(at, int | float) or isinstance(at, bool):
        return "?"
    try:
        return datetime.fromtimestamp(at).astimezone().isoformat()
    except (OverflowError, OSError, ValueError):
        # A stored value years out of range: the record is still this batch's.
        return "?"


def joinable(batch: Batch, settlement: Settlement) -> bool:
    """Whether the answer may be joined from the slices' parts (:func:`ready_answer`):
    a JSON request, every task of which went to a slice that finished."""
    return batch.encoding is Encoding.JSON and not settlement.failed and bool(settlement.finished)


def ready_answer(batch: Batch, settlement: Settlement) -> tuple[bytes, bool] | None:
    """A JSON answer joined from the slices' answer-ready parts, and whether every task is
    its script's own; ``None`` unless every task has its part, in the request's order.

    The common case: a JSON request whose every slice stored its results
    answer-ready (``worker.contract.slices.encode_ready_results``). The
    bytes are what :func:`~worker.codec.wire.encode_result` would make of
    the same results. Anything else (a pickled request, a task the shim
    refused or gave up on, a slice stored in parts or by an older worker,
    an unreadable value) is encoded result by result.
    """
    if not joinable(batch, settlement):
        return None
    readies = []
    for ref in settlement.finished:
        raw = settlement.prefetched.get(ref.task_id)
        try:
            ready = ReadyResults.parse(raw) if raw is not None else None
        except RecordError:
            return None  # fetched again and answered with the cause, result by result
        if ready is None:
            return None
        readies.append(ready)
    tasks = batch.tasks
    if [u for r in readies for u in r.uuids] != [t.uuid for t in tasks]:
        return None
    if [w for r in readies for w in r.wants] != [t.wants_output for t in tasks]:
        return None
    return join_json_answer(r.part for r in readies), not any(r.by_amworker for r in readies)
