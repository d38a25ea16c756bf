"""Answering one batch: decode, plan, dispatch (or attach), wait, assemble.

This is the shim's logic with the sockets taken out: :meth:`BatchRunner.answer`
takes the Gearman function, ``unique`` and payload and returns the bytes of a
``WORK_COMPLETE`` (or ``None`` for a payload that cannot be read at all, which
the shim answers with ``WORK_FAIL``).

Every task UUID that arrives gets a result, always: the script's own, or exit
code 1 with the cause in stderr. The answer is assembled from each slice's
stored results: on the happy path as soon as the last slice reports (or the
chord callback does, for a batch of more than 16 slices); when a slice is
lost (its process or its whole worker died, its time limit passed, the broker
went away) the chord never fires, and the runner answers from what each slice
reached.

Sending the slices (once, however often the batch arrives) is
:mod:`worker.batch.dispatch`; deciding what each slice came to is
:mod:`worker.batch.settling`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime

import redis
from celery import Celery

from worker import logs
from worker.batch.answers import (
    Settlement,
    answer_record,
    answer_record_settlement,
    answers_tasks,
    joinable,
    ready_answer,
)
from worker.batch.dispatch import BROKER_ERRORS, AnsweredMeanwhile, Dispatch, Dispatcher, LookUpFirst
from worker.batch.gearman_loop import Reply
from worker.batch.intake import prepare_batch
from worker.batch.metrics import BatchObserver, NullObserver
from worker.batch.settling import BrokerTrouble, Settler
from worker.batch.watcher import ResultWatcher
from worker.codec.argv import Paths
from worker.codec.limits import Limits
from worker.codec.records import Batch, Encoding, TaskResult, TaskSpec
from worker.codec.wire import decode_request, encode_result
from worker.config import Settings
from worker.contract import keys, lifetimes, plan
from worker.contract.lifetimes import LIMIT_GRACE_SECONDS
from worker.contract.records import RecordError
from worker.contract.results import fail_tasks, failed_results, utcnow
from worker.contract.slices import failed_by_amworker, is_ready_form
from worker.errors import Cause, DecodeError, reason
from worker.scripts.registry import Registry, ScriptEntry

log = logging.getLogger(__name__)


class AnswerSlots:
    """Few lanes at a time may hold a fetched answer in memory.

    A lane's answer exists several times over while it is fetched, decoded
    and encoded (the Redis reply, the parsed JSON, the results, the encoded
    payload). Sixteen lanes finishing together would hold sixteen such sets;
    these slots keep it to a few, so the shim's peak memory is bounded by the
    slot count rather than by the number of lanes. A lane holds its slot from
    fetching its results until its answer is encoded; waiting never holds
    one. Taking and giving back are one ``with`` block, so no caller can
    leak a slot.
    """

    def __init__(self, count: int) -> None:
        self._semaphore = threading.BoundedSemaphore(count)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold a slot for the block (waiting for one if all are taken)."""
        with self._semaphore:
            yield


#: Lanes that may hold a fetched answer at once (see :class:`AnswerSlots`).
#: Decoding and encoding hold the GIL, so more slots would not answer
#: faster; two still let one lane's fetch wait on Redis while another
#: encodes (measured in bench/analysis.md, round twelve).
ANSWER_SLOTS = 2


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
        self.trouble = BrokerTrouble(stall=settings.lease_seconds, wallclock=wallclock)
        self.settler = Settler(settings=settings, app=app, client=client, clock=clock,
                               wallclock=wallclock, trouble=self.trouble)
        self.paths = Paths(
            shared_directory=settings.shared_directory,
            client_assets_directory=settings.client_assets_directory,
            client_scripts_directory=settings.client_scripts_directory,
            watch_directory=settings.watch_directory,
            rejected_directory=settings.rejected_directory,
        )
        self.limits = Limits(
            max_tasks=settings.max_batch_tasks,
            max_argument_bytes=settings.max_argument_bytes,
            max_batch_argument_bytes=settings.max_batch_argument_bytes,
        )

    # -- the entry point ------------------------------------------------------

    def answer(self, function: str, unique: str, payload: bytes) -> bytes | None:
        """The encoded answer to one batch, or ``None`` if it cannot be decoded.

        The batch's answer record is written before this returns.
        """
        reply = self.reply(function, unique, payload)
        if reply.then is not None:
            reply.then()
        return reply.data

    def reply(self, function: str, unique: str, payload: bytes) -> Reply:
        """The answer, and the answer record to write once it is on its way (the shim's lanes).

        Writing the record after the answer was handed to the Gearman loop
        takes its round trip off the controller's wait. Either order is safe:
        until the record is written the batch's plan and results stay, so a
        re-delivery attaches to them and gets the same answer.
        """
        started = time.monotonic()
        self.observer.batch_received(function)
        ok = False
        try:
            with logs.batch_context(function, unique or "-"):
                reply, ok = self._answer(function, unique, payload)
            return reply
        finally:
            self.observer.batch_answered(function, ok=ok, seconds=time.monotonic() - started)

    def _answer(self, function: str, unique: str, payload: bytes) -> tuple[Reply, bool]:
        """The reply, and whether every task got its script's own result."""
        try:
            batch = decode_request(payload, max_bytes=self.settings.max_payload_bytes,
                                   max_values=self.limits.max_values)
        except DecodeError as exc:
            self.observer.payload_refused(function)
            log.error("%s batch %s: payload refused, answering WORK_FAIL: %s",
                      function, unique or "-", exc)
            return Reply(None), False
        token = keys.batch_token(function, unique, payload, (t.uuid for t in batch.tasks))
        planned_as: str | None = token
        try:
            settlement, planned_as = self._settle_arrival(function, token, batch)
        except Exception as exc:  # noqa: BLE001 - the task UUIDs are known: answer each
            settlement = self._internal_error(function, token, batch, exc)
        with self.slots.held():
            try:
                joined = self._joined(function, batch, settlement)
                answer, ok = joined or self._encoded(batch, settlement)
            except Exception as exc:  # noqa: BLE001 - as above
                settlement = self._internal_error(function, token, batch, exc)
                answer, ok = self._encoded(batch, settlement)
        if planned_as is None:
            return Reply(answer), ok
        # The record needs no results: what was read is let go before the
        # answer is sent, not after.
        record = functools.partial(self._record, function, unique, token, planned_as,
                                   dataclasses.replace(settlement, prefetched={}))
        return Reply(answer, then=record), ok

    def _joined(self, function: str, batch: Batch, settlement: Settlement) -> tuple[bytes, bool] | None:
        """The answer joined from the slices' parts (:func:`ready_answer`), if it can be.

        The slices' values are all read at once only when none read already
        rules it out, and let go again when it cannot: the answer the long
        way then reads each slice as it decodes it.
        """
        if not joinable(batch, settlement) or not all(
                is_ready_form(raw) for raw in settlement.prefetched.values()):
            return None
        joined = ready_answer(batch, self.settler.read_heads(settlement))
        if joined is not None:
            self.observer.answer_joined(function)
        return joined

    def _encoded(self, batch: Batch, settlement: Settlement) -> tuple[bytes, bool]:
        """The answer encoded from every result, and whether each is its script's own."""
        results = self.assemble(batch, settlement)
        return encode_result(results, batch.encoding), not any(map(failed_by_amworker, results))

    def _record(self, function: str, unique: str, token: str, planned_as: str,
                settlement: Settlement) -> None:
        """Write the answer record, logging under the batch as its answer did."""
        with logs.batch_context(function, unique or "-"):
            self._answered(function, token, settlement, planned_as=planned_as)

    def _settle_arrival(self, function: str, token: str, batch: Batch) -> tuple[Settlement, str | None]:
        """The batch's settlement, and the token it was planned as.

        :meth:`settle`, then the look-up if it asks for it. The token is an
        older shim's when the batch was found under it
        (:meth:`_look_up`); ``None`` when nothing may be recorded: the look-up
        failed, and this lane neither ran the batch nor found its answer.
        """
        try:
            return self.settle(function, token, batch, looked_up=False), token
        except LookUpFirst:
            pass  # looked up below, outside the handler: later tracebacks are not chained to it
        try:
            planned_as, earlier = self._look_up(token, batch)
        except redis.RedisError as exc:
            # Not knowing whether an older shim ran the batch, it must not
            # run now. Nothing is recorded either, so a re-delivery looks
            # again once Redis answers.
            log.error("%s batch %s: cannot look it up in Redis: %s", function, token, exc)
            return Settlement(failed=self._fail(batch.tasks, reason(
                Cause.BROKER_LOST, f"cannot look the batch up in Redis: {exc!r}"))), None
        return self.settle(function, planned_as, batch, earlier), planned_as

    def settle(self, function: str, token: str, batch: Batch, earlier: bytes | None = None, *,
               looked_up: bool = True) -> Settlement:
        """Run (or attach to, or recall) the batch until every task has come to something.

        ``earlier`` is the batch's answer record if it was answered before
        (see :meth:`_look_up`). Without that look-up first (``looked_up``
        false, the common case), the round trip that records the batch's
        plan finds its answer record instead (:class:`AnsweredMeanwhile`),
        and :class:`LookUpFirst` is raised when the look-up is needed after
        all: for an older shim's keys, or before answering without running
        anything (an unknown script, every task refused), so that a batch
        answered before is answered as it was, never failed anew. Holds no
        answer slot and no results: what comes back is small.
        """
        if earlier is not None:
            log.info("%s batch %s: re-delivered after it was answered; answering again",
                     function, token)
            return self._recalled(token, earlier)
        entry = self.registry.get(function)
        if entry is None or not entry.importable:
            if not looked_up:
                raise LookUpFirst(token)
            detail = entry.import_error if entry else f"no script is registered for {function!r}"
            return Settlement(failed=self._fail(batch.tasks, reason(Cause.IMPORT_FAILED, str(detail))))
        specs, refused = self._prepare(batch.tasks)
        if not specs:
            if not looked_up:
                raise LookUpFirst(token)
            return Settlement(failed=refused)
        older = None if looked_up else keys.legacy_token(token)
        try:
            settled = self._execute(entry, token, specs, answer_ready=batch.encoding is Encoding.JSON,
                                    older=older)
        except AnsweredMeanwhile as answered:
            # As it was answered: tasks refused now (a shim restarted with
            # other limits) ran then, and keep the results they had.
            log.info("%s batch %s: answered before (re-delivered, or answered by another lane "
                     "meanwhile); answering again from its record", function, token)
            return self._recalled(token, answered.record)
        return dataclasses.replace(settled, failed={**refused, **settled.failed})

    def _look_up(self, token: str, batch: Batch) -> tuple[str, bytes | None]:
        """The token the batch goes by and its answer record if it was answered: one round trip.

        Taken only when :class:`LookUpFirst` asks for it; raises redis-py's
        error if Redis cannot be read. A shim of an older amworker keyed a
        batch by ``function:unique`` alone (:func:`keys.legacy_token`). A
        batch it dispatched or answered, handed back to this shim by gearmand
        mid-upgrade, has neither plan nor answer under ``token``; its keys
        under the old token are attached to instead of running it again. An
        old answer that lacks this batch's tasks belongs to an earlier batch
        that reused the unique: a new batch.
        """
        legacy = keys.legacy_token(token)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.answer_key(token))
        if legacy != token:
            pipe.exists(keys.plan_key(token))
            pipe.get(keys.answer_key(legacy))
            pipe.exists(keys.plan_key(legacy))
        found = pipe.execute()
        answered = found[0]
        if answered is not None or legacy == token:
            return token, answered
        planned, legacy_answered, legacy_planned = found[1:]
        if planned:
            return token, None
        if legacy_answered is not None and answers_tasks(legacy_answered, (t.uuid for t in batch.tasks)):
            log.info("batch %s: answered by an older shim as %s; answering again", token, legacy)
            return legacy, legacy_answered
        if legacy_answered is None and legacy_planned:
            log.info("batch %s: dispatched by an older shim as %s; attaching", token, legacy)
            return legacy, None
        return token, None

    def _internal_error(self, function: str, token: str, batch: Batch, exc: Exception) -> Settlement:
        """Every task failed with a bug's cause (logged with its traceback)."""
        log.error("%s batch %s: internal error; answering every task with it", function, token,
                  exc_info=exc)
        text = reason(Cause.INTERNAL, f"{exc!r} (see the shim's log)")
        return Settlement(failed=self._fail(batch.tasks, text))

    def assemble(self, batch: Batch, settlement: Settlement) -> list[TaskResult]:
        """Fetch the settled batch's results (hold an answer slot) in request order."""
        return self._complete(batch, self.settler.fetch(settlement), settlement.missing)

    # -- preparing -------------------------------------------------------------

    def _prepare(self, tasks: Sequence[TaskSpec]) -> tuple[list[plan.JobSpec], dict[str, TaskResult]]:
        """Argv for the tasks that can run; ``payload refused`` for the others."""
        prepared = prepare_batch(tasks, limits=self.limits, paths=self.paths, now=self.clock())
        by_problem: dict[str, list[TaskSpec]] = {}
        for task, problem in prepared.refused:
            by_problem.setdefault(problem, []).append(task)
        refused: dict[str, TaskResult] = {}
        for problem, alike in by_problem.items():
            refused.update(self._fail(alike, reason(Cause.PAYLOAD_REFUSED, problem)))
        return prepared.specs, refused

    def _fail(self, tasks: Sequence[TaskSpec | plan.JobSpec], text: str) -> dict[str, TaskResult]:
        """Exit code 1 and ``text`` for tasks that cannot run (read or prepared ones)."""
        return fail_tasks(tasks, text, clock=self.clock)

    # -- dispatching -----------------------------------------------------------

    def _execute(self, entry: ScriptEntry, token: str, specs: list[plan.JobSpec], *,
                 answer_ready: bool = False, older: str | None = None) -> Settlement:
        try:
            dispatch, parts, fresh = self.dispatcher.plan_slices(entry, token, specs, older=older)
            # Listen before sending: a fast slice must not finish unheard.
            with self.watcher.watching(dispatch.wake_ids) as event:
                if fresh:
                    self.dispatcher.send(entry, dispatch, parts, answer_ready=answer_ready)
                return self._wait(entry, dispatch, specs, event, check_first=not fresh)
        except (AnsweredMeanwhile, LookUpFirst):
            raise  # for settle, and the caller that looks the batch up and settles it again
        except BROKER_ERRORS as exc:
            log.error("%s batch %s: cannot dispatch: %s", entry.function, token, exc)
            return Settlement(failed=self._fail(
                specs, reason(Cause.BROKER_LOST, f"cannot reach the broker: {exc!r}")))
        except Exception as exc:  # noqa: BLE001 - a bug must still answer every task
            log.exception("%s batch %s: internal error while running it", entry.function, token)
            text = reason(Cause.INTERNAL, f"{exc!r} (see the shim's log)")
            return Settlement(failed=self._fail(specs, text))

    # -- waiting -----------------------------------------------------------------

    def _wait(
        self,
        entry: ScriptEntry,
        dispatch: Dispatch,
        specs: Sequence[plan.JobSpec],
        event: threading.Event,
        *,
        check_first: bool,
    ) -> Settlement:
        """Sleep on ``event`` (set when a slice's or the batch's result is stored) and check.

        Each slice's result wakes the lane (``Dispatch.wake_ids``): once the
        last one is stored, the check finds every slice finished and the
        batch is answered without waiting for the chord callback. Slices that
        never report (a whole worker died, a slice was given up) are found by
        the check that runs at least every ``interval`` seconds.
        """
        wants = {s.uuid: s.wants_output for s in specs}
        interval = max(0.2, min(self.settings.lease_seconds, 5.0))
        broker_down_since: float | None = None
        # Slices given up on are handled (claim marked, revoked, logged) once.
        given_up: dict[str, dict[str, TaskResult]] = {}
        if not check_first:
            event.wait(interval)
        while True:
            event.clear()
            try:
                done = self.settler.settled(entry, dispatch, wants, given_up)
                broker_down_since = None
            except redis.RedisError as exc:
                done = None
                broker_down_since = broker_down_since or self.now()
                if self.now() - broker_down_since > self._broker_patience(entry):
                    return Settlement(failed=self._fail(specs, reason(Cause.BROKER_LOST, str(exc))))
            if done is not None:
                return done
            event.wait(interval)

    def _broker_patience(self, entry: ScriptEntry) -> float:
        """How long Redis may be unreachable before a waiting batch gives up."""
        return min(self.settings.queue_wait, (entry.options.time_limit or self.settings.time_limit)
                   + LIMIT_GRACE_SECONDS)

    # -- answers -------------------------------------------------------------------

    def _complete(self, batch: Batch, found: Mapping[str, TaskResult], missing: str) -> list[TaskResult]:
        """One result per task of the request, in its order; never a gap."""
        results = []
        for task in batch.tasks:
            result = found.get(task.uuid)
            if result is None:
                result = failed_results([task.uuid], missing, clock=self.clock)[0]
            # As the request asked: a result recalled or made without the
            # task at hand (an answer record, a lost slice) may say otherwise.
            if result.wants_output != task.wants_output:
                result = dataclasses.replace(result, wants_output=task.wants_output)
            results.append(result)
        return results

    @staticmethod
    def _recalled(token: str, raw: bytes | str) -> Settlement:
        """The settlement in a re-delivered batch's answer record.

        The record is small: which slices' results to read, and the results
        amworker made itself. Unreadable, it still means the batch ran: its
        tasks are answered with the cause, never run again.
        """
        try:
            return answer_record_settlement(raw)
        except RecordError as exc:
            log.error("batch %s: stored answer unreadable, answering its tasks with the cause: %s",
                      token, exc)
            return Settlement(missing=reason(
                Cause.INTERNAL, f"this batch was answered before, but its stored answer is "
                f"unreadable ({exc}); it is not run again"))

    def _answered(self, function: str, token: str, settlement: Settlement, *,
                  planned_as: str | None = None) -> None:
        """Keep what a re-delivery needs, briefly; drop the rest of the batch's keys.

        gearmand hands a job back only when the connection drops before it
        read ``WORK_COMPLETE`` (docs/design.md). Kept: the answer record
        (small, as long as a claim), and the slices' results for
        :func:`lifetimes.redelivery_grace` (with each slice's Celery result,
        where a worker of an older release left them). Dropped now: the
        plan, the callback's result and the leases. The record always goes
        under the batch's own ``token``, even for a batch an older shim
        planned (``planned_as``, whose plan is dropped): a record under the
        older token could not tell a later batch reusing the unique that it
        is not that batch's.
        """
        planned_as = planned_as or token
        entry = self.registry.get(function)
        record_ttl = lifetimes.key_ttl(self.settings, entry.options.time_limit if entry else None)
        grace = lifetimes.redelivery_grace(self.settings, entry.options.time_limit if entry else None)
        ids = [ref.task_id for ref in settlement.finished]
        try:
            # One transaction: an attached lane never sees the keys gone
            # without the record that replaces them.
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(keys.answer_key(token), answer_record(settlement, self.now()), ex=record_ttl)
            meta = self.settler.result_prefix
            for task_id in ids:
                pipe.expire(keys.outcome_key(task_id), grace)
                # Rarely there (results too big for one value); a no-op otherwise.
                pipe.expire(keys.outcome_more_key(task_id), grace)
                # Usually absent too: Celery stores a slice's result only for
                # a failure, or with the results in it (a worker of an older
                # release), and then a re-delivery reads them there.
                pipe.expire(meta + task_id, grace)
            pipe.delete(keys.plan_key(planned_as), meta + keys.collect_id(planned_as),
                        *(keys.lease_key(i) for i in ids))
            pipe.execute()
        except redis.RedisError as exc:
            # Everything left has its own TTL; a re-delivery now re-attaches.
            log.warning("batch %s: answer not recorded for re-delivery: %s", token, exc)
