"""From a decoded batch to the jobs its slices carry, within the decoded-size caps.

Pure: no Redis, Celery or clock of its own. :func:`prepare_batch` first holds
the batch to :class:`~worker.codec.limits.Limits` as decoded (task count, and
argument bytes with every reference counted, so tasks sharing one string
through a pickle's memo are each counted in full, plus the task UUIDs), then
substitutes and splits each task's arguments, checking the sizes again after
substitution. Nothing is split before the whole batch has passed the first
check, so a refused batch costs next to nothing.

A task over a cap or whose arguments cannot be split is *refused*: the caller
answers it exit 1 with ``payload refused: <problem>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from worker.codec.argv import Paths, split_arguments, substitute
from worker.codec.limits import MAX_TASK_UUID_CHARS, Limits, argument_bytes
from worker.codec.records import TaskSpec
from worker.contract.plan import JobSpec
from worker.errors import ArgvError


@dataclass
class Prepared:
    """What became of a batch's tasks: the runnable ones, and the refused with why."""

    specs: list[JobSpec] = field(default_factory=list)
    refused: list[tuple[TaskSpec, str]] = field(default_factory=list)


def prepare_batch(
    tasks: Sequence[TaskSpec], *, limits: Limits, paths: Paths, now: datetime
) -> Prepared:
    """Check ``tasks`` against ``limits``, then build each runnable task's argv.

    ``now`` is the time ``%date%`` stands for. Never raises for bad input:
    every task ends up in exactly one of the two lists, in payload order.
    """
    whole = _batch_problem(tasks, limits)
    if whole is not None:
        return Prepared(refused=[(task, whole) for task in tasks])
    prepared = Prepared()
    total = _key_bytes(tasks)
    for task in tasks:
        problem = task.problem
        argv: list[str] = []
        if problem is None:
            problem = _size_problem(argument_bytes(task.arguments), limits, "")
        if problem is None:
            substituted = substitute(task.arguments, task_uuid=task.uuid,
                                     created_date=task.created_date, paths=paths, now=now)
            size = argument_bytes(substituted)
            total += size
            if total > limits.max_batch_argument_bytes:
                # Placeholders made the batch too big: refuse all of it, as
                # above, rather than run whichever tasks came first.
                whole = _total_problem(total, limits, "once placeholders are substituted, ")
                return Prepared(refused=[(each, whole) for each in tasks])
            problem = _size_problem(size, limits, " once placeholders are substituted")
            if problem is None:
                problem, argv = _split(substituted)
        if problem is None:
            prepared.specs.append(JobSpec(uuid=task.uuid, argv=tuple(argv),
                                          wants_output=task.wants_output))
        else:
            prepared.refused.append((task, problem))
    return prepared


def _batch_problem(tasks: Sequence[TaskSpec], limits: Limits) -> str | None:
    """Why the whole batch is refused as decoded (too many tasks or argument bytes), if it is."""
    if len(tasks) > limits.max_tasks:
        return (f"the batch has {len(tasks)} tasks, more than the {limits.max_tasks} "
                "allowed (AMWORKER_MAX_BATCH_TASKS)")
    total = _key_bytes(tasks)
    if total > limits.max_batch_argument_bytes:
        return _total_problem(total, limits, "")
    sizes: dict[int, int] = {}  # by id(): a memo-shared string is measured once...
    for task in tasks:
        arguments = task.arguments
        size = sizes.get(id(arguments))
        if size is None:
            size = sizes[id(arguments)] = argument_bytes(arguments)
        total += size  # ...and counted for every task that refers to it
        if total > limits.max_batch_argument_bytes:
            return _total_problem(total, limits, "")
    return None


def _key_bytes(tasks: Sequence[TaskSpec]) -> int:
    """The UTF-8 size of the batch's task UUIDs (at least: see below).

    They count toward the argument budget: each is copied into the slice's
    message, its outcome and the answer, like an argument. An over-long key
    (refused anyway, :data:`~worker.codec.limits.MAX_TASK_UUID_CHARS`) counts one
    byte a character, a lower bound that needs no UTF-8 copy of megabytes.
    """
    return sum(argument_bytes(task.uuid) if len(task.uuid) <= MAX_TASK_UUID_CHARS
               else len(task.uuid) for task in tasks)


def _total_problem(total: int, limits: Limits, when: str) -> str:
    # Counting stops once over the cap, so ``total`` is a lower bound.
    return (f"{when}the batch's arguments and task UUIDs come to at least {total} bytes "
            f"(every task counted), more than the {limits.max_batch_argument_bytes} allowed "
            "(AMWORKER_MAX_BATCH_ARGUMENT_BYTES)")


def _size_problem(size: int, limits: Limits, when: str) -> str | None:
    if size <= limits.max_argument_bytes:
        return None
    return (f"'arguments' is {size} bytes{when}, more than the {limits.max_argument_bytes} "
            "allowed (AMWORKER_MAX_ARGUMENT_BYTES)")


def _split(arguments: str) -> tuple[str | None, list[str]]:
    try:
        return None, split_arguments(arguments)
    except ArgvError as exc:
        return f"arguments cannot be split: {exc}", []
