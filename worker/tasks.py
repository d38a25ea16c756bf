"""The Celery tasks: thin, like a web view. Decode, call the logic, return.

* ``amworker.run_slice`` runs one slice of a batch (see worker.pool.runtime).
* ``amworker.collect`` is the chord callback: "every slice reported".

Script failures are results (exit codes), never Celery task failures. The
only failures Celery sees are the ones that end a pool process: worker lost
and hard time limits, which the shim turns into per-task failures with the
cause.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import redis
from celery import Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from redis.commands.core import Script

from worker.celery import app
from worker.contract import keys
from worker.contract.keys import RESULTS_HEADER, SCRIPT_HEADER
from worker.contract.slices import (
    COLLECT,
    READY_FORMAT,
    RUN_SLICE,
    CollectEnvelope,
    CollectMessage,
    SliceEnvelope,
    SliceMessage,
)
from worker.logs import batch_context

# Imported for the Celery signals they connect. Celery imports this module
# (the app's ``include``) before it sends ``worker_init``; the shim never
# imports it, so it loads none of the pool's code.
from worker.pool import advertise, metrics  # noqa: F401, I001
from worker.pool.runtime import WorkerRuntime, despite_soft_limit, node_name

log = logging.getLogger(__name__)


#: Drop a task's stored result if the batch's answer is recorded.
#: KEYS: the answer record, the task's result.
DROP_IF_ANSWERED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DEL', KEYS[2]) end
return 0
"""


@functools.cache
def _drop_script(client: redis.Redis) -> Script:
    """:data:`DROP_IF_ANSWERED` on ``client``: sent by its hash, once Redis has loaded it."""
    return client.register_script(DROP_IF_ANSWERED)


class DropsAnsweredResult(Task[..., dict[str, Any]]):
    """A task whose stored result is dropped, once Celery stores it, if the batch is answered.

    The shim's lane usually answers a batch before Celery stores the chord
    callback's result (the slices' stored outcomes wake it), and deletes
    the batch's envelopes with the answer: one stored after would outlive
    the batch by ``result_expires`` (hours), for every batch of more than
    one slice. Celery stores the result before ``on_success``: with
    the answer record there, the lane's deletion has passed and this one
    removes it; without it, the lane's deletion is still to come. Either
    way none is left.
    """

    def on_success(self, retval: dict[str, Any], task_id: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> None:
        batch = kwargs.get("batch")
        if not isinstance(batch, str):
            return
        backend: Any = self.app.backend
        try:
            _drop_script(backend.client)(keys=[keys.answer_key(batch), backend.get_key_for_task(task_id)])
        except redis.RedisError as exc:
            # Nothing is wrong with the batch: the result only lives longer.
            log.warning("batch %s: the stored result of %s is kept until it expires: %s",
                        batch, task_id, exc)


class SliceTask(Task[..., dict[str, object]]):
    """Base class holding the per-process :class:`WorkerRuntime`."""

    _runtime: WorkerRuntime | None = None

    @property
    def runtime(self) -> WorkerRuntime:
        """Built on first use in each pool process (after the fork)."""
        if SliceTask._runtime is None:
            SliceTask._runtime = WorkerRuntime.build()
        return SliceTask._runtime


# No result stored on success: the shim reads the slice's results under
# their own key, and Celery's copy (a GET of the old one, a SETEX and a
# PUBLISH in the pool process, then a script to drop it once the batch was
# answered) woke nobody: three round trips a slice, W2 1.05x the throughput
# (bench/analysis.md, round fourteen). A failure Celery decides (the pool
# process died, the hard time limit) is still stored: it is how the shim
# learns the cause at once.
@app.task(bind=True, base=SliceTask, name=RUN_SLICE, ignore_result=True,
          store_errors_even_if_ignored=True)
def run_slice(
    self: SliceTask,
    function: str,
    batch: str,
    index: int,
    count: int,
    jobs: list[dict[str, Any]],
    script: str | None = None,
) -> dict[str, object]:
    """Run slice ``index`` of ``count`` of ``batch``: ``call(jobs)`` of ``function``.

    The parameters are :class:`~worker.contract.slices.SliceMessage`'s
    fields. The results are stored under the slice's own key (see
    :meth:`WorkerRuntime.store_outcome`); the small
    :class:`~worker.contract.slices.SliceEnvelope` returned goes to the task
    events (Flower) and the chord's counter, not to the result store. The script entry the shim
    planned for comes in a message header (``keys.SCRIPT_HEADER``);
    ``script`` is where a shim of the previous release put it.
    """
    task_id = require_task_id(self.request.id)
    # A malformed message raises RecordError here, before anything is claimed.
    message = SliceMessage.from_kwargs({"function": function, "batch": batch, "index": index,
                                        "count": count, "jobs": jobs, "script": script})
    planned = planned_script(self.request) or message.script
    client = self.request.hostname or node_name()
    with batch_context(message.function, keys.unique_of(message.batch, message.function),
                       f"{message.index + 1}/{message.count}"):
        if not self.runtime.claim(task_id, client, message.function):
            # Delivered again (or given up by the shim): never run twice, and
            # never report twice -- a second report would upset the chord counter.
            raise Ignore()
        with self.runtime.lease(task_id):
            results = self.runtime.run_slice(
                message.function, message.jobs, client=client,
                soft_limit_errors=(SoftTimeLimitExceeded,), script=planned,
            )
            # Inside the lease: a shim must never see this slice neither
            # leased nor finished.
            store = functools.partial(self.runtime.store_outcome, task_id, message.function, results,
                                      answer_ready=header(self.request, RESULTS_HEADER) == READY_FORMAT)
            # Cut short, the store may have written everything already, and
            # the shim be reading its parts: it is resumed, never restarted.
            despite_soft_limit((SoftTimeLimitExceeded,), store, "storing its results",
                               again=functools.partial(store, resumed=True))
    return SliceEnvelope(index=message.index, count=message.count, tasks=len(results)).to_json()


def planned_script(request: Any) -> str | None:
    """The script entry named in the slice's message header, if it has one."""
    return header(request, SCRIPT_HEADER)


def header(request: Any, name: str) -> str | None:
    """A custom header of the slice's message, if it has it (a non-empty string).

    Celery puts a message's custom headers on the request as attributes (and
    in ``request.headers``); a message from an older shim has none.
    """
    value = getattr(request, name, None)
    if value is None:
        headers = getattr(request, "headers", None)
        value = headers.get(name) if isinstance(headers, dict) else None
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


@app.task(bind=True, base=DropsAnsweredResult, name=COLLECT)
def collect(self: Task[..., dict[str, object]], function: str, batch: str,
            slices: list[str]) -> dict[str, object]:
    """Chord callback: one small "every slice reported" result, for Flower and the shim.

    The parameters are :class:`~worker.contract.slices.CollectMessage`'s
    fields. Celery runs it only once every slice has reported success, so
    it reads nothing: the slices' results stay under their own keys (the
    shim fetches them once, usually before this runs), and no slice stores
    a Celery result for it to read (:func:`run_slice`). The shim wakes on
    this result only for a batch of more than
    ``worker.batch.dispatch.WAKE_ON_SLICES_UP_TO`` slices. A slice that
    failed never gets here (the shim assembles those batches itself, see
    worker.batch.settling).
    """
    message = CollectMessage.from_kwargs({"function": function, "batch": batch, "slices": slices})
    return CollectEnvelope(function=message.function, batch=message.batch,
                           slices=len(message.slices)).to_json()
