"""BatchRunner and its Settler in process, on a real Redis, driven by injected clocks.

Each test answers one batch in a thread (a shim lane) with a
:class:`~tests.integration.clocks.FakeClock` as the runner's wall clock, and
plays the Celery worker itself with the pool's own claim, lease and outcome
code (:class:`worker.pool.runtime.WorkerRuntime`) against the same Redis. No
Celery worker runs, so nothing happens unless the test does it, and no
deadline passes unless the test moves the clock: the lane is then checked
with :meth:`Polls.next` (the next check the lane makes), never by sleeping.

The worker side's lease lives 300 s (its own ``AMWORKER_LEASE_SECONDS``), so
it never lapses by itself during a test; a lease that lapses is deleted, which
is what its expiry looks like to the shim. The pure decision these tests drive
is table-tested in tests/unit/test_settling.py; these prove the wiring: the
clocks reach it, and its verdicts become answers, revokes and Redis keys.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from billiard.exceptions import WorkerLostError
from celery import Celery

from harness.controller import make_tasks
from harness.services import ROOT
from tests.integration.clocks import FakeClock, Lane, Polls
from worker.batch.answers import answer_record_settlement
from worker.batch.dispatch import Dispatch, SliceRef
from worker.batch.runner import BatchRunner
from worker.batch.settling import PREFETCH_BYTES
from worker.batch.watcher import ResultWatcher
from worker.celery import celery_config
from worker.codec.records import Encoding, TaskResult
from worker.codec.wire import encode_request
from worker.config import Settings
from worker.contract import keys, lifetimes
from worker.contract.lifetimes import LIMIT_GRACE_SECONDS
from worker.pool.runtime import WorkerRuntime
from worker.scripts.registry import load_registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

FUNCTION = "echo_v0.0"
WORKER = "w1@clock-test"
#: Far beyond any real duration of a test: only the fake clock can pass them.
QUEUE_WAIT = 600.0
TIME_LIMIT = 900.0


def _settings(redis_url: str, tmp_path: Path, **extra: str) -> Settings:
    return Settings.from_env({
        "AMWORKER_BROKER_URL": redis_url, "AMWORKER_RESULT_BACKEND": redis_url,
        "AMWORKER_MODULES_FILE": str(ROOT / "tests/fixture_scripts/modules.ini"),
        "AMWORKER_CLIENT_SCRIPTS_PACKAGE": "tests.fixture_scripts",
        "AMWORKER_SHARED_DIRECTORY": f"{tmp_path}/",
        "AMWORKER_QUEUE_WAIT": str(QUEUE_WAIT), "AMWORKER_TIME_LIMIT": str(TIME_LIMIT),
        **extra,
    })


@dataclass
class Shim:
    """One in-process shim lane's world: the runner, its clock, its checks, the revokes sent."""

    runner: BatchRunner
    clock: FakeClock
    polls: Polls
    worker: WorkerRuntime
    revoked: list[str]
    lanes: list[Lane] = field(default_factory=list)

    @property
    def redis(self) -> redis.Redis:
        return self.runner.redis

    def submit(self, *arguments: str) -> Batch:
        """Start a lane answering a new batch; return once it has sent it and checked once."""
        tasks = make_tasks(list(arguments))
        payload = encode_request(tasks, Encoding.JSON)
        unique = str(uuid.uuid4())
        token = keys.batch_token(FUNCTION, unique, payload, tasks)
        lane = Lane(self.runner, FUNCTION, unique, payload)
        self.lanes.append(lane)
        assert self.polls.next() is None, "a batch nobody ran settled at once"
        return Batch(lane=lane, token=token, slice_id=keys.slice_id(token, 0, 1), tasks=list(tasks))

    def claim(self, batch: Batch) -> float:
        """Start the batch's slice as a worker does (lease and claim); when it was claimed."""
        assert self.worker.claim(batch.slice_id, WORKER, FUNCTION)
        raw = self.redis.get(keys.claim_key(batch.slice_id))
        assert raw is not None
        return datetime.fromisoformat(json.loads(raw)["at"]).timestamp()

    def move(self, when: float) -> None:
        """Set the fake clock to ``when``, between two of the lane's checks."""
        with self.polls.held():
            self.clock.set(when)

    def finish(self) -> None:
        """End every lane a failed test left waiting: past every deadline, each one answers."""
        self.move(self.clock() + 100 * (QUEUE_WAIT + TIME_LIMIT))
        for lane in self.lanes:
            lane.join()

    def limit(self) -> float:
        """How long a claimed slice may run before the shim gives up on it."""
        entry = self.runner.registry.get(FUNCTION)
        assert entry is not None
        return (entry.options.time_limit or TIME_LIMIT) + LIMIT_GRACE_SECONDS


@dataclass
class Batch:
    """A batch a lane is answering: its one slice and its tasks."""

    lane: Lane
    token: str
    slice_id: str
    tasks: list[str]

    def stderr(self) -> str:
        """The one task's stderr, once the lane has answered (exit code 1 checked)."""
        (result,) = self.lane.results().values()
        assert result["exitCode"] == 1, result
        return str(result["stderror"])


@pytest.fixture
def shim(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shim]:
    """A BatchRunner on the fake clock (checking every 0.2 s) and a worker side on the same Redis."""
    # Checks every 0.2 s of real time; the shim's lease TTL is 1 s of fake time.
    settings = _settings(redis_url, tmp_path, AMWORKER_LEASE_SECONDS="0.2")
    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    client.flushdb()
    # Starts at the real time: the worker side stamps its claim with the real
    # clock (WorkerRuntime.claim), and the time limit counts from that stamp.
    clock = FakeClock(time.time())
    app = Celery("clock-test")
    app.conf.update(celery_config(settings))
    revoked: list[str] = []
    real_revoke = app.control.revoke

    def revoke(task_id: str, **options: Any) -> Any:
        # Passed through to the real broadcast; recorded to be asserted.
        revoked.append(task_id)
        return real_revoke(task_id, **options)

    monkeypatch.setattr(app.control, "revoke", revoke)
    watcher = ResultWatcher(client, prefixes=keys.wake_prefixes(app.backend))
    watcher.start()
    assert watcher.connected.wait(10), "the result watcher never subscribed"
    registry = load_registry(settings)
    runner = BatchRunner(settings=settings, registry=registry, app=app, client=client,
                         watcher=watcher, clock=clock.utc, wallclock=clock)
    polls = Polls(runner.settler.settled)
    monkeypatch.setattr(runner.settler, "settled", polls)
    worker = WorkerRuntime(settings=_settings(redis_url, tmp_path, AMWORKER_LEASE_SECONDS="100"),
                           registry=registry, redis=client)
    world = Shim(runner=runner, clock=clock, polls=polls, worker=worker, revoked=revoked)
    try:
        yield world
    finally:
        world.finish()
        watcher.stop()
        app.close()
        client.close()


def _no_revoke_failed(caplog: pytest.LogCaptureFixture) -> bool:
    return not any("revoke not sent" in r.getMessage() for r in caplog.records)


def test_a_slice_nobody_takes_is_given_up_when_the_clock_passes_the_queue_wait(
        shim: Shim, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    sent_at = shim.clock()
    batch = shim.submit("hello")

    shim.move(sent_at + QUEUE_WAIT)
    assert shim.polls.next() is None, "given up at the queue wait, not after it"
    assert batch.lane.running()
    shim.move(sent_at + QUEUE_WAIT + 1)

    (result,) = batch.lane.results().values()
    assert str(result["stderror"]).startswith(
        "amworker: not started in time: no worker started this slice within 600s")
    # Failed at the injected clock's moment, not the real one.
    assert result["finishedTimestamp"] == shim.clock.utc().isoformat()
    assert shim.revoked == [batch.slice_id] and _no_revoke_failed(caplog)
    # The abandoned marker stands where a claim would: a late start is refused.
    marker = json.loads(shim.redis.get(keys.claim_key(batch.slice_id)) or "{}")
    assert marker["abandoned"] is True and "not started in time" in marker["reason"]
    assert not shim.worker.claim(batch.slice_id, WORKER, FUNCTION)
    # The answer record is stamped by the injected clock, not the real one.
    record = json.loads(shim.redis.get(keys.answer_key(batch.token)) or "{}")
    assert record["at"] == sent_at + QUEUE_WAIT + 1


def test_a_slice_a_worker_claims_as_it_is_given_up_is_waited_for(
        shim: Shim, monkeypatch: pytest.MonkeyPatch) -> None:
    # The check reads no claim past the queue wait; a worker claims the slice
    # before the shim writes its abandoned marker. The slice runs: failing
    # its tasks (and revoking it) would answer for work that goes on.
    sent_at = shim.clock()
    batch = shim.submit("hello")
    read = shim.runner.settler._read
    claimed: list[float] = []

    def read_then_claimed(dispatch: Any) -> Any:
        snapshot = read(dispatch)
        if shim.clock() > sent_at + QUEUE_WAIT and not claimed:
            claimed.append(shim.claim(batch))
        return snapshot

    monkeypatch.setattr(shim.runner.settler, "_read", read_then_claimed)
    shim.move(sent_at + QUEUE_WAIT + 1)

    assert shim.polls.next() is None, "given up though a worker had claimed the slice"
    assert claimed and batch.lane.running()
    assert shim.revoked == []
    claim = json.loads(shim.redis.get(keys.claim_key(batch.slice_id)) or "{}")
    assert claim["worker"] == WORKER and not claim.get("abandoned")


def test_a_claimed_slice_whose_lease_lapses_is_worker_lost_and_not_revoked(shim: Shim) -> None:
    batch = shim.submit("hello")
    shim.claim(batch)
    shim.move(shim.clock() + QUEUE_WAIT + 1)
    assert shim.polls.next() is None, "a running slice is not judged by the queue wait"

    shim.redis.delete(keys.lease_key(batch.slice_id))  # its worker died: the lease lapsed

    assert batch.stderr().startswith(
        f"amworker: worker lost: the Celery worker {WORKER} running this slice stopped renewing "
        "its lease")
    assert shim.revoked == [], "a slice whose worker is gone has nothing to revoke"
    # The worker's claim stays: the slice never runs again.
    assert json.loads(shim.redis.get(keys.claim_key(batch.slice_id)) or "{}")["worker"] == WORKER


def test_a_lease_that_lapsed_while_redis_was_away_gets_one_lease_ttl(shim: Shim) -> None:
    batch = shim.submit("hello")
    shim.claim(batch)
    back = shim.clock() + 5
    shim.move(back)
    # A call to Redis failed (as the lane records it); the next check is
    # answered, so the grace runs from now: one lease TTL of the shim's.
    shim.runner.trouble.failed()
    shim.redis.delete(keys.lease_key(batch.slice_id))
    ttl = lifetimes.lease_ttl(shim.runner.settings)
    assert shim.polls.next() is None
    assert shim.runner.trouble.last == back

    shim.move(back + ttl)
    assert shim.polls.next() is None, "the lease may be renewed until one TTL has passed"
    assert batch.lane.running()
    shim.move(back + ttl + 0.5)

    assert batch.stderr().startswith("amworker: worker lost: the Celery worker")


def test_a_leased_slice_past_its_time_limit_is_given_up_and_revoked(
        shim: Shim, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    batch = shim.submit("hello")
    claimed_at = shim.claim(batch)
    shim.move(max(shim.clock(), claimed_at + shim.limit() - 1))
    assert shim.polls.next() is None
    shim.move(claimed_at + shim.limit() + 1)

    assert batch.stderr().startswith(f"amworker: time limit: still running after {shim.limit():.0f}s")
    assert shim.revoked == [batch.slice_id] and _no_revoke_failed(caplog)
    # The claim is the worker's (the marker is set only where none is).
    assert json.loads(shim.redis.get(keys.claim_key(batch.slice_id)) or "{}")["worker"] == WORKER


def test_a_finished_slice_settles_with_its_scripts_results(shim: Shim) -> None:
    batch = shim.submit("hello")
    shim.claim(batch)
    (task_id,) = batch.tasks
    finished_at = shim.clock.utc()
    # The pool's own write announces the results: the watcher wakes the
    # lane, no deadline involved, and Celery's envelope is not waited for.
    shim.worker.store_outcome(batch.slice_id, FUNCTION, [TaskResult(
        uuid=task_id, exit_code=0, finished_at=finished_at, stdout="ran once", stderr="")])

    results = batch.lane.results()

    assert results[task_id]["exitCode"] == 0 and results[task_id]["stdout"] == "ran once"
    assert shim.revoked == []
    # Answered: the plan and the lease are dropped, the record kept.
    assert not shim.redis.exists(keys.plan_key(batch.token), keys.lease_key(batch.slice_id))
    record = json.loads(shim.redis.get(keys.answer_key(batch.token)) or "{}")
    assert record["at"] == shim.clock()


def test_a_slice_whose_pool_process_died_is_worker_lost_at_once(shim: Shim) -> None:
    batch = shim.submit("hello")
    shim.claim(batch)
    # What Celery stores when the pool process running a task is killed.
    shim.runner.app.backend.mark_as_failure(
        batch.slice_id, WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL)."))

    assert batch.stderr().startswith(
        "amworker: worker lost: the pool process running this slice died (Worker exited "
        "prematurely: signal 9 (SIGKILL).)")
    assert shim.revoked == []


def test_a_slice_whose_state_redis_lost_is_given_up_one_lease_ttl_after_the_loss(
        shim: Shim, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    batch = shim.submit("hello")
    lost_at = shim.clock() + 10
    shim.move(lost_at)
    shim.redis.flushdb()  # Redis restarted without persistence: plan and message are gone

    assert shim.polls.next() is None
    # The loss is written back with the moment it was noticed, for other lanes.
    plan = json.loads(shim.redis.get(keys.plan_key(batch.token)) or "{}")
    assert plan["lost_at"] == lost_at and plan["sent"] is True
    ttl = lifetimes.lease_ttl(shim.runner.settings)
    shim.move(lost_at + ttl)
    assert shim.polls.next() is None, "a running slice's worker may re-set its lease meanwhile"
    shim.move(lost_at + ttl + 0.5)

    assert batch.stderr().startswith("amworker: broker lost: Redis lost this batch's state")
    assert shim.revoked == [batch.slice_id] and _no_revoke_failed(caplog)


def _finished(shim: Shim, *outputs: str) -> tuple[Dispatch, list[str]]:
    """A batch of one task per slice, every slice finished (results, then envelopes, as
    workers store them, then the chord callback's envelope when there are several)."""
    token = f"{FUNCTION}:{uuid.uuid4()}:digest"
    count = len(outputs)
    task_ids = make_tasks(["x"] * count)
    refs = []
    for index, (task_id, stdout) in enumerate(zip(task_ids, outputs, strict=True)):
        slice_id = keys.slice_id(token, index, count)
        shim.worker.store_outcome(slice_id, FUNCTION, [TaskResult(
            uuid=task_id, exit_code=0, finished_at=shim.clock.utc(), stdout=stdout, stderr="")])
        refs.append(SliceRef(slice_id, (task_id,)))
    if count > 1:
        shim.runner.app.backend.store_result(keys.collect_id(token), {
            "function": FUNCTION, "batch": token, "slices": count}, "SUCCESS")
    return Dispatch(token=token, count=count, dispatched_at=shim.clock(), slices=tuple(refs)), \
        list(task_ids)


@pytest.mark.parametrize("outputs", [("small",), ("left", "right")], ids=["one slice", "a chord"])
def test_small_results_come_with_the_check_that_finds_the_batch_finished(
        shim: Shim, outputs: tuple[str, ...]) -> None:
    # Issue 11's "a single result fetch": the slices' results are read in
    # the same round trip as the final envelope, and not read again.
    entry = shim.runner.registry.get(FUNCTION)
    assert entry is not None
    dispatch, task_ids = _finished(shim, *outputs)

    settlement = shim.runner.settler.settled(entry, dispatch, dict.fromkeys(task_ids, True))

    assert settlement is not None
    assert set(settlement.prefetched) == {ref.task_id for ref in dispatch.slices}
    for ref in dispatch.slices:  # a second read would find nothing
        shim.redis.delete(keys.outcome_key(ref.task_id))
    found = shim.runner.settler.fetch(settlement)
    assert [found[t].stdout for t in task_ids] == list(outputs)


def test_big_results_are_left_for_the_answer_slot(shim: Shim) -> None:
    # A waiting lane holds no answer slot, so it must not hold a big output.
    entry = shim.runner.registry.get(FUNCTION)
    assert entry is not None
    dispatch, (task_id,) = _finished(shim, "x" * PREFETCH_BYTES)
    (ref,) = dispatch.slices

    settlement = shim.runner.settler.settled(entry, dispatch, {task_id: True})

    assert settlement is not None and settlement.prefetched == {}
    assert len(shim.runner.settler.fetch(settlement)[task_id].stdout) == PREFETCH_BYTES
    # Read in the slot, not before: gone by then, the results are reported lost.
    shim.redis.delete(keys.outcome_key(ref.task_id))
    lost = shim.runner.settler.fetch(settlement)[task_id]
    assert lost.exit_code == 1 and "gone from Redis" in lost.stderr


def _store_in_parts(shim: Shim, batch: Batch) -> dict[str, str]:
    """Store the batch's results as a worker does when they exceed one Redis value
    (cut at 1 KiB here, where the real cut is 64 MiB); their stdout by task."""
    outputs = {task_id: f"{task_id} " + "\x01" * 200 for task_id in batch.tasks}
    shim.redis.config_resetstat()
    shim.worker.store_outcome(batch.slice_id, FUNCTION, [
        TaskResult(uuid=task_id, exit_code=0, finished_at=shim.clock.utc(), stdout=stdout, stderr="")
        for task_id, stdout in outputs.items()], part_chars=1024)
    parts = shim.redis.llen(keys.outcome_more_key(batch.slice_id))
    assert parts >= 2, "not stored in parts"
    # One command a part and no transaction: Redis 7.4 and later count what a
    # MULTI queues against the client's input limit, which the parts may pass.
    calls = {name: stats["calls"] for name, stats in shim.redis.info("commandstats").items()}
    assert calls.get("cmdstat_rpush") == parts and "cmdstat_multi" not in calls, calls
    return outputs


def test_results_too_big_for_one_redis_value_are_stored_in_parts_and_answered_whole(
        shim: Shim) -> None:
    # Redis refuses a value over 512 MB, and a slice's output can be more:
    # before, the whole slice's results were lost with the write.
    batch = shim.submit(*["x"] * 6)
    shim.claim(batch)
    # The stored results wake the lane: no check (nor its answer record's
    # MULTI) until the helper has read Redis's command counts.
    with shim.polls.held():
        outputs = _store_in_parts(shim, batch)

    results = batch.lane.results()

    assert {task_id: r["stdout"] for task_id, r in results.items()} == outputs
    # Kept for a re-delivery as long as the first part, and read back whole from the record.
    more_ttl = shim.redis.ttl(keys.outcome_more_key(batch.slice_id))
    assert 0 < more_ttl <= lifetimes.redelivery_grace(shim.runner.settings, None)
    record = shim.redis.get(keys.answer_key(batch.token))
    assert record is not None
    found = shim.runner.settler.fetch(answer_record_settlement(record))
    assert {task_id: r.stdout for task_id, r in found.items()} == outputs


def test_a_part_gone_from_redis_fails_the_slices_tasks_with_the_cause(shim: Shim) -> None:
    batch = shim.submit(*["x"] * 6)
    shim.claim(batch)
    # The stored results wake the lane: it reads them only after the eviction.
    with shim.polls.held():
        _store_in_parts(shim, batch)
        shim.redis.delete(keys.outcome_more_key(batch.slice_id))  # evicted

    results = batch.lane.results()

    assert {r["exitCode"] for r in results.values()} == {1}
    assert all(str(r["stderror"]).startswith("amworker: broker lost: the slice finished but its "
                                             "results are gone from Redis") for r in results.values())


def test_a_first_part_naming_absurd_parts_costs_one_command(shim: Shim) -> None:
    # Worst input: a corrupt or hostile first part naming a billion parts.
    # The shim counts the list once and reads none of it.
    batch = shim.submit("x")
    shim.claim(batch)
    # Stored results settle the slice at the lane's next check (0.2 s at
    # most): none before the counters reset.
    with shim.polls.held():
        shim.redis.set(keys.outcome_key(batch.slice_id), '{"parts": 1000000000, "results": []}')
        shim.redis.rpush(keys.outcome_more_key(batch.slice_id), "[]")
        shim.redis.config_resetstat()

    assert batch.stderr().startswith("amworker: broker lost: the slice finished but its results "
                                     "are gone from Redis")
    calls = {name: stats["calls"] for name, stats in shim.redis.info("commandstats").items()}
    assert calls.get("cmdstat_llen") == 1 and "cmdstat_lindex" not in calls, calls
