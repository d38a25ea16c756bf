"""Answering one batch: decode, plan, dispatch (or attach), wait, assemble.

This is the shim's logic with the sockets taken out: :meth:`BatchRunner.answer`
takes the Gearman function, ``unique`` and payload and returns the bytes of a
``WORK_COMPLETE`` (or ``None`` for a payload that cannot be read at all, which
the shim answers with ``WORK_FAIL``).

Every task UUID that arrives gets a result, always: the script's own, or exit
code 1 with the cause in stderr. The chord callback combines the slices on the
happy path; when a slice is lost (its process or its whole worker died, its
time limit passed, the broker went away) the chord never fires, so the runner
assembles the answer itself from what each slice reached.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from celery import Celery, chord, group

from worker import keys, logs, plan
from worker.argv import Paths, prepare_argv
from worker.causes import REASON_PREFIX, Cause, reason
from worker.config import Settings
from worker.errors import ArgvError, DecodeError
from worker.executor import failed_results, utcnow
from worker.metrics import BatchObserver, NullObserver
from worker.registry import Registry, ScriptEntry
from worker.watcher import META_PREFIX, ResultWatcher
from worker.wire import Batch, TaskResult, TaskSpec, decode_request, encode_result

log = logging.getLogger(__name__)

#: Added to a slice's hard time limit before the shim gives up on it: the
#: pool needs a moment to kill the child and store the failure.
LIMIT_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class SliceRef:
    """One dispatched slice as the waiting side sees it."""

    task_id: str
    uuids: tuple[str, ...]


@dataclass(frozen=True)
class Dispatch:
    """What was (or is being) run for a batch, recorded in Redis on first arrival."""

    token: str
    count: int
    dispatched_at: float
    slices: tuple[SliceRef, ...]

    @property
    def done_id(self) -> str:
        """The Celery id whose stored result answers the batch."""
        return keys.collect_id(self.token) if self.count > 1 else self.slices[0].task_id


class AnswerSlots:
    """Few lanes at a time may hold a fetched answer in memory.

    A lane's answer exists several times over while it is fetched, decoded
    and encoded (the Redis reply, the parsed JSON, the results, the encoded
    payload). Sixteen lanes finishing together would hold sixteen such sets;
    these slots keep it to a few, so the shim's peak memory is bounded by the
    slot count rather than by the number of lanes. A lane takes its slot just
    before fetching and keeps it until its answer is encoded; waiting never
    holds one.
    """

    def __init__(self, count: int) -> None:
        self._semaphore = threading.BoundedSemaphore(count)
        self._local = threading.local()

    def take(self) -> None:
        """Take this thread's slot (no-op if it has one)."""
        if not getattr(self._local, "held", False):
            self._semaphore.acquire()
            self._local.held = True

    def give_back(self) -> None:
        """Give this thread's slot back (no-op if it has none)."""
        if getattr(self._local, "held", False):
            self._local.held = False
            self._semaphore.release()


#: Lanes that may hold a fetched answer at once (see :class:`AnswerSlots`).
ANSWER_SLOTS = 4


class BatchRunner:
    """Turns one Gearman job into its ``WORK_COMPLETE`` payload."""

    def __init__(
        self,
        *,
        settings: Settings,
        registry: Registry,
        app: Celery,
        client: redis.Redis,
        watcher: ResultWatcher,
        clock: Callable[[], datetime] = utcnow,
        wallclock: Callable[[], float] = time.time,
        observer: BatchObserver | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.app = app
        self.redis = client
        self.watcher = watcher
        self.clock = clock
        # Wall-clock seconds: dispatch times are shared between shim processes.
        self.now = wallclock
        self.observer: BatchObserver = observer or NullObserver()
        self.slots = AnswerSlots(ANSWER_SLOTS)
        self.paths = Paths(
            shared_directory=settings.shared_directory,
            client_assets_directory=settings.client_assets_directory,
            client_scripts_directory=settings.client_scripts_directory,
            watch_directory=settings.watch_directory,
            rejected_directory=settings.rejected_directory,
        )

    # -- the entry point ------------------------------------------------------

    def answer(self, function: str, unique: str, payload: bytes) -> bytes | None:
        """The encoded answer to one batch, or ``None`` if it cannot be decoded."""
        started = time.monotonic()
        self.observer.batch_received(function)
        ok = False
        try:
            with logs.batch_context(function, unique or "-"):
                answer, ok = self._answer(function, unique, payload)
            return answer
        finally:
            self.observer.batch_answered(function, ok=ok, seconds=time.monotonic() - started)

    def _answer(self, function: str, unique: str, payload: bytes) -> tuple[bytes | None, bool]:
        """The answer, and whether every task got its script's own result."""
        try:
            batch = decode_request(payload, max_bytes=self.settings.max_payload_bytes)
        except DecodeError as exc:
            self.observer.payload_refused(function)
            log.error("%s batch %s: payload refused, answering WORK_FAIL: %s",
                      function, unique or "-", exc)
            return None, False
        token = keys.batch_token(function, unique, payload)
        try:
            results = self.run(function, token, batch)
            return encode_result(results, batch.encoding), not any(map(_failed_by_amworker, results))
        finally:
            self.slots.give_back()

    def run(self, function: str, token: str, batch: Batch) -> list[TaskResult]:
        """Results for every task of ``batch``, in payload order."""
        stored = self._stored_answer(token)
        if stored is not None:
            log.info("%s batch %s: re-delivered after it finished; answering again", function, token)
            return self._complete(batch, stored)
        entry = self.registry.get(function)
        found: dict[str, TaskResult] = {}
        if entry is None or entry.module is None:
            detail = entry.import_error if entry else f"no script is registered for {function!r}"
            found.update(self._fail(batch.tasks, reason(Cause.IMPORT_FAILED, str(detail))))
        else:
            specs, refused = self._prepare(batch.tasks)
            found.update(refused)
            if specs:
                found.update(self._execute(entry, token, specs))
        results = self._complete(batch, found)
        if any(map(_failed_by_amworker, results)):
            # An answer the shim assembled (a slice given up, a refused task)
            # exists nowhere else; one the scripts produced is already stored
            # as the batch's Celery result, where a re-delivery finds it.
            self._store_answer(token, results)
        return results

    # -- preparing -------------------------------------------------------------

    def _prepare(self, tasks: Sequence[TaskSpec]) -> tuple[list[plan.JobSpec], dict[str, TaskResult]]:
        now = self.clock()
        specs: list[plan.JobSpec] = []
        refused: dict[str, TaskResult] = {}
        for task in tasks:
            problem = task.problem
            argv: list[str] = []
            if problem is None:
                try:
                    argv = prepare_argv(task.arguments, task_uuid=task.uuid,
                                        created_date=task.created_date, paths=self.paths, now=now)
                except ArgvError as exc:
                    problem = f"arguments cannot be split: {exc}"
            if problem is not None:
                refused.update(self._fail([task], reason(Cause.PAYLOAD_REFUSED, problem)))
            else:
                specs.append(plan.JobSpec(uuid=task.uuid, argv=tuple(argv),
                                          wants_output=task.wants_output))
        return specs, refused

    def _fail(self, tasks: Sequence[TaskSpec], text: str) -> dict[str, TaskResult]:
        wants = {t.uuid: t.wants_output for t in tasks}
        return {r.uuid: r for r in failed_results(list(wants), text, wants_output=wants.__getitem__,
                                                   clock=self.clock)}

    # -- dispatching -----------------------------------------------------------

    def _execute(self, entry: ScriptEntry, token: str, specs: list[plan.JobSpec]) -> dict[str, TaskResult]:
        try:
            dispatch, parts, fresh = self._plan(entry, token, specs)
            # Listen before sending: a fast slice must not finish unheard.
            with self.watcher.watching([dispatch.done_id]) as event:
                if fresh:
                    self._send(entry, dispatch, parts)
                return self._wait(entry, dispatch, specs, event, check_first=not fresh)
        except (redis.RedisError, OSError) as exc:
            log.error("%s batch %s: cannot dispatch: %s", entry.function, token, exc)
            return self._fail_specs(specs, reason(Cause.BROKER_LOST, f"cannot reach the broker: {exc}"))
        except Exception as exc:  # noqa: BLE001 - kombu wraps broker faults in many types
            log.exception("%s batch %s: cannot dispatch", entry.function, token)
            return self._fail_specs(specs, reason(Cause.BROKER_LOST, f"cannot dispatch: {exc!r}"))

    def _fail_specs(self, specs: Sequence[plan.JobSpec], text: str) -> dict[str, TaskResult]:
        wants = {s.uuid: s.wants_output for s in specs}
        return {r.uuid: r for r in failed_results(list(wants), text, wants_output=wants.__getitem__,
                                                   clock=self.clock)}

    def _plan(
        self, entry: ScriptEntry, token: str, specs: list[plan.JobSpec]
    ) -> tuple[Dispatch, list[list[plan.JobSpec]], bool]:
        """The batch's slices, recorded on first arrival; True if they must be sent.

        A re-delivered batch finds the record of its first arrival and reuses
        its slice count, so it computes the same ids and attaches to the work
        instead of sending it again.
        """
        count = plan.slice_count(entry.slices_wanted(), len(specs))
        record: dict[str, Any] = {"count": count, "at": self.now(), "sent": False}
        ttl = int(self.settings.result_expires)
        if not self.redis.set(keys.plan_key(token), json.dumps(record), nx=True, ex=ttl):
            earlier = self._load_plan(token)
            if earlier is not None:
                record = earlier
                log.info("%s batch %s: re-delivered; attaching to the work under way",
                         entry.function, token)
        parts = plan.split(specs, int(record["count"]))
        slices = tuple(
            SliceRef(keys.slice_id(token, i, len(parts)), tuple(s.uuid for s in part))
            for i, part in enumerate(parts)
        )
        dispatch = Dispatch(token=token, count=len(parts), dispatched_at=float(record["at"]),
                            slices=slices)
        return dispatch, parts, not record.get("sent")

    def _send(self, entry: ScriptEntry, dispatch: Dispatch, parts: list[list[plan.JobSpec]]) -> None:
        """Send the slices, then mark the plan as sent."""
        self._send_chord(entry, dispatch, parts)
        record = {"count": dispatch.count, "at": dispatch.dispatched_at, "sent": True}
        self.redis.set(keys.plan_key(dispatch.token), json.dumps(record),
                       ex=int(self.settings.result_expires))

    def _load_plan(self, token: str) -> dict[str, Any] | None:
        raw = self.redis.get(keys.plan_key(token))
        if raw is None:
            return None
        loaded = json.loads(raw)
        return loaded if isinstance(loaded, dict) else None

    def _send_chord(self, entry: ScriptEntry, dispatch: Dispatch, parts: list[list[plan.JobSpec]]) -> None:
        options = entry.options
        header = [
            self.app.signature(
                "amworker.run_slice",
                kwargs={"function": entry.function, "batch": dispatch.token, "index": i,
                        "count": dispatch.count, "jobs": [s.to_json() for s in part]},
                task_id=ref.task_id,
                queue=options.queue,
                time_limit=options.time_limit,
                soft_time_limit=options.soft_time_limit,
                # What Flower and the logs show instead of a wall of argv.
                shadow=f"{entry.function} slice {i + 1}/{dispatch.count}",
                kwargsrepr=repr({"function": entry.function, "batch": dispatch.token,
                                 "slice": f"{i + 1}/{dispatch.count}", "tasks": len(part)}),
            )
            for i, (ref, part) in enumerate(zip(dispatch.slices, parts, strict=True))
        ]
        # Immutable: the callback is not handed the slices' results as its
        # arguments but reads them itself. With extended results on (for
        # Flower) Celery would otherwise store every slice's output twice
        # more in the callback's own result, and the shim would read it twice.
        body = self.app.signature(
            "amworker.collect",
            kwargs={"function": entry.function, "batch": dispatch.token,
                    "slices": [ref.task_id for ref in dispatch.slices]},
            immutable=True,
            task_id=keys.collect_id(dispatch.token),
            queue=options.queue,
            shadow=f"{entry.function} collect ({dispatch.count} slices)",
        )
        if dispatch.count == 1:
            # One slice has nothing to combine: the shim reads its result
            # directly, saving the callback's round trip through the broker.
            header[0].apply_async()
        else:
            chord(group(header).set(task_id=keys.group_id(dispatch.token)), body).apply_async()
        log.debug("%s batch %s: dispatched %d slice(s)", entry.function, dispatch.token, dispatch.count)

    # -- waiting -----------------------------------------------------------------

    def _wait(
        self,
        entry: ScriptEntry,
        dispatch: Dispatch,
        specs: Sequence[plan.JobSpec],
        event: threading.Event,
        *,
        check_first: bool,
    ) -> dict[str, TaskResult]:
        """Sleep on ``event`` (set when the batch's result is stored) and check.

        Only the batch's final result wakes a lane: it is stored once every
        slice has reported, success or failure. Slices that never report (a
        whole worker died, a slice was given up) are found by the check that
        runs at least every ``interval`` seconds.
        """
        wants = {s.uuid: s.wants_output for s in specs}
        interval = max(0.2, min(self.settings.lease_seconds, 5.0))
        broker_down_since: float | None = None
        if not check_first:
            event.wait(interval)
        while True:
            event.clear()
            try:
                done = self._check(entry, dispatch, wants)
                broker_down_since = None
            except redis.RedisError as exc:
                done = None
                broker_down_since = broker_down_since or self.now()
                if self.now() - broker_down_since > self._broker_patience(entry):
                    return self._fail_specs(specs, reason(Cause.BROKER_LOST, str(exc)))
            if done is not None:
                return done
            event.wait(interval)

    def _broker_patience(self, entry: ScriptEntry) -> float:
        """How long Redis may be unreachable before a waiting batch gives up."""
        return min(self.settings.queue_wait, (entry.options.time_limit or 0) + LIMIT_GRACE_SECONDS)

    def _check(
        self, entry: ScriptEntry, dispatch: Dispatch, wants: Mapping[str, bool]
    ) -> dict[str, TaskResult] | None:
        """The answer if the batch is settled (keeping an answer slot), else ``None``."""
        self.slots.take()
        try:
            done = self._settled(entry, dispatch, wants)
        except BaseException:
            self.slots.give_back()
            raise
        if done is None:
            self.slots.give_back()
        return done

    def _settled(
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
            return {r.uuid: r for r in _results_of(_collected_results(delivered))}
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
        return {u: _with_wants(r, wants[u]) for u, r in settled.items()}

    def _state_lost_at(self, dispatch: Dispatch, record: dict[str, Any] | None) -> float | None:
        """When Redis was found to have lost this batch's state; ``None`` if it has not.

        _plan writes the plan before any waiting, so a missing plan means Redis
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
                record = self._load_plan(dispatch.token) or record
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
            return {r.uuid: r for r in _results_of(part)}
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

    # -- answers -------------------------------------------------------------------

    def _complete(self, batch: Batch, found: Mapping[str, TaskResult]) -> list[TaskResult]:
        """One result per task of the request, in its order; never a gap."""
        results = []
        for task in batch.tasks:
            result = found.get(task.uuid)
            if result is None:
                result = failed_results([task.uuid], reason(Cause.WORKER_LOST, "no result came back"),
                                        clock=self.clock)[0]
            results.append(_with_wants(result, task.wants_output))
        return results

    def _stored_answer(self, token: str) -> dict[str, TaskResult] | None:
        self.slots.take()
        try:
            raw = self.redis.get(keys.answer_key(token))
        except redis.RedisError:
            raw = None
        if raw is None:
            self.slots.give_back()
            return None
        return {r.uuid: r for r in _results_of(json.loads(raw))}

    def _store_answer(self, token: str, results: Sequence[TaskResult]) -> None:
        """Keep the answer so a re-delivered batch is answered without re-running."""
        try:
            self.redis.set(keys.answer_key(token), json.dumps([r.to_json() for r in results]),
                           ex=int(self.settings.result_expires))
        except redis.RedisError as exc:
            log.warning("batch %s: answer not stored for re-delivery: %s", token, exc)


def _failed_by_amworker(result: TaskResult) -> bool:
    """True for a task amworker failed itself (see :func:`reason`), not its script."""
    return result.exit_code != 0 and (result.stderr or "").startswith(REASON_PREFIX)


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


def _results_of(items: Any) -> list[TaskResult]:
    if not isinstance(items, list):
        return []
    return [TaskResult.from_json(item) for item in items if isinstance(item, dict)]


def _with_wants(result: TaskResult, wants_output: bool) -> TaskResult:
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
