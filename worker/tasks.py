"""The Celery tasks: thin, like a web view. Decode, call the logic, return.

* ``amworker.run_slice`` runs one slice of a batch (see worker.pool.runtime).
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
from worker.contract import keys
from worker.contract.keys import SCRIPT_HEADER
from worker.contract.plan import JobSpec
from worker.logs import batch_context

# Imported for the Celery signals they connect. Celery imports this module
# (the app's ``include``) before it sends ``worker_init``; the shim never
# imports it, so it loads none of the pool's code.
from worker.pool import advertise, metrics  # noqa: F401, I001
from worker.pool.runtime import WorkerRuntime, node_name


class SliceTask(Task[..., dict[str, Any]]):
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
    """Run slice ``index`` of ``count`` of ``batch``: ``call(jobs)`` of ``function``.

    The results are stored under the slice's own key (see
    :meth:`WorkerRuntime.store_outcome`); Celery's result is a small envelope.
    The script entry the shim planned for comes in a message header
    (``keys.SCRIPT_HEADER``); ``script`` is where a shim of the previous
    release put it.
    """
    task_id = require_task_id(self.request.id)
    script = planned_script(self.request) or script
    client = self.request.hostname or node_name()
    with batch_context(function, keys.unique_of(batch, function), f"{index + 1}/{count}"):
        if not self.runtime.claim(task_id, client, function):
            # Delivered again (or given up by the shim): never run twice, and
            # never report twice -- a second report would upset the chord counter.
            raise Ignore()
        specs = [JobSpec.from_json(job) for job in jobs]
        with self.runtime.lease(task_id):
            results = self.runtime.run_slice(
                function, specs, client=client, soft_limit_errors=(SoftTimeLimitExceeded,),
                script=script,
            )
            # Inside the lease: a shim must never see this slice neither
            # leased nor finished.
            self.runtime.store_outcome(task_id, function, results)
    return {"index": index, "count": count, "tasks": len(results)}


def planned_script(request: Any) -> str | None:
    """The script entry named in the slice's message header, if it has one.

    Celery puts a message's custom headers on the request as attributes (and
    in ``request.headers``); a message from an older shim has none.
    """
    value = getattr(request, SCRIPT_HEADER, None)
    if value is None:
        headers = getattr(request, "headers", None)
        value = headers.get(SCRIPT_HEADER) if isinstance(headers, dict) else None
    return value if isinstance(value, str) and value else None


def require_task_id(task_id: str | None) -> str:
    """The slice's Celery id, which names its claim, lease and outcome.

    Celery sets one on every message; a call without one (run_slice called
    directly, or a hand-made message) would share ``amworker:claim:None``
    with every other such call, so the second would be silently ignored.
    """
    if not task_id:
        raise ValueError("amworker.run_slice needs a Celery task id (its claim and results "
                         "are keyed by it); send it with apply_async, never call it directly")
    return task_id


@app.task(bind=True, name="amworker.collect")
def collect(self: Task[..., dict[str, Any]], function: str, batch: str, slices: list[str]) -> dict[str, Any]:
    """Chord callback: one small "all slices reported" result for the shim to wake on.

    The chord fires only once every slice reported success; the results
    themselves stay under each slice's own key (the shim fetches them once).
    A slice that failed never gets here (the shim assembles those batches
    itself, see worker.batch.settling).
    """
    tasks = 0
    for slice_id in slices:
        part = self.app.AsyncResult(slice_id).result
        if not isinstance(part, dict) or not isinstance(part.get("tasks"), int):
            raise ValueError(f"slice {slice_id} has no stored result: {part!r}")
        tasks += part["tasks"]
    return {"function": function, "batch": batch, "slices": len(slices), "tasks": tasks}
