"""Batches as the controller builds them, their Tasks rows, and checking answers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from worker.cli.gearman_client import Outcome, Submission
from worker.codec.records import Encoding
from worker.codec.wire import decode_result, encode_request

#: The no-op batches' arguments: quoted and with placeholders, like a real link's.
NOOP_ARGUMENTS = '"%taskUUID%" "%sharedPath%currentlyProcessing/objects/file.tif" --verbose'


@dataclass(frozen=True)
class BenchBatch:
    """One batch: its Gearman submission and its task UUIDs in order."""

    submission: Submission
    uuids: tuple[str, ...]


def make_batch(function: str, tasks: int, arguments: str, *, wants_output: bool = True) -> BenchBatch:
    """A JSON batch (Archivematica 1.17) of ``tasks`` tasks with fresh UUIDs."""
    created = datetime.now(UTC).isoformat()
    uuids = tuple(str(uuid.uuid4()) for _ in range(tasks))
    document = {
        u: {"uuid": u, "createdDate": created, "arguments": arguments, "wants_output": wants_output}
        for u in uuids
    }
    payload = encode_request(document, Encoding.JSON)
    return BenchBatch(Submission(function, payload, unique=str(uuid.uuid4())), uuids)


def use_database(url: str) -> None:
    """Point this process's Django at a stack's database, to insert and count Tasks rows."""
    os.environ["AMWORKER_DATABASE_URL"] = url
    from worker import database

    database.ensure_schema()


def insert_rows(batches: Sequence[BenchBatch]) -> None:
    """Insert the batches' ``Tasks`` rows, as the controller does before submitting."""
    from worker.models import Task

    now = datetime.now(UTC)
    Task.objects.bulk_create(
        [Task(taskuuid=u, execution=b.submission.function, createdtime=now, arguments="bench")
         for b in batches for u in b.uuids],
        batch_size=500,
    )


def rows_finished(batches: Sequence[BenchBatch]) -> int:
    """How many of the batches' rows have an exit code written."""
    from worker.models import Task

    uuids = [u for b in batches for u in b.uuids]
    found = 0
    for start in range(0, len(uuids), 500):
        found += Task.objects.filter(pk__in=uuids[start:start + 500],
                                     exitcode__isnull=False).count()
    return found


def problems(batch: BenchBatch, outcome: Outcome,
             expected_stdout: Callable[[str], str] | None = None) -> list[str]:
    """What is wrong with an answer: missing tasks, failures, damaged output."""
    if not outcome.complete:
        return [f"batch {batch.submission.unique}: WORK_FAIL"]
    answers = decode_result(outcome.data)
    found: list[str] = []
    for task_id in batch.uuids:
        answer = answers.get(task_id)
        if answer is None:
            found.append(f"task {task_id}: missing from the answer")
        elif answer.get("exitCode") != 0:
            found.append(f"task {task_id}: exit code {answer.get('exitCode')}: "
                         f"{str(answer.get('stderror', ''))[:200]}")
        elif expected_stdout is not None and answer.get("stdout") != expected_stdout(task_id):
            found.append(f"task {task_id}: output damaged "
                         f"({len(str(answer.get('stdout', '')))} characters)")
    return found
