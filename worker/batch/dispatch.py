"""Sending a batch's slices to Celery, once, however often the batch arrives.

The first arrival records a plan in Redis (how many slices, since when) and
sends the slices as a chord whose callback combines them; a batch
re-delivered by gearmand finds the plan, derives the same ids and attaches to
the work under way instead of sending it again.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace

import redis
from amqp.exceptions import AMQPError
from celery import Celery, chord
from kombu import exceptions as kombu_errors

from worker.config import Settings
from worker.contract import keys, lifetimes, plan
from worker.contract.plan import PlanRecord
from worker.contract.records import RecordError
from worker.contract.slices import COLLECT, READY_FORMAT, RUN_SLICE, CollectMessage, SliceMessage
from worker.scripts.registry import ScriptEntry

log = logging.getLogger(__name__)

#: What the broker (not amworker) raises when it cannot be reached or refuses:
#: redis-py's errors, network errors (refused, reset, timed out, a name that
#: does not resolve), and kombu's wrappers around them when publishing. Not
#: every OSError: a missing file or a permission refused is amworker's own
#: fault, with its own cause. Anything else reaching a batch is a bug.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    redis.RedisError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    kombu_errors.OperationalError,
    kombu_errors.LimitExceeded,
    kombu_errors.InconsistencyError,
    # RabbitMQ's refusals (a connection limit, a vhost gone, a channel
    # closed by the server) come from py-amqp, not from kombu's own errors.
    AMQPError,
)


#: Record a batch's plan unless it was answered or planned, atomically, in the
#: one round trip a batch costs before its slices are sent. KEYS: plan,
#: answer record, and (optionally) the plan and answer keys of the token an
#: older shim gave the batch (keys.legacy_token); ARGV: the plan, its TTL in
#: seconds. Returns ``{RECORDED}``, ``{PLANNED, plan}`` (the plan found, read
#: in the same step: a GET after it could find the plan already dropped by a
#: lane that answered meanwhile), ``{ANSWERED, record}``, or ``{OLDER_KEYS}``
#: when the batch has no keys of its own but an older shim's keys exist:
#: those need reading in Python (an old answer may belong to an earlier batch
#: that reused the unique), so nothing is recorded.
PLAN_UNLESS_ANSWERED = """
local answered = redis.call('GET', KEYS[2])
if answered then return {2, answered} end
local planned = redis.call('GET', KEYS[1])
if planned then return {1, planned} end
if KEYS[4] and redis.call('EXISTS', KEYS[3], KEYS[4]) > 0 then return {3} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return {0}
"""
RECORDED, PLANNED, ANSWERED, OLDER_KEYS = 0, 1, 2, 3


class AnsweredMeanwhile(Exception):
    """The batch was answered already: re-delivered after its answer, or by another lane meanwhile.

    A plain ``SET NX`` of the plan would succeed once the lane answering the
    same batch has written its record and dropped the plan, and send the
    batch again. ``record`` is that answer record, read in the same step.
    """

    def __init__(self, token: str, record: bytes) -> None:
        super().__init__(token)
        self.record = record


class LookUpFirst(Exception):
    """The batch must be looked up the long way before it is answered (worker.batch.runner).

    Raised when the batch has no keys under its token but has some under the
    token an older shim gave it: mid-upgrade, that shim may have dispatched
    or answered it, or a new batch may reuse the unique, and only reading
    those keys tells. Nothing was recorded.
    """


#: The most slices whose every result wakes the batch's lane (see
#: ``Dispatch.wake_ids``): a slice per core of a big host, and at most 16
#: looks (one per slice's stored results) of 16 slices' keys each.
WAKE_ON_SLICES_UP_TO = 16


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

    @property
    def wake_ids(self) -> tuple[str, ...]:
        """The ids whose stored results are worth a look: every slice's and the final one.

        A slice's stored results (announced on their own channel) wake the
        lane; so does Celery's result for it, which a worker stores only for
        a failure (or a worker of an earlier release). The last slice to store
        its results settles the batch: the shim answers from them then,
        instead of waiting for Celery's bookkeeping and the chord callback's
        trip through the broker and a pool process (6-7 ms of a 32 MiB W3
        batch's 180 here, in a Redis MONITOR timeline). Each look reads
        every slice's keys, so a batch of more than
        :data:`WAKE_ON_SLICES_UP_TO` slices waits for the callback or the
        check every interval: a look per slice would cost it the square of
        its slices.
        """
        if self.count == 1 or self.count > WAKE_ON_SLICES_UP_TO:
            return (self.done_id,)
        return (*(ref.task_id for ref in self.slices), self.done_id)


class Dispatcher:
    """Plans a batch's slices, records the plan in Redis and sends the slices."""

    def __init__(
        self, *, settings: Settings, app: Celery, client: redis.Redis, wallclock: Callable[[], float]
    ) -> None:
        self.settings = settings
        self.app = app
        self.redis = client
        # Wall-clock seconds: dispatch times are shared between shim processes.
        self.now = wallclock
        self._record_plan = client.register_script(PLAN_UNLESS_ANSWERED)

    def plan_slices(
        self, entry: ScriptEntry, token: str, specs: list[plan.JobSpec], *, older: str | None = None
    ) -> tuple[Dispatch, list[list[plan.JobSpec]], bool]:
        """The batch's slices, recorded on first arrival; True if they must be sent.

        A re-delivered batch finds the record of its first arrival and reuses
        its slice count, so it computes the same ids and attaches to the work
        instead of sending it again. Raises :class:`AnsweredMeanwhile`, with
        the record, if the batch's answer record exists: it ran, and must not
        be sent again. Given ``older``, the token an older shim gave the
        batch, raises :class:`LookUpFirst` if the batch has no keys of its
        own but that token has some.
        """
        record = PlanRecord(count=plan.slice_count(entry.slices_wanted(), len(specs)), at=self.now())
        ttl = lifetimes.key_ttl(self.settings, entry.options.time_limit)
        names = [keys.plan_key(token), keys.answer_key(token)]
        if older is not None and older != token:
            names += [keys.plan_key(older), keys.answer_key(older)]
        outcome, *found = self._record_plan(keys=names, args=[record.encode(), ttl])
        if outcome == ANSWERED:
            raise AnsweredMeanwhile(token, found[0])
        if outcome == OLDER_KEYS:
            raise LookUpFirst(token)
        if outcome == PLANNED:
            record = self._earlier_plan(entry, token, len(specs), found[0]) or record
            if not record.sent:
                # Planned but never sent (the shim that planned it died
                # first): this lane sends it now, so its queue wait starts
                # now. Kept at the first arrival, every slice was given up
                # as "no worker started it" at the first check.
                record = replace(record, at=self.now())
        parts = plan.split(specs, record.count)
        slices = tuple(
            SliceRef(keys.slice_id(token, i, len(parts)), tuple(s.uuid for s in part))
            for i, part in enumerate(parts)
        )
        dispatch = Dispatch(token=token, count=len(parts), dispatched_at=record.at, slices=slices)
        return dispatch, parts, not record.sent

    def _earlier_plan(self, entry: ScriptEntry, token: str, jobs: int, raw: bytes) -> PlanRecord | None:
        """The plan the batch's first arrival recorded (``raw``), unless it is unreadable or absurd."""
        earlier = decode_plan(raw)
        if earlier is None:
            return None
        # No batch was ever cut into more slices than a batch may have
        # tasks; an absurd count would only cut millions of empty slices.
        if earlier.count > max(jobs, self.settings.max_batch_tasks):
            log.error("%s batch %s: the plan in Redis has %d slices, more than any batch; ignored",
                      entry.function, token, earlier.count)
            return None
        log.info("%s batch %s: re-delivered; attaching to the work under way", entry.function, token)
        return earlier

    def send(self, entry: ScriptEntry, dispatch: Dispatch, parts: list[list[plan.JobSpec]], *,
             answer_ready: bool = False) -> None:
        """Send the slices, then mark the plan as sent.

        ``answer_ready`` asks the workers to store each slice's results as
        its part of a JSON answer (for a JSON request).
        """
        self._send_chord(entry, dispatch, parts, answer_ready)
        record = PlanRecord(count=dispatch.count, at=dispatch.dispatched_at, sent=True)
        try:
            self.redis.set(keys.plan_key(dispatch.token), record.encode(),
                           ex=lifetimes.key_ttl(self.settings, entry.options.time_limit))
        except redis.RedisError as exc:
            # The slices are with the broker and will run: answering their
            # tasks "broker lost" now would tell the controller they failed.
            # The batch is waited for as any other; a re-delivery that finds
            # the plan unsent sends again, and each slice's claim keeps a
            # second message from running it twice.
            log.warning("%s batch %s: sent, but not marked sent in Redis: %s",
                        entry.function, dispatch.token, exc)

    def _send_chord(self, entry: ScriptEntry, dispatch: Dispatch, parts: list[list[plan.JobSpec]],
                    answer_ready: bool) -> None:
        options = entry.options
        # The entry planned for: a worker mapping the function to another
        # module refuses the slice (script mismatch). Headers, not
        # arguments: a worker of an older amworker (mid-upgrade) ignores
        # them, where an unknown argument would fail every slice with a
        # TypeError.
        headers = {keys.SCRIPT_HEADER: entry.script}
        if answer_ready:
            headers[keys.RESULTS_HEADER] = READY_FORMAT
        # A slice still queued when the shim gives up on it (queue_wait) must
        # never start later, even after its abandoned claim expired: the
        # worker drops a message past its expiry unrun.
        expires = self.settings.queue_wait + lifetimes.MARGIN_SECONDS
        messages = [
            SliceMessage(function=entry.function, batch=dispatch.token, index=i, count=dispatch.count,
                         jobs=tuple(part))
            for i, part in enumerate(parts)
        ]
        header = [
            self.app.signature(
                RUN_SLICE,
                kwargs=message.to_kwargs(),
                task_id=ref.task_id,
                headers=headers,
                queue=options.queue,
                time_limit=options.time_limit,
                soft_time_limit=options.soft_time_limit,
                expires=expires,
                # What Flower and the logs show instead of a wall of argv.
                shadow=f"{entry.function} slice {message.index + 1}/{dispatch.count}",
                kwargsrepr=message.repr_kwargs(),
            )
            for ref, message in zip(dispatch.slices, messages, strict=True)
        ]
        # Immutable: the callback needs nothing of the slices (their results
        # stay under their own keys), and collect's parameters are these
        # keyword arguments only: handed the slices' return values as well,
        # it would fail with a TypeError.
        collect = CollectMessage(function=entry.function, batch=dispatch.token,
                                 slices=tuple(ref.task_id for ref in dispatch.slices))
        body = self.app.signature(
            COLLECT,
            kwargs=collect.to_kwargs(),
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
            # Celery names the header's group itself: chord() unwraps a group
            # into its tasks, so an id set on it would be dropped. Nothing reads
            # the group id; the slices and the callback carry the batch's ids.
            chord(header, body).apply_async()
        log.debug("%s batch %s: dispatched %d slice(s)", entry.function, dispatch.token, dispatch.count)


def load_plan(client: redis.Redis, token: str) -> PlanRecord | None:
    """The batch's plan as recorded in Redis, or ``None`` if there is none."""
    raw = client.get(keys.plan_key(token))
    if raw is None:
        return None
    return decode_plan(raw)


def decode_plan(raw: bytes | str) -> PlanRecord | None:
    """A stored plan, or ``None`` if it is not one (logged: it is treated as absent)."""
    try:
        return PlanRecord.decode(raw)
    except RecordError as exc:
        log.error("unreadable plan in Redis, ignored: %s", exc)
        return None
