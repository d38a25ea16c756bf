"""Settling a dispatched batch: what each of its slices came to.

A slice that stored its result is settled by it. A slice that never will
(its pool process or its whole worker died, its time limit passed, no worker
took it, Redis lost it) is given up: its tasks fail with the cause in stderr,
and an abandoned claim, plus a revoke where it may still be queued or
running, makes sure it can never start later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import redis
from celery import Celery

from worker import keys
from worker.causes import Cause, reason
from worker.config import Settings
from worker.dispatch import Dispatch, SliceRef, load_plan
from worker.executor import failed_results
from worker.registry import ScriptEntry
from worker.watcher import META_PREFIX
from worker.wire import TaskResult

log = logging.getLogger(__name__)

#: Added to a slice's hard time limit before the shim gives up on it: the
#: pool needs a moment to kill the child and store the failure.
LIMIT_GRACE_SECONDS = 30.0


class Settler:
    """Reads a dispatched batch's state from Redis and settles it, giving up on lost slices."""

    def __init__(
        self,
        *,
        settings: Settings,
        app: Celery,
        client: redis.Redis,
        clock: Callable[[], datetime],
        wallclock: Callable[[], float],
    ) -> None:
        self.settings = settings
        # For revoking a slice given up on.
        self.app = app
        self.redis = client
        self.clock = clock
        # Wall-clock seconds: dispatch times are shared between shim processes.
        self.now = wallclock

    def settled(
        self, entry: ScriptEntry, dispatch: Dispatch, wants: Mapping[str, bool]
    ) -> dict[str, TaskResult] | None:
        """The answer if the batch is settled, else ``None``.

        The final result (the chord callback's, or the only slice's) is read
        first and alone: slice results can be large (captured output), so
        they are fetched one by one only when that did not deliver.
        """
        delivered = _decode(self.redis.get(META_PREFIX + dispatch.done_id))
        if delivered and delivered.get("status") == "SUCCESS":
            # Both tasks.collect and tasks.run_slice return {"results": [...], ...}.
            return {r.uuid: r for r in results_of(_collected_results(delivered))}
        pipe = self.redis.pipeline(transaction=False)
        pipe.mget([META_PREFIX + s.task_id for s in dispatch.slices])
        pipe.mget([keys.claim_key(s.task_id) for s in dispatch.slices])
        pipe.mget([keys.lease_key(s.task_id) for s in dispatch.slices])
        pipe.get(keys.plan_key(dispatch.token))
        metas, claims, leases, planned = pipe.execute()
        lost_at = self._state_lost_at(dispatch, _decode(planned))
        settled: dict[str, TaskResult] = {}
        pending = 0
        for ref, meta, claim, lease in zip(dispatch.slices, metas, claims, leases, strict=True):
            outcome = self._slice_outcome(entry, dispatch, ref, _decode(meta), _decode(claim), lease,
                                          lost_at=lost_at)
            if outcome is None:
                pending += 1
            else:
                settled.update({u: r for u, r in outcome.items() if u in wants})
        if pending:
            return None
        return {u: with_wants(r, wants[u]) for u, r in settled.items()}

    def _state_lost_at(self, dispatch: Dispatch, record: dict[str, Any] | None) -> float | None:
        """When Redis was found to have lost this batch's state; ``None`` if it has not.

        Dispatcher.plan_slices writes the plan before any waiting, so a missing plan means Redis
        restarted empty (no persistence): queued messages and claims went too.
        The plan is written back, marked with the moment the loss was noticed,
        so a re-delivery of the batch attaches instead of sending it again.
        """
        if record is None:
            record = {"count": dispatch.count, "at": dispatch.dispatched_at, "sent": True,
                      "lost_at": self.now()}
            log.warning("batch %s: Redis lost its state (restarted without persistence?)",
                        dispatch.token)
            if not self.redis.set(keys.plan_key(dispatch.token), json.dumps(record), nx=True,
                                  ex=int(self.settings.result_expires)):
                record = load_plan(self.redis, dispatch.token) or record
        lost = record.get("lost_at")
        return float(lost) if isinstance(lost, int | float) else None

    def _slice_outcome(
        self,
        entry: ScriptEntry,
        dispatch: Dispatch,
        ref: SliceRef,
        meta: dict[str, Any] | None,
        claim: dict[str, Any] | None,
        lease: bytes | None,
        *,
        lost_at: float | None = None,
    ) -> dict[str, TaskResult] | None:
        """What one slice came to, or ``None`` while it may still finish."""
        status = meta.get("status") if meta else None
        if status == "SUCCESS" and meta is not None:
            result = meta.get("result")
            part = result.get("results") if isinstance(result, dict) else None
            return {r.uuid: r for r in results_of(part)}
        if status == "FAILURE" and meta is not None:
            return self._give_up(ref, _failure_reason(meta), revoke=False)
        now = self.now()
        limit = (entry.options.time_limit or self.settings.time_limit) + LIMIT_GRACE_SECONDS
        if claim is None and lost_at is not None:
            # Redis restarted empty. A running slice's worker re-sets its lease
            # within one beat, and the slice may yet store its result: give it
            # one lease TTL. A slice still without a lease then went with the
            # queue: fail it now instead of waiting out queue_wait. The
            # abandoned claim stops a late start.
            if lease is None and now - lost_at > 3 * self.settings.lease_seconds:
                return self._give_up(ref, reason(
                    Cause.BROKER_LOST,
                    "Redis lost this batch's state (restarted without persistence?); "
                    "the slice's message went with it and is not re-run"), revoke=True)
            if now - dispatch.dispatched_at > self.settings.queue_wait + limit:
                return self._give_up(ref, reason(
                    Cause.BROKER_LOST, "Redis lost this batch's state and the slice never "
                    f"reported within {self.settings.queue_wait + limit:.0f}s"), revoke=True)
            return None
        if claim is None:
            if now - dispatch.dispatched_at > self.settings.queue_wait:
                return self._give_up(ref, reason(
                    Cause.QUEUE_WAIT,
                    f"no worker started this slice within {self.settings.queue_wait:.0f}s "
                    f"(is a worker consuming queue {entry.options.queue!r}?)"), revoke=True)
            return None
        if claim.get("abandoned"):
            return self._give_up(ref, str(claim.get("reason", reason(Cause.WORKER_LOST, "given up"))),
                                 revoke=False)
        if lease is None:
            return self._give_up(ref, reason(
                Cause.WORKER_LOST,
                f"the Celery worker {claim.get('worker', '?')} running this slice stopped "
                f"renewing its lease; its tasks are not re-run"), revoke=False)
        started = _parse_time(claim.get("at"))
        if started is not None and now - started > limit:
            return self._give_up(ref, reason(Cause.TIME_LIMIT, f"still running after {limit:.0f}s"),
                                 revoke=True)
        return None

    def _give_up(self, ref: SliceRef, text: str, *, revoke: bool) -> dict[str, TaskResult]:
        """Fail a slice's tasks, and make sure it can never start later."""
        marker = json.dumps({"abandoned": True, "reason": text})
        self.redis.set(keys.claim_key(ref.task_id), marker, nx=True,
                       ex=int(self.settings.result_expires))
        if revoke:
            try:
                self.app.control.revoke(ref.task_id, terminate=True, signal="SIGKILL")
            except Exception as exc:  # noqa: BLE001 - kombu wraps broker faults in many types
                # Best effort: the abandoned claim above already stops a late
                # start; an escaping error here would WORK_FAIL the whole batch.
                log.warning("slice %s: revoke not sent: %s", ref.task_id, exc)
        log.warning("slice %s given up: %s", ref.task_id, text)
        return {r.uuid: r for r in failed_results(list(ref.uuids), text, clock=self.clock)}


def _collected_results(meta: Mapping[str, Any]) -> Any:
    """The result list inside the chord callback's stored return value."""
    combined = meta.get("result")
    return combined.get("results") if isinstance(combined, dict) else None



def _decode(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def results_of(items: Any) -> list[TaskResult]:
    """The results in ``items`` (stored JSON); anything but a list of objects gives none."""
    if not isinstance(items, list):
        return []
    return [TaskResult.from_json(item) for item in items if isinstance(item, dict)]


def with_wants(result: TaskResult, wants_output: bool) -> TaskResult:
    """``result``, with ``wants_output`` as the request asked for its task."""
    if result.wants_output == wants_output:
        return result
    return TaskResult(uuid=result.uuid, exit_code=result.exit_code, finished_at=result.finished_at,
                      stdout=result.stdout, stderr=result.stderr, wants_output=wants_output)


def _failure_reason(meta: Mapping[str, Any]) -> str:
    """Map Celery's stored exception to one of the causes an operator knows."""
    result = meta.get("result")
    exc_type = result.get("exc_type", "") if isinstance(result, dict) else ""
    message = result.get("exc_message", "") if isinstance(result, dict) else ""
    if isinstance(message, list):
        message = " ".join(str(m) for m in message)
    if exc_type == "WorkerLostError":
        return reason(Cause.WORKER_LOST, f"the pool process running this slice died ({message})")
    if exc_type in {"TimeLimitExceeded", "SoftTimeLimitExceeded"}:
        return reason(Cause.TIME_LIMIT, f"the slice was killed by its hard time limit ({message})")
    return reason(Cause.WORKER_LOST, f"the slice failed in Celery: {exc_type}: {message}")


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
