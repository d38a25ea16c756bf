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

Sending the slices (once, however often the batch arrives) is
:mod:`worker.dispatch`; deciding what each slice came to is
:mod:`worker.settling`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import redis
from celery import Celery

from worker import keys, logs, plan
from worker.argv import Paths, prepare_argv
from worker.causes import REASON_PREFIX, Cause, reason
from worker.config import Settings
from worker.dispatch import Dispatch, Dispatcher
from worker.errors import ArgvError, DecodeError
from worker.executor import failed_results, utcnow
from worker.metrics import BatchObserver, NullObserver
from worker.registry import Registry, ScriptEntry
from worker.settling import LIMIT_GRACE_SECONDS, Settler, results_of, with_wants
from worker.watcher import ResultWatcher
from worker.wire import Batch, TaskResult, TaskSpec, decode_request, encode_result

log = logging.getLogger(__name__)


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
        self.dispatcher = Dispatcher(settings=settings, app=app, client=client, wallclock=wallclock)
        self.settler = Settler(settings=settings, app=app, client=client, clock=clock,
                               wallclock=wallclock)
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
        if entry is None or not entry.importable:
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

    def _fail(self, tasks: Sequence[TaskSpec | plan.JobSpec], text: str) -> dict[str, TaskResult]:
        """Exit code 1 and ``text`` for tasks that cannot run (read or prepared ones)."""
        wants = {t.uuid: t.wants_output for t in tasks}
        return {r.uuid: r for r in failed_results(list(wants), text, wants_output=wants.__getitem__,
                                                   clock=self.clock)}

    # -- dispatching -----------------------------------------------------------

    def _execute(self, entry: ScriptEntry, token: str, specs: list[plan.JobSpec]) -> dict[str, TaskResult]:
        try:
            dispatch, parts, fresh = self.dispatcher.plan_slices(entry, token, specs)
            # Listen before sending: a fast slice must not finish unheard.
            with self.watcher.watching([dispatch.done_id]) as event:
                if fresh:
                    self.dispatcher.send(entry, dispatch, parts)
                return self._wait(entry, dispatch, specs, event, check_first=not fresh)
        except (redis.RedisError, OSError) as exc:
            log.error("%s batch %s: cannot dispatch: %s", entry.function, token, exc)
            return self._fail(specs, reason(Cause.BROKER_LOST, f"cannot reach the broker: {exc}"))
        except Exception as exc:  # noqa: BLE001 - kombu wraps broker faults in many types
            log.exception("%s batch %s: cannot dispatch", entry.function, token)
            return self._fail(specs, reason(Cause.BROKER_LOST, f"cannot dispatch: {exc!r}"))

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
                    return self._fail(specs, reason(Cause.BROKER_LOST, str(exc)))
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
            done = self.settler.settled(entry, dispatch, wants)
        except BaseException:
            self.slots.give_back()
            raise
        if done is None:
            self.slots.give_back()
        return done

    # -- answers -------------------------------------------------------------------

    def _complete(self, batch: Batch, found: Mapping[str, TaskResult]) -> list[TaskResult]:
        """One result per task of the request, in its order; never a gap."""
        results = []
        for task in batch.tasks:
            result = found.get(task.uuid)
            if result is None:
                result = failed_results([task.uuid], reason(Cause.WORKER_LOST, "no result came back"),
                                        clock=self.clock)[0]
            results.append(with_wants(result, task.wants_output))
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
        return {r.uuid: r for r in results_of(json.loads(raw))}

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
