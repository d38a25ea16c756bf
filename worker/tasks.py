"""The Celery tasks: thin, like a web view. Decode, call the logic, return.

* ``amworker.run_slice`` runs one slice of a batch (see worker.runtime).
* ``amworker.collect`` is the chord callback that combines the slices.

Script failures are results (exit codes), never Celery task failures. The
only failures Celery sees are the ones that end a pool process: worker lost
and hard time limits, which the shim turns into per-task failures with the
cause.
"""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded

from worker.celery import app
from worker.logs import batch_context
from worker.plan import JobSpec
from worker.runtime import WorkerRuntime, node_name
from worker.wire import TaskResult


class SliceTask(Task):
    """Base class holding the per-process :class:`WorkerRuntime`."""

    _runtime: WorkerRuntime | None = None

    @property
    def runtime(self) -> WorkerRuntime:
        """Built on first use in each pool process (after the fork)."""
        if SliceTask._runtime is None:
            SliceTask._runtime = WorkerRuntime.build()
        return SliceTask._runtime


@app.task(bind=True, base=SliceTask, name="amworker.run_slice")
def run_slice(
    self: SliceTask,
    function: str,
    batch: str,
    index: int,
    count: int,
    jobs: list[dict[str, Any]],
    script: str | None = None,
) -> dict[str, Any]:
    """Run slice ``index`` of ``count`` of ``batch``: ``call(jobs)`` of ``function``."""
    client = self.request.hostname or node_name()
    with batch_context(function, batch, f"{index + 1}/{count}"):
        if not self.runtime.claim(self.request.id, client):
            # Delivered again (or given up by the shim): never run twice, and
            # never report twice -- a second report would upset the chord counter.
            raise Ignore()
        specs = [JobSpec.from_json(job) for job in jobs]
        with self.runtime.lease(self.request.id):
            results = self.runtime.run_slice(
                function, specs, client=client, soft_limit_errors=(SoftTimeLimitExceeded,),
                script=script,
            )
    return {"index": index, "count": count, "results": [r.to_json() for r in results]}


@app.task(bind=True, name="amworker.collect")
def collect(self: Task, function: str, batch: str, slices: list[str]) -> dict[str, Any]:
    """Chord callback: merge the slices' stored results, in slice order.

    The chord fires only once every slice reported success, so each result
    is there; a slice that failed never gets here (the shim assembles those
    batches itself, see worker.batches).
    """
    merged: list[dict[str, Any]] = []
    for slice_id in slices:
        part = self.app.AsyncResult(slice_id).result
        if not isinstance(part, dict):
            raise ValueError(f"slice {slice_id} has no stored result: {part!r}")
        merged.extend(part["results"])
    # Round-trip through TaskResult so a malformed part fails here, loudly.
    checked = [TaskResult.from_json(r).to_json() for r in merged]
    return {"function": function, "batch": batch, "tasks": len(checked), "results": checked}
