"""Settling a dispatched batch: what each of its slices came to.

A slice that stored its results is settled by them, whatever Celery says
of it afterwards (a pool process that died just after is reported lost:
the script's results are still true). A slice that never will
(its pool process or its whole worker died, its time limit passed, no worker
took it, Redis lost it) is given up: its tasks fail with the cause in stderr,
and an abandoned claim, plus a revoke where it may still be queued or
running, makes sure it can never start later.

Settling reads only small keys (Celery's envelopes, claims, leases) and
the head of each slice's results; the slices' results are fetched once,
afterwards, by :meth:`Settler.fetch`, unless the heads held them whole. What
one slice came to is the pure function :func:`decide`, and what the batch
came to the pure :func:`tally`; :class:`Settler` reads Redis before them and
carries out a give-up after.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import redis
from celery import Celery

from worker.batch.answers import Settlement, answer_record_settlement
from worker.batch.dispatch import Dispatch, SliceRef, decode_plan
from worker.codec.records import TaskResult
from worker.config import Settings
from worker.contract import keys, lifetimes, records
from worker.contract.lifetimes import LIMIT_GRACE_SECONDS
from worker.contract.plan import PlanRecord
from worker.contract.records import RecordError
from worker.contract.results import failed_results
from worker.contract.slices import SliceEnvelope, decode_outcome, decode_results
from worker.errors import Cause, reason
from worker.scripts.registry import ScriptEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GiveUp:
    """The slice is lost: fail its tasks with ``text`` (and revoke it, if it may still run)."""

    text: str
    revoke: bool
    #: Decided on finding no claim: a worker that claims the slice before the
    #: shim marks it abandoned has started it, and it is waited for instead.
    unclaimed: bool = False


#: How much of a batch's stored results the check that finds it finished
#: reads with its envelope, shared among its slices: all of a typical batch's
#: (a 128-task no-op batch's are 15 KB), while a lane that holds no answer
#: slot holds little (sixteen lanes: 1 MiB at most). Bigger results are
#: fetched in a slot.
PREFETCH_BYTES = 64 * 1024
#: Below this share per slice (a batch cut into more than 16 slices), nothing
#: is read ahead: the check would carry many commands for little.
PREFETCH_MIN_SHARE = 4 * 1024

#: What :func:`decide` says of a slice: still pending, finished, or given up.
Verdict = None | bool | GiveUp
PENDING: Verdict = None
FINISHED: Verdict = True


@dataclass(frozen=True)
class SliceState:
    """Everything Redis says about one slice, decoded."""

    meta: Mapping[str, Any] | None
    claim: Mapping[str, Any] | None
    leased: bool
    #: Its results are stored (under ``keys.outcome_key``): it finished.
    stored: bool = False


@dataclass(frozen=True)
class Deadlines:
    """The moments and limits a slice is judged against (wall-clock seconds)."""

    now: float
    dispatched_at: float
    queue_wait: float
    #: Hard time limit plus the pool's grace.
    limit: float
    lease_ttl: float
    queue: str
    #: When Redis was found to have lost the batch's state, if it did.
    lost_at: float | None = None
    #: When Redis last failed or stalled, as seen by this shim.
    trouble_at: float | None = None


def decide(state: SliceState, when: Deadlines) -> Verdict:
    """What one slice came to: ``PENDING``, ``FINISHED`` or a :class:`GiveUp`."""
    status = state.meta.get("status") if state.meta else None
    if state.stored or status == "SUCCESS":
        return FINISHED
    if status == "FAILURE" and state.meta is not None:
        return GiveUp(_failure_reason(state.meta), revoke=False)
    now, claim = when.now, state.claim
    if claim is None and when.lost_at is not None:
        # Redis restarted empty. A running slice's worker re-sets its lease
        # within one beat, and the slice may yet store its result: give it
        # one lease TTL. A slice still without a lease then went with the
        # queue: fail it now instead of waiting out queue_wait.
        if not state.leased and now - when.lost_at > when.lease_ttl:
            return GiveUp(reason(Cause.BROKER_LOST,
                                 "Redis lost this batch's state (restarted without persistence?); "
                                 "the slice's message went with it and is not re-run"),
                          revoke=True, unclaimed=True)
        if now - when.dispatched_at > when.queue_wait + when.limit:
            return GiveUp(reason(Cause.BROKER_LOST, "Redis lost this batch's state and the slice "
                                 f"never reported within {when.queue_wait + when.limit:.0f}s"),
                          revoke=True, unclaimed=True)
        return PENDING
    if claim is None:
        if now - when.dispatched_at > when.queue_wait:
            return GiveUp(reason(Cause.QUEUE_WAIT,
                                 f"no worker started this slice within {when.queue_wait:.0f}s "
                                 f"(is a worker consuming queue {when.queue!r}?)"),
                          revoke=True, unclaimed=True)
        return PENDING
    if claim.get("abandoned"):
        return GiveUp(_cut(str(claim.get("reason", reason(Cause.WORKER_LOST, "given up")))),
                      revoke=False)
    if not state.leased:
        if when.trouble_at is not None and now - when.trouble_at <= when.lease_ttl:
            # Redis was unreachable or stalled: the worker could not beat, and
            # its lease may have lapsed meanwhile. It gets one lease TTL from
            # Redis's return to set it again before it is called lost.
            return PENDING
        return GiveUp(reason(Cause.WORKER_LOST,
                             f"the Celery worker {claim.get('worker', '?')} running this slice "
                             "stopped renewing its lease; its tasks are not re-run"), revoke=False)
    started = _parse_time(claim.get("at"))
    if started is not None and now - started > when.limit:
        return GiveUp(reason(Cause.TIME_LIMIT, f"still running after {when.limit:.0f}s"), revoke=True)
    return PENDING


class BrokerTrouble:
    """When Redis last failed or stalled, shared by every lane of the shim.

    A lease can lapse only because its worker could not reach Redis or died;
    while Redis itself was away the two cannot be told apart, so each slice
    gets one lease TTL after Redis answers again (see :func:`decide`).
    """

    def __init__(self, *, stall: float, wallclock: Callable[[], float]) -> None:
        #: A round trip longer than this means Redis stalled (stopped, swapping).
        self.stall = stall
        self.now = wallclock
        self._lock = threading.Lock()
        self._failing = False
        self.last: float | None = None

    def failed(self) -> None:
        """A call to Redis failed."""
        with self._lock:
            self._failing = True
            self.last = self.now()

    def answered(self, started: float) -> None:
        """A call to Redis begun at ``started`` returned."""
        now = self.now()
        with self._lock:
            if self._failing or now - started > self.stall:
                self._failing = False
                self.last = now


@dataclass(frozen=True)
class Snapshot:
    """What one poll read of a dispatched batch from Redis, decoded (small keys only)."""

    #: Every slice's results are stored, or the batch's final envelope (the
    #: chord callback's, or the only slice's) says success.
    delivered: bool
    #: Each slice's state, in slice order (empty when ``delivered``).
    states: tuple[SliceState, ...] = ()
    #: The raw plan and answer record (``None`` when absent).
    planned: bytes | None = None
    answered: bytes | None = None
    #: Slices' stored results read with the final envelope (small ones), by slice id.
    prefetched: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class FinalRead:
    """The first read of a poll: the batch's final envelope and its slices' heads."""

    envelope: dict[str, Any] | None
    #: Slices' stored results small enough to be read whole, by slice id.
    small: dict[str, bytes]
    #: Ids of the slices whose results are stored; ``None`` if no head was read.
    stored: set[str] | None

    def delivered(self, dispatch: Dispatch) -> bool:
        """Every slice stored its results, or the final envelope says success."""
        if self.stored is not None and len(self.stored) == dispatch.count:
            return True
        return self.envelope is not None and self.envelope.get("status") == "SUCCESS"


class Settler:
    """Reads a dispatched batch's state from Redis and settles it, giving up on lost slices.

    Each poll is three steps: :meth:`_read` (Redis, small keys), the pure
    :func:`decide` per slice and :func:`tally`, and the effects of a slice
    given up (:meth:`_give_up`: abandoned claim, revoke, log).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        app: Celery,
        client: redis.Redis,
        clock: Callable[[], datetime],
        wallclock: Callable[[], float],
        trouble: BrokerTrouble | None = None,
    ) -> None:
        self.settings = settings
        # For revoking a slice given up on.
        self.app = app
        # Asked of Celery once, here: a string concatenation per key afterwards.
        self.result_prefix = keys.result_prefix(app.backend)
        self.redis = client
        self.clock = clock
        # Wall-clock seconds: dispatch times are shared between shim processes.
        self.now = wallclock
        self.trouble = trouble or BrokerTrouble(stall=settings.lease_seconds, wallclock=wallclock)

    def settled(self, entry: ScriptEntry, dispatch: Dispatch, wants: Mapping[str, bool],
                given_up: dict[str, dict[str, TaskResult]] | None = None) -> Settlement | None:
        """The batch's settlement if every slice has come to something, else ``None``.

        The final envelope (the chord callback's, or the only slice's) and
        the head of each slice's results are read first; the slices' other
        keys only when that did not deliver.
        ``given_up`` holds, across one wait's polls, the results of the slices
        already given up, by slice id: a slice killed for its time limit
        keeps its worker's claim, so without it every poll would revoke the
        slice and log it again until the rest of the batch settled.
        """
        given_up = {} if given_up is None else given_up
        snapshot = self._read(dispatch)
        if snapshot.delivered:
            return Settlement(finished=dispatch.slices, prefetched=snapshot.prefetched)
        if snapshot.answered is not None:
            # Another lane (a re-delivery attached alongside) answered the
            # batch and tidied its keys away; its record says where all is.
            with contextlib.suppress(RecordError):
                return answer_record_settlement(snapshot.answered)
        when = self._deadlines(entry, dispatch, snapshot.planned)
        verdicts = [decide(state, when) for state in snapshot.states]
        for i, (ref, verdict) in enumerate(zip(dispatch.slices, verdicts, strict=True)):
            if isinstance(verdict, GiveUp) and ref.task_id not in given_up:
                results = self._give_up(entry, ref, verdict)
                if results is None:
                    verdicts[i] = PENDING
                else:
                    given_up[ref.task_id] = results
        settlement = tally(dispatch.slices, verdicts, given_up, wants)
        if settlement is None:
            return None
        # Every slice read with a head stored its results, so it finished.
        return replace(settlement, prefetched=snapshot.prefetched)

    def _read(self, dispatch: Dispatch) -> Snapshot:
        """One poll's reads, noting Redis's failures and stalls in :attr:`trouble`."""
        started = self.now()
        try:
            final = self._read_final(dispatch)
            if final.delivered(dispatch):
                self.trouble.answered(started)
                return Snapshot(delivered=True, prefetched=final.small)
            pipe = self.redis.pipeline(transaction=False)
            pipe.mget([self.result_prefix + s.task_id for s in dispatch.slices])
            pipe.mget([keys.claim_key(s.task_id) for s in dispatch.slices])
            pipe.mget([keys.lease_key(s.task_id) for s in dispatch.slices])
            pipe.get(keys.plan_key(dispatch.token))
            pipe.get(keys.answer_key(dispatch.token))
            if final.stored is None:
                # No heads were read (too many slices): whether each stored
                # its results is asked here, one small reply each.
                for ref in dispatch.slices:
                    pipe.exists(keys.outcome_key(ref.task_id))
            metas, claims, leases, planned, answered, *exist = pipe.execute()
        except redis.RedisError:
            self.trouble.failed()
            raise
        self.trouble.answered(started)
        stored = final.stored if final.stored is not None else {
            ref.task_id for ref, found in zip(dispatch.slices, exist, strict=True) if found}
        read = zip(dispatch.slices, metas, claims, leases, strict=True)
        states = tuple(SliceState(_decode(meta), _decode(claim), lease is not None, ref.task_id in stored)
                       for ref, meta, claim, lease in read)
        # The heads read with the final envelope are kept: results are
        # stored once, and only by a slice that finished.
        return Snapshot(delivered=False, states=states, planned=planned, answered=answered,
                        prefetched=final.small)

    def _read_final(self, dispatch: Dispatch) -> FinalRead:
        """The final envelope, and the head of each slice's results, in one round trip.

        A worker stores a slice's results before its envelope, and the chord
        callback runs after every slice's: an envelope that says success
        finds them all stored. Each slice gets an equal share of
        :data:`PREFETCH_BYTES` and only that much is read: a waiting lane
        holds no answer slot, so it must not hold a big output (those are
        fetched in a slot). A batch cut into so many slices that a share is
        below :data:`PREFETCH_MIN_SHARE` reads no heads.
        """
        share = PREFETCH_BYTES // max(1, dispatch.count)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.result_prefix + dispatch.done_id)
        if share >= PREFETCH_MIN_SHARE:
            for ref in dispatch.slices:
                pipe.getrange(keys.outcome_key(ref.task_id), 0, share - 1)
        meta, *heads = pipe.execute()
        if not heads:
            return FinalRead(_decode(meta), {}, None)
        read = list(zip(dispatch.slices, heads, strict=True))
        small = {ref.task_id: head for ref, head in read if 0 < len(head) < share}
        return FinalRead(_decode(meta), small, stored={ref.task_id for ref, head in read if head})

    def _deadlines(self, entry: ScriptEntry, dispatch: Dispatch, planned: bytes | None) -> Deadlines:
        """What this poll judges the batch's slices against."""
        return Deadlines(
            now=self.now(), dispatched_at=dispatch.dispatched_at, queue_wait=self.settings.queue_wait,
            limit=(entry.options.time_limit or self.settings.time_limit) + LIMIT_GRACE_SECONDS,
            lease_ttl=lifetimes.lease_ttl(self.settings), queue=str(entry.options.queue),
            lost_at=self._state_lost_at(entry, dispatch, planned), trouble_at=self.trouble.last)

    def read_heads(self, settlement: Settlement) -> Settlement:
        """``settlement`` with the first stored value of every finished slice read, in one round trip.

        Those the check read already are kept. A slice whose value is gone,
        or a Redis error, leaves it to :meth:`fetch`, which says why per slice.
        """
        unread = [ref.task_id for ref in settlement.finished if ref.task_id not in settlement.prefetched]
        if not unread:
            return settlement
        try:
            values = self.redis.mget([keys.outcome_key(task_id) for task_id in unread])
        except redis.RedisError:
            return settlement
        read = {task_id: value for task_id, value in zip(unread, values, strict=True)
                if isinstance(value, bytes)}
        return replace(settlement, prefetched={**settlement.prefetched, **read})

    def fetch(self, settlement: Settlement) -> dict[str, TaskResult]:
        """The settled batch's results: each finished slice's, fetched once, and the failed ones."""
        found: dict[str, TaskResult] = {}
        for ref in settlement.finished:
            found.update(self._fetch_slice(ref, settlement.prefetched.get(ref.task_id)))
        found.update(settlement.failed)
        return found

    def _fetch_slice(self, ref: SliceRef, prefetched: bytes | None = None) -> dict[str, TaskResult]:
        """One finished slice's results (read already, or now), or its tasks failed with why."""
        raw: bytes | str | None = prefetched
        try:
            if raw is None:
                raw = self.redis.get(keys.outcome_key(ref.task_id))
            results = self._stored_results(ref, raw) if raw is not None else self._inline_results(ref)
        except redis.RedisError as exc:
            return self._lost(ref, reason(Cause.BROKER_LOST, f"cannot fetch the slice's results: {exc}"))
        except RecordError as exc:
            return self._lost(ref, reason(Cause.INTERNAL,
                                          f"the slice's stored results are unreadable: {exc}"))
        if results is None:
            return self._lost(ref, reason(
                Cause.BROKER_LOST, "the slice finished but its results are gone from Redis "
                "(evicted? check maxmemory-policy)"))
        return {r.uuid: r for r in results}

    def _stored_results(self, ref: SliceRef, first: bytes | str) -> list[TaskResult] | None:
        """The results under the slice's own key and the parts it names (rarely any);
        ``None`` if a part is gone."""
        results, more = decode_outcome(first)
        if not more:
            return results
        key = keys.outcome_more_key(ref.task_id)
        # Counted first: a first part naming parts that are not there costs
        # one command, whatever number it names.
        if self.redis.llen(key) != more:
            return None
        for index in range(more):
            # One part at a time: each is decoded and let go before the next is read.
            part = self.redis.lindex(key, index)
            if part is None:
                return None
            results += decode_results(part)
        return results

    def _inline_results(self, ref: SliceRef) -> list[TaskResult] | None:
        """Results a worker of an older amworker left inside Celery's result, if any.

        Such a worker (mid-upgrade) returns its results in its envelope
        instead of storing them under their own key.
        """
        try:
            meta = _decode(self.redis.get(self.result_prefix + ref.task_id))
        except redis.RedisError:
            return None
        result = meta.get("result") if meta else None
        if not isinstance(result, dict) or "results" not in result:
            return None
        inline = SliceEnvelope.from_json(result).inline
        return None if inline is None else list(inline)

    def _lost(self, ref: SliceRef, text: str) -> dict[str, TaskResult]:
        log.error("slice %s: %s", ref.task_id, text)
        return {r.uuid: r for r in failed_results(list(ref.uuids), text, clock=self.clock)}

    def _state_lost_at(self, entry: ScriptEntry, dispatch: Dispatch, planned: bytes | None) -> float | None:
        """When Redis was found to have lost this batch's state; ``None`` if it has not.

        Dispatcher.plan_slices writes the plan before any waiting, so a missing plan means Redis
        restarted empty (no persistence): queued messages and claims went too.
        The plan is written back, marked with the moment the loss was noticed,
        so a re-delivery of the batch attaches instead of sending it again.
        """
        record = decode_plan(planned) if planned is not None else None
        if record is None:
            record = PlanRecord(count=dispatch.count, at=dispatch.dispatched_at, sent=True,
                                lost_at=self.now())
            log.warning("batch %s: Redis lost its state (restarted without persistence?)",
                        dispatch.token)
            if not self.redis.set(keys.plan_key(dispatch.token), record.encode(), nx=True,
                                  ex=lifetimes.key_ttl(self.settings, entry.options.time_limit)):
                raw = self.redis.get(keys.plan_key(dispatch.token))
                record = (decode_plan(raw) if raw is not None else None) or record
        return record.lost_at

    def _give_up(self, entry: ScriptEntry, ref: SliceRef, verdict: GiveUp) -> dict[str, TaskResult] | None:
        """Fail a slice's tasks, and make sure it can never start later.

        ``None`` if the slice was given up for want of a claim and a worker
        claimed it meanwhile: it runs, and is waited for.
        """
        marker = json.dumps({"abandoned": True, "reason": verdict.text})
        marked = self.redis.set(keys.claim_key(ref.task_id), marker, nx=True,
                                ex=lifetimes.key_ttl(self.settings, entry.options.time_limit))
        if verdict.unclaimed and not marked:
            claim = _decode(self.redis.get(keys.claim_key(ref.task_id)))
            if claim is not None and not claim.get("abandoned"):
                log.info("slice %s: claimed by a worker as it was given up; waiting for it",
                         ref.task_id)
                return None
        if verdict.revoke:
            try:
                self.app.control.revoke(ref.task_id, terminate=True, signal="SIGKILL")
            except Exception as exc:  # noqa: BLE001 - kombu wraps broker faults in many types
                # Best effort: the abandoned claim above already stops a late
                # start; an escaping error here would WORK_FAIL the whole batch.
                log.warning("slice %s: revoke not sent: %s", ref.task_id, exc)
        log.warning("slice %s given up: %s", ref.task_id, verdict.text)
        return {r.uuid: r for r in failed_results(list(ref.uuids), verdict.text, clock=self.clock)}


def tally(slices: Sequence[SliceRef], verdicts: Sequence[Verdict],
          given_up: Mapping[str, Mapping[str, TaskResult]], wants: Mapping[str, bool]) -> Settlement | None:
    """The batch's settlement from its slices' verdicts; ``None`` while one is pending.

    ``given_up`` holds the results made for each slice given up, by slice id
    (every :class:`GiveUp` among ``verdicts`` has its entry); only the tasks
    in ``wants`` (the batch's own) are kept.
    """
    if any(verdict is PENDING for verdict in verdicts):
        return None
    finished: list[SliceRef] = []
    failed: dict[str, TaskResult] = {}
    for ref, verdict in zip(slices, verdicts, strict=True):
        if isinstance(verdict, GiveUp):
            failed.update((u, r) for u, r in given_up[ref.task_id].items() if u in wants)
        else:
            finished.append(ref)
    return Settlement(finished=tuple(finished), failed=failed)


def _decode(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        # Unreadable, even nested thousands deep: it must not fail the
        # batch's other slices.
        value = records.loads(raw, "a slice's record")
    except RecordError:
        return None
    return value if isinstance(value, dict) else None


#: Longest cause text taken from Redis into an answer. The same text goes
#: into every task of a slice, twice each (stderror, stderr), and into the
#: answer record: a long stored reason would be copied hundreds of times.
REASON_CHARS = 2000


def _cut(text: str) -> str:
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS] + " [cut]"


def _failure_reason(meta: Mapping[str, Any]) -> str:
    """Map Celery's stored exception to one of the causes an operator knows."""
    result = meta.get("result")
    exc_type = result.get("exc_type", "") if isinstance(result, dict) else ""
    message = result.get("exc_message", "") if isinstance(result, dict) else ""
    if isinstance(message, list):
        message = " ".join(str(m) for m in message[:16])
    exc_type, message = _cut(str(exc_type)), _cut(str(message))
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
