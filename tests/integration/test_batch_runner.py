"""BatchRunner in-process against a real Redis: slots, stored answers, causes.

No Celery worker is needed: these paths end before a slice would run (a
stored answer), or the seam between waiting and settling is replaced by a
fault (a bug inside settling) to check the cause the controller is told.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from amqp.exceptions import NotAllowed
from celery import Celery

from harness.controller import make_tasks
from harness.services import ROOT, start_redis, wait_until
from worker.batch.answers import Settlement
from worker.batch.dispatch import ANSWERED, OLDER_KEYS, PLANNED, RECORDED, Dispatch, SliceRef
from worker.batch.runner import ANSWER_SLOTS, BatchRunner
from worker.batch.service import use_send_only_backend
from worker.batch.settling import PREFETCH_BYTES, PREFETCH_MIN_SHARE
from worker.batch.watcher import ResultWatcher
from worker.celery import celery_config
from worker.codec.records import Batch, Encoding, TaskResult
from worker.codec.wire import decode_request, decode_result, encode_request
from worker.config import Settings
from worker.contract import keys
from worker.contract.keys import SCRIPT_HEADER
from worker.contract.plan import JobSpec, PlanRecord
from worker.contract.results import failed_results, utcnow
from worker.contract.slices import SliceEnvelope, encode_results
from worker.errors import DecodeError
from worker.pool.runtime import WorkerRuntime
from worker.scripts.registry import ScriptEntry, load_registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    proc, port = start_redis(tmp_path_factory.mktemp("runner-redis"))
    try:
        yield port
    finally:
        proc.kill()


@pytest.fixture
def runner(redis_port: int, tmp_path: Path) -> Iterator[BatchRunner]:
    with _runner(redis_port, tmp_path, lease_seconds=1) as built:
        yield built


@pytest.fixture
def slow_polling_runner(redis_port: int, tmp_path: Path) -> Iterator[BatchRunner]:
    """A runner whose lanes check a waiting batch only every 5 s unless woken."""
    with _runner(redis_port, tmp_path, lease_seconds=30) as built:
        yield built


@contextlib.contextmanager
def _runner(redis_port: int, tmp_path: Path, *, lease_seconds: int) -> Iterator[BatchRunner]:
    url = f"redis://127.0.0.1:{redis_port}/0"
    settings = Settings.from_env({
        "AMWORKER_BROKER_URL": url, "AMWORKER_RESULT_BACKEND": url,
        "AMWORKER_MODULES_FILE": str(ROOT / "tests/fixture_scripts/modules.ini"),
        "AMWORKER_CLIENT_SCRIPTS_PACKAGE": "tests.fixture_scripts",
        "AMWORKER_SHARED_DIRECTORY": f"{tmp_path}/",
        "AMWORKER_LEASE_SECONDS": str(lease_seconds),
    })
    app = Celery("runner-test")
    app.conf.update(celery_config(settings))
    use_send_only_backend(app, url)  # as the shim's app
    client = redis.Redis.from_url(url, socket_timeout=10)
    watcher = ResultWatcher(client, prefixes=keys.wake_prefixes(app.backend))
    watcher.start()
    try:
        # A result stored before the watcher has subscribed wakes nobody, and
        # a test timing a wake-up would read the 5 s poll instead.
        assert watcher.connected.wait(10), "the result watcher never sent its subscription"
        yield BatchRunner(settings=settings, registry=load_registry(settings), app=app,
                          client=client, watcher=watcher)
    finally:
        watcher.stop()
        app.close()


def _payload(tasks: dict[str, dict[str, object]]) -> bytes:
    return encode_request(tasks, Encoding.JSON)


def test_more_lanes_answering_at_once_than_slots_never_deadlock(runner: BatchRunner) -> None:
    # More lanes than answer slots answer a batch at the same moment (a
    # barrier releases them together): a slot that leaked would leave the
    # last lanes waiting forever.
    lanes = ANSWER_SLOTS + 2
    tasks = make_tasks(["a"])
    (task_id,) = tasks
    payload = _payload(tasks)
    unique = str(uuid.uuid4())
    token = keys.batch_token("echo_v0.0", unique, payload, tasks)
    stored = failed_results([task_id], "amworker: worker lost: earlier")
    runner.redis.set(keys.answer_key(token), json.dumps(
        {"at": 0, "slices": [], "failed": [r.to_json() for r in stored]}))
    together = threading.Barrier(lanes)
    got: list[int] = []
    lock = threading.Lock()

    def lane() -> None:
        together.wait(10)
        answer = runner.answer("echo_v0.0", unique, payload)
        assert answer is not None
        with lock:
            code = decode_result(answer)[task_id]["exitCode"]
            assert isinstance(code, int)
            got.append(code)

    threads = [threading.Thread(target=lane, daemon=True) for _ in range(lanes)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a lane blocked: answer slots leaked"
    assert got == [1] * lanes


def test_an_answered_batch_keeps_its_real_results_for_a_queue_wait(runner: BatchRunner) -> None:
    # The shim may die after answering but before gearmand read the answer;
    # gearmand then queues the job again, and it may wait for a lane far
    # longer than a minute. Its scripts' real results must still be there.
    tasks = make_tasks(["a"])
    (task_id,) = tasks
    payload = _payload(tasks)
    unique = str(uuid.uuid4())
    token = keys.batch_token("echo_v0.0", unique, payload, tasks)
    slice_id = keys.slice_id(token, 0, 1)
    done = TaskResult(uuid=task_id, exit_code=0, finished_at=utcnow(), stdout="real", stderr="")
    runner.redis.set(keys.outcome_key(slice_id), json.dumps([done.to_json()]), ex=100_000)

    runner._answered("echo_v0.0", token, Settlement(finished=(SliceRef(slice_id, (task_id,)),)))

    assert runner.redis.ttl(keys.outcome_key(slice_id)) > runner.settings.queue_wait - 5
    again = runner.answer("echo_v0.0", unique, payload)
    assert again is not None
    assert decode_result(again)[task_id]["exitCode"] == 0
    assert decode_result(again)[task_id]["stdout"] == "real"


def test_a_corrupt_stored_answer_still_answers_every_task(runner: BatchRunner) -> None:
    tasks = make_tasks(["a", "b"])
    payload = _payload(tasks)
    unique = str(uuid.uuid4())
    runner.redis.set(keys.answer_key(keys.batch_token("echo_v0.0", unique, payload, tasks)),
                     b"{not json")

    answer = runner.answer("echo_v0.0", unique, payload)

    assert answer is not None, "WORK_FAIL for a batch whose task UUIDs were readable"
    results = decode_result(answer)
    assert set(results) == set(tasks)
    for result in results.values():
        assert result["exitCode"] == 1
        # Answered before (the record exists), so never run again.
        assert str(result["stderror"]).startswith("amworker: internal error: this batch was answered")


def test_a_bug_while_waiting_is_an_internal_error_not_broker_lost(
        runner: BatchRunner, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_: object) -> None:
        raise DecodeError("task result x: 'exit_code' must be an integer")

    monkeypatch.setattr(runner.settler, "settled", broken)
    tasks = make_tasks(["hello"])
    (task_id,) = tasks

    answer = runner.answer("echo_v0.0", str(uuid.uuid4()), _payload(tasks))

    assert answer is not None
    stderr = str(decode_result(answer)[task_id]["stderror"])
    assert stderr.startswith("amworker: internal error: DecodeError("), stderr
    assert "broker lost" not in stderr
    # Logged with its traceback for the operator.
    assert any(r.exc_info and "internal error" in r.getMessage() for r in caplog.records)


def _stderr_when_send_raises(runner: BatchRunner, monkeypatch: pytest.MonkeyPatch,
                             fault: Exception) -> str:
    """The stderr a one-task batch is answered with when sending its slice raises ``fault``."""
    def failing(*_: object, **__: object) -> None:
        raise fault

    monkeypatch.setattr(runner.dispatcher, "send", failing)
    tasks = make_tasks(["hello"])
    (task_id,) = tasks

    answer = runner.answer("echo_v0.0", str(uuid.uuid4()), _payload(tasks))

    assert answer is not None
    return str(decode_result(answer)[task_id]["stderror"])


@pytest.mark.parametrize("fault", [redis.ConnectionError("Connection refused"),
                                   ConnectionResetError(104, "Connection reset by peer"),
                                   socket.gaierror(-2, "Name or service not known"),
                                   NotAllowed("connection limit (0) is reached", reply_code=530)],
                         ids=["redis", "reset", "dns", "rabbitmq-refuses"])
def test_a_broker_fault_while_sending_is_broker_lost(
        runner: BatchRunner, monkeypatch: pytest.MonkeyPatch, fault: Exception) -> None:
    assert _stderr_when_send_raises(runner, monkeypatch, fault).startswith("amworker: broker lost: ")


class _SetFails:
    """A Redis client whose every SET fails as a reset connection would."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def set(self, *_: object, **__: object) -> None:
        raise redis.ConnectionError("Connection reset by peer")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_slices_sent_but_not_marked_sent_still_count_as_sent(
        runner: BatchRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    # Answering "broker lost" here told the controller the tasks failed
    # while the broker held their slice, which a worker would run.
    entry = runner.registry["echo_v0.0"]
    token = f"echo_v0.0:{uuid.uuid4()}:x"
    specs = [JobSpec(uuid=task_id, argv=("hi",), wants_output=True) for task_id in make_tasks(["a"])]
    dispatch, parts, fresh = runner.dispatcher.plan_slices(entry, token, specs)
    queue = entry.options.queue
    assert queue is not None
    before = runner.redis.llen(queue)
    monkeypatch.setattr(runner.dispatcher, "redis", _SetFails(runner.redis))

    runner.dispatcher.send(entry, dispatch, parts)

    assert fresh
    assert runner.redis.llen(queue) == before + 1
    planned = runner.redis.get(keys.plan_key(token))
    assert planned is not None and PlanRecord.decode(planned).sent is False


@pytest.mark.parametrize("fault", [FileNotFoundError(2, "No such file or directory"),
                                   PermissionError(13, "Permission denied")], ids=["missing", "denied"])
def test_a_file_fault_while_sending_is_an_internal_error_not_broker_lost(
        runner: BatchRunner, monkeypatch: pytest.MonkeyPatch, fault: Exception) -> None:
    assert _stderr_when_send_raises(runner, monkeypatch, fault).startswith("amworker: internal error: ")


def test_results_left_inline_by_an_older_worker_are_still_read(runner: BatchRunner) -> None:
    # Mid-upgrade, a worker of the previous version returns its results in
    # Celery's result instead of under their own key.
    (task_id,) = make_tasks(["a"])
    slice_id = f"echo_v0.0:{uuid.uuid4()}:x:slice-1-of-1"
    done = failed_results([task_id], "script said no")
    runner.redis.set(runner.settler.result_prefix + slice_id, json.dumps(
        {"status": "SUCCESS", "result": {"index": 0, "count": 1, "results": [r.to_json() for r in done]}}))

    found = runner.settler.fetch(Settlement(finished=(SliceRef(slice_id, (task_id,)),)))

    assert found[task_id].stderr.strip() == "script said no"


def test_a_slice_whose_results_vanished_fails_with_broker_lost(runner: BatchRunner) -> None:
    (task_id,) = make_tasks(["a"])
    slice_id = f"echo_v0.0:{uuid.uuid4()}:x:slice-1-of-1"

    found = runner.settler.fetch(Settlement(finished=(SliceRef(slice_id, (task_id,)),)))

    assert found[task_id].stderr.startswith("amworker: broker lost: the slice finished but its results")


def test_a_bug_before_dispatch_still_answers_every_task(
        runner: BatchRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(runner, "_prepare", broken)
    tasks = make_tasks(["a", "b"])

    answer = runner.answer("echo_v0.0", str(uuid.uuid4()), _payload(tasks))

    assert answer is not None, "WORK_FAIL for a batch whose task UUIDs were readable"
    results = decode_result(answer)
    assert set(results) == set(tasks)
    assert all(str(r["stderror"]).startswith("amworker: internal error: UnicodeEncodeError(")
               for r in results.values())


def _legacy(function: str, unique: str) -> str:
    """The token a shim before task digests gave a batch (``function:unique``)."""
    return f"{function}:{unique}"


def test_a_batch_answered_by_an_older_shim_is_answered_from_its_keys(runner: BatchRunner) -> None:
    # Mid-upgrade: an old shim answered the batch (the whole answer under
    # function:unique) but died before gearmand read it; gearmand hands it to
    # this shim, whose token has a task digest. It must not run again.
    tasks = make_tasks(["a", "b"])
    unique = str(uuid.uuid4())
    old = [TaskResult(uuid=t, exit_code=0, finished_at=utcnow(), stdout=f"old {t}", stderr="")
           for t in tasks]
    runner.redis.set(keys.answer_key(_legacy("echo_v0.0", unique)), json.dumps([r.to_json() for r in old]))

    for _ in range(2):  # and again, re-delivered once more
        answer = runner.answer("echo_v0.0", unique, _payload(tasks))

        assert answer is not None
        results = decode_result(answer)
        assert {t: (r["exitCode"], r["stdout"]) for t, r in results.items()} == \
            {t: (0, f"old {t}") for t in tasks}


def test_a_unique_reused_after_an_older_shims_batch_was_answered_again_runs(
        runner: BatchRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    # This shim answered an older shim's batch again from its keys. The
    # controller then reuses the unique for other tasks: a new batch, which
    # must run, not be taken for the one answered ("answered before").
    unique = str(uuid.uuid4())
    first = make_tasks(["a"])
    old = [TaskResult(uuid=t, exit_code=0, finished_at=utcnow(), stdout="old", stderr="")
           for t in first]
    runner.redis.set(keys.answer_key(_legacy("echo_v0.0", unique)), json.dumps([r.to_json() for r in old]))
    assert runner.answer("echo_v0.0", unique, _payload(first)) is not None
    sent = _Sends()
    monkeypatch.setattr(runner.dispatcher, "send", sent)
    second = make_tasks(["b"])
    payload = _payload(second)

    runner.answer("echo_v0.0", unique, payload)

    assert sent.tokens == [keys.batch_token("echo_v0.0", unique, payload, second)]


def test_a_batch_dispatched_by_an_older_shim_is_attached_to(runner: BatchRunner) -> None:
    # An old shim dispatched the batch under function:unique and died; its
    # slice finished on an old worker (results inline in Celery's result).
    tasks = make_tasks(["a"])
    (task_id,) = tasks
    unique = str(uuid.uuid4())
    legacy = _legacy("echo_v0.0", unique)
    runner.redis.set(keys.plan_key(legacy), json.dumps({"count": 1, "at": time.time(), "sent": True}))
    done = TaskResult(uuid=task_id, exit_code=0, finished_at=utcnow(), stdout="ran once", stderr="")
    runner.redis.set(runner.settler.result_prefix + keys.slice_id(legacy, 0, 1), json.dumps(
        {"status": "SUCCESS", "result": {"index": 0, "count": 1, "results": [done.to_json()]}}))

    answer = runner.answer("echo_v0.0", unique, _payload(tasks))

    assert answer is not None
    assert decode_result(answer)[task_id]["stdout"] == "ran once"
    # Recorded under its own token, for a further re-delivery; the old plan dropped.
    token = keys.batch_token("echo_v0.0", unique, _payload(tasks), tasks)
    assert runner.redis.exists(keys.answer_key(token))
    assert not runner.redis.exists(keys.answer_key(legacy))
    assert not runner.redis.exists(keys.plan_key(legacy))
    again = runner.answer("echo_v0.0", unique, _payload(tasks))
    assert again is not None
    assert decode_result(again)[task_id]["stdout"] == "ran once"


def _reused_unique(runner: BatchRunner) -> tuple[str, dict[str, dict[str, object]], bytes, str]:
    """A new batch whose unique an older shim's answer (for other tasks) still holds.

    Returns the unique, the new batch's tasks, its payload and its token.
    """
    unique = str(uuid.uuid4())
    earlier = failed_results(list(make_tasks(["x"])), "old batch")
    runner.redis.set(keys.answer_key(_legacy("echo_v0.0", unique)),
                     json.dumps([r.to_json() for r in earlier]))
    tasks = make_tasks(["a"])
    payload = _payload(tasks)
    return unique, tasks, payload, keys.batch_token("echo_v0.0", unique, payload, tasks)


class _Sends:
    """Stands in for ``Dispatcher.send``: notes each batch sent, then fails it (not waited for)."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def __call__(self, _entry: ScriptEntry, dispatch: Dispatch, *_: object, **__: object) -> None:
        self.tokens.append(dispatch.token)
        raise RuntimeError("sent; not waited for in this test")


def test_an_older_shims_answer_for_other_tasks_is_a_reused_unique(runner: BatchRunner) -> None:
    unique, tasks, payload, token = _reused_unique(runner)

    assert runner._look_up(token, decode_request(payload)) == (token, None)
    # The same tasks under the old token: that batch, answered before.
    same = json.dumps([r.to_json() for r in failed_results(list(tasks), "old")]).encode()
    runner.redis.set(keys.answer_key(_legacy("echo_v0.0", unique)), same)
    assert runner._look_up(token, decode_request(payload)) == (_legacy("echo_v0.0", unique), same)


def test_an_older_shims_answer_for_other_tasks_does_not_stop_a_new_batch(
        runner: BatchRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    # The plan script leaves the old token's keys to the long look-up, which
    # finds the old answer is another batch's; the batch is then planned
    # and sent as new, once, rather than sent back to the look-up forever.
    unique, tasks, payload, token = _reused_unique(runner)
    sent = _Sends()
    looked_up: list[str] = []
    real_look_up = runner._look_up

    def look_up(token: str, batch: Batch) -> tuple[str, bytes | None]:
        looked_up.append(token)
        return real_look_up(token, batch)

    monkeypatch.setattr(runner.dispatcher, "send", sent)
    monkeypatch.setattr(runner, "_look_up", look_up)
    answer = runner.answer("echo_v0.0", unique, payload)

    # The old answer was read (once), found to be another batch's, and the
    # batch was sent as new.
    assert looked_up == [token]
    assert sent.tokens == [token]
    assert answer is not None and set(decode_result(answer)) == set(tasks)
    # Answered as the new batch it is, under its own token.
    assert runner.redis.exists(keys.answer_key(token))


def test_a_new_batch_costs_one_round_trip_before_it_is_sent(
        runner: BatchRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    # Looking for an earlier answer (under either token) and recording the
    # plan are one script: the batch's first and only round trip before its
    # slices go to the broker.
    tasks = make_tasks(["a"])
    payload = _payload(tasks)
    # Warm: the script is loaded into Redis once, with a round trip of its own.
    runner.dispatcher._record_plan(keys=["warm:plan", "warm:answer"], args=["{}", 10])
    commands: list[str] = []
    real: Callable[..., Any] = redis.Redis.execute_command

    def execute_command(client: redis.Redis, *args: Any, **options: Any) -> Any:
        commands.append(str(args[0]))
        return real(client, *args, **options)

    def pipeline_execute(pipe: redis.client.Pipeline, raise_on_error: bool = True) -> Any:
        commands.append("pipeline")
        raise AssertionError("a pipeline before the batch was sent")

    monkeypatch.setattr(redis.Redis, "execute_command", execute_command)
    monkeypatch.setattr(redis.client.Pipeline, "execute", pipeline_execute)
    monkeypatch.setattr(runner.dispatcher, "send", _Sends())

    runner.settle("echo_v0.0", keys.batch_token("echo_v0.0", str(uuid.uuid4()), payload, tasks),
                  decode_request(payload), looked_up=False)

    assert commands == ["EVALSHA"]


def test_a_batch_answered_before_is_answered_from_its_record_whatever_its_script_now(
        runner: BatchRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    # The batch ran and was answered, but gearmand never read the answer; the
    # shim came back without the script (a broken upgrade). Re-delivered, the
    # batch is answered with what it did, not failed anew: "import failed"
    # would tell the controller that files already moved never were.
    tasks = make_tasks(["a"])
    (task_id,) = tasks
    payload = _payload(tasks)
    unique = str(uuid.uuid4())
    token = keys.batch_token("echo_v0.0", unique, payload, tasks)
    done = TaskResult(uuid=task_id, exit_code=0, finished_at=utcnow(), stdout="moved", stderr="")
    runner.redis.set(keys.answer_key(token), json.dumps(
        {"at": time.time(), "slices": [], "failed": [done.to_json()]}))
    monkeypatch.setattr(runner.registry, "get", lambda function: None)

    answer = runner.answer("echo_v0.0", unique, payload)

    assert answer is not None
    assert decode_result(answer)[task_id]["stdout"] == "moved"
    assert decode_result(answer)[task_id]["exitCode"] == 0


def test_the_plan_script_against_a_real_redis(runner: BatchRunner) -> None:
    script = runner.dispatcher._record_plan
    plan, answer, old_plan, old_answer = (f"script-test:{uuid.uuid4()}:{n}" for n in range(4))
    both = [plan, answer, old_plan, old_answer]

    assert script(keys=[plan, answer], args=["first", 60]) == [RECORDED]
    assert 0 < runner.redis.ttl(plan) <= 60
    # The plan found is handed back in the same step, never read again later.
    assert script(keys=[plan, answer], args=["second", 60]) == [PLANNED, b"first"]
    # A plan of its own outranks an older shim's keys.
    runner.redis.set(old_answer, "old")
    assert script(keys=both, args=["second", 60]) == [PLANNED, b"first"]
    runner.redis.delete(plan)
    for older in (old_answer, old_plan):
        runner.redis.delete(old_plan, old_answer)
        runner.redis.set(older, "old")
        assert script(keys=both, args=["new", 60]) == [OLDER_KEYS]
        assert not runner.redis.exists(plan), "recorded a plan beside an older shim's keys"
    runner.redis.set(answer, "record")
    assert script(keys=both, args=["new", 60]) == [ANSWERED, b"record"]
    assert not runner.redis.exists(plan)


def _refuse_long_arguments(runner: BatchRunner) -> None:
    """The shim came back with a lower argument limit (a changed setting)."""
    runner.limits = dataclasses.replace(runner.limits, max_argument_bytes=100)


@pytest.mark.parametrize("refused", ["some", "all"])
def test_a_batch_answered_before_keeps_its_results_for_tasks_refused_now(
        runner: BatchRunner, refused: str) -> None:
    # The batch ran and was answered; gearmand never read the answer, and the
    # shim restarted with a lower argument limit. Re-delivered, the tasks it
    # now refuses ran then: they keep what they did, now and in the record.
    names = ["x" * 300, "y" * 300] if refused == "all" else ["short", "x" * 300]
    tasks = make_tasks(names)
    payload = _payload(tasks)
    unique = str(uuid.uuid4())
    token = keys.batch_token("echo_v0.0", unique, payload, tasks)
    slice_id = keys.slice_id(token, 0, 1)
    done = [TaskResult(uuid=t, exit_code=0, finished_at=utcnow(), stdout="moved", stderr="")
            for t in tasks]
    runner.redis.set(keys.outcome_key(slice_id), json.dumps([r.to_json() for r in done]), ex=1000)
    runner.redis.set(keys.answer_key(token),
                     json.dumps({"at": time.time(), "slices": [slice_id], "failed": []}))
    _refuse_long_arguments(runner)

    for _ in range(2):
        answer = runner.answer("echo_v0.0", unique, payload)
        assert answer is not None
        assert {t: (r["exitCode"], r["stdout"]) for t, r in decode_result(answer).items()} == \
            {t: (0, "moved") for t in tasks}


def test_an_older_shims_batch_is_not_run_when_it_cannot_be_looked_up(
        runner: BatchRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    # An older shim answered this very batch, and Redis fails the look-up:
    # not knowing, the shim must not run the batch again, nor record an
    # answer that would keep a re-delivery from looking again.
    tasks = make_tasks(["a"])
    (task_id,) = tasks
    unique = str(uuid.uuid4())
    payload = _payload(tasks)
    old = [TaskResult(uuid=task_id, exit_code=0, finished_at=utcnow(), stdout="old", stderr="")]
    runner.redis.set(keys.answer_key(_legacy("echo_v0.0", unique)), json.dumps([r.to_json() for r in old]))
    sent = _Sends()
    real: Callable[..., Any] = redis.client.Pipeline.execute

    def execute(pipe: redis.client.Pipeline, raise_on_error: bool = True) -> Any:
        if str(pipe.command_stack[0][0][0]) == "GET":  # the look-up, not the answer record
            raise redis.ConnectionError("Redis went away")
        return real(pipe, raise_on_error)

    monkeypatch.setattr(runner.dispatcher, "send", sent)
    with monkeypatch.context() as redis_down:
        redis_down.setattr(redis.client.Pipeline, "execute", execute)
        answer = runner.answer("echo_v0.0", unique, payload)

    assert sent.tokens == []
    assert answer is not None
    result = decode_result(answer)[task_id]
    assert result["exitCode"] == 1
    assert str(result["stderror"]).startswith("amworker: broker lost: cannot look the batch up in Redis")
    assert not runner.redis.exists(keys.answer_key(keys.batch_token("echo_v0.0", unique, payload, tasks)))
    # Redis answers again: the re-delivery finds the older shim's answer.
    again = runner.answer("echo_v0.0", unique, payload)
    assert again is not None
    assert decode_result(again)[task_id]["stdout"] == "old"
    assert sent.tokens == []


def test_a_plan_dropped_by_the_lane_that_answered_is_not_sent_again(
        runner: BatchRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    # This lane's script finds the other lane's plan; the other lane then
    # answers (record written, plan dropped) before this one does anything
    # more. Reading the plan again would find nothing and send the batch anew.
    tasks = make_tasks(["a"])
    (task_id,) = tasks
    payload = _payload(tasks)
    token = keys.batch_token("echo_v0.0", str(uuid.uuid4()), payload, tasks)
    runner.redis.set(keys.plan_key(token), json.dumps({"count": 1, "at": time.time(), "sent": True}))
    done = TaskResult(uuid=task_id, exit_code=0, finished_at=utcnow(), stdout="ran once", stderr="")
    script = runner.dispatcher._record_plan

    def then_answered(**kwargs: Any) -> Any:
        found = script(**kwargs)
        pipe = runner.redis.pipeline(transaction=True)
        pipe.set(keys.answer_key(token), json.dumps(
            {"at": time.time(), "slices": [], "failed": [done.to_json()]}))
        pipe.delete(keys.plan_key(token))
        pipe.execute()
        return found

    sent = _Sends()
    monkeypatch.setattr(runner.dispatcher, "_record_plan", then_answered)
    monkeypatch.setattr(runner.dispatcher, "send", sent)

    settlement = runner.settle("echo_v0.0", token, decode_request(payload), looked_up=False)

    assert sent.tokens == []
    assert settlement.failed[task_id].stdout == "ran once"


def test_one_round_trip_finds_an_answer_under_either_token(
        runner: BatchRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    # The long look-up (an older shim's keys were found): the current
    # token's answer, its plan and the old token's keys come back from one
    # pipeline.
    tasks = make_tasks(["a"])
    payload = _payload(tasks)
    token = keys.batch_token("echo_v0.0", str(uuid.uuid4()), payload, tasks)
    record = b'{"at": 1.0, "slices": [], "failed": []}'
    runner.redis.set(keys.answer_key(token), record)
    sent: list[list[str]] = []
    real_execute = redis.client.Pipeline.execute

    def execute(pipe: redis.client.Pipeline, raise_on_error: bool = True) -> list[object]:
        sent.append([str(command[0][0]) for command in pipe.command_stack])
        return real_execute(pipe, raise_on_error)

    monkeypatch.setattr(redis.client.Pipeline, "execute", execute)
    assert runner._look_up(token, decode_request(payload)) == (token, record)
    assert sent == [["GET", "EXISTS", "GET", "EXISTS"]]


def test_a_slice_names_its_script_in_a_header_an_older_worker_ignores(runner: BatchRunner) -> None:
    # A worker of the previous release has run_slice(function, batch, index,
    # count, jobs): any other argument fails every slice with a TypeError.
    entry = runner.registry.get("echo_v0.0")
    assert entry is not None
    tasks = make_tasks(["a"])
    payload = _payload(tasks)
    token = keys.batch_token("echo_v0.0", str(uuid.uuid4()), payload, tasks)
    specs, refused = runner._prepare(decode_request(payload).tasks)
    assert not refused
    queue = str(entry.options.queue)
    runner.redis.delete(queue)
    dispatch, parts, fresh = runner.dispatcher.plan_slices(entry, token, specs)
    assert fresh

    runner.dispatcher.send(entry, dispatch, parts)

    raw = runner.redis.lpop(queue)
    assert isinstance(raw, bytes), "no message was queued"
    message = json.loads(raw)
    args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert set(kwargs) == {"function", "batch", "index", "count", "jobs"}
    assert message["headers"][SCRIPT_HEADER] == entry.script


def test_a_slice_given_up_is_revoked_and_logged_once_per_wait(
        runner: BatchRunner, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Slice 1 ran past its time limit and keeps its worker's claim (so the
    # abandoned marker cannot replace it); slice 2 is still queued, so the
    # batch stays unsettled and is polled again.
    entry = runner.registry.get("echo_v0.0")
    assert entry is not None
    token = f"echo_v0.0:{uuid.uuid4()}:digest"
    late, queued = (keys.slice_id(token, i, 2) for i in range(2))
    dispatch = Dispatch(token=token, count=2, dispatched_at=time.time(),
                        slices=(SliceRef(late, ("t1",)), SliceRef(queued, ("t2",))))
    runner.redis.set(keys.plan_key(token), json.dumps({"count": 2, "at": time.time(), "sent": True}))
    started = utcnow() - timedelta(seconds=entry.options.time_limit or 0) - timedelta(hours=1)
    runner.redis.set(keys.claim_key(late), json.dumps({"worker": "w@h", "at": started.isoformat()}))
    runner.redis.set(keys.lease_key(late), "1", ex=60)
    revoked: list[str] = []
    monkeypatch.setattr(runner.app.control, "revoke", lambda task_id, **_: revoked.append(task_id))
    given_up: dict[str, dict[str, TaskResult]] = {}

    polls = [runner.settler.settled(entry, dispatch, {"t1": True, "t2": True}, given_up)
             for _ in range(3)]

    assert polls == [None, None, None]
    assert revoked == [late]
    assert sum("given up" in r.getMessage() for r in caplog.records) == 1
    assert given_up[late]["t1"].stderr.startswith("amworker: time limit: ")


def test_a_batch_answered_while_this_lane_looked_is_not_sent_again(runner: BatchRunner) -> None:
    # Lane B found no answer record (its look-up came first); lane A then
    # answered the same batch, wrote the record and dropped the plan. B must
    # not take the missing plan for a new batch: with another slice count
    # (a shim on a host with more cores) its slices would run the script again.
    entry = runner.registry.get("echo_v0.0")
    assert entry is not None
    tasks = make_tasks(["a"])
    (task_id,) = tasks
    payload = _payload(tasks)
    batch = decode_request(payload)
    token = keys.batch_token("echo_v0.0", str(uuid.uuid4()), payload, tasks)
    queue = str(entry.options.queue)
    runner.redis.delete(queue)
    assert runner._look_up(token, batch) == (token, None)
    done = TaskResult(uuid=task_id, exit_code=0, finished_at=utcnow(), stdout="ran once", stderr="")
    runner.redis.set(keys.answer_key(token), json.dumps(
        {"at": time.time(), "slices": [], "failed": [done.to_json()]}))

    settlement = runner.settle("echo_v0.0", token, batch, None)

    assert settlement.failed[task_id].stdout == "ran once"
    assert runner.redis.llen(queue) == 0, "the batch was sent again"
    assert not runner.redis.exists(keys.plan_key(token))


def test_the_last_slice_to_finish_answers_the_batch_without_the_chord_callback(
        slow_polling_runner: BatchRunner) -> None:
    # No Celery worker: the test stores each slice's results and Celery's
    # result as a worker of the previous release did (no note on the outcome
    # channel), and never runs the chord callback. The lane must answer once
    # the last slice's result is stored, woken by it, not at its next 5 s check.
    runner = slow_polling_runner

    def store(slice_id: str, kwargs: dict[str, Any], done: list[TaskResult]) -> None:
        runner.redis.set(keys.outcome_key(slice_id), encode_results(done))
        # As Celery's Redis backend stores a result: the key, then the same
        # meta published on the channel named like it.
        envelope = SliceEnvelope(index=kwargs["index"], count=kwargs["count"], tasks=len(done))
        meta = json.dumps({"status": "SUCCESS", "result": envelope.to_json(), "task_id": slice_id})
        runner.redis.set(runner.settler.result_prefix + slice_id, meta)
        runner.redis.publish(runner.settler.result_prefix + slice_id, meta)

    token = _four_slices_answered_when_stored(runner, store)

    assert not runner.redis.exists(runner.settler.result_prefix + keys.collect_id(token))


def test_stored_results_answer_the_batch_before_celery_stores_anything(
        slow_polling_runner: BatchRunner) -> None:
    # The pool's own write (WorkerRuntime.store_outcome) announces the
    # results it stores: the lane wakes on that and answers from them alone,
    # without waiting for Celery to store the slices' results (a millisecond
    # or two later in a worker), which this test never does.
    runner = slow_polling_runner
    pool = WorkerRuntime(settings=runner.settings, registry=runner.registry, redis=runner.redis)

    def store(slice_id: str, _kwargs: dict[str, Any], done: list[TaskResult]) -> None:
        pool.store_outcome(slice_id, "sliced_v0.0", done)

    token = _four_slices_answered_when_stored(runner, store)

    ids = [keys.slice_id(token, i, 4) for i in range(4)]
    assert not any(runner.redis.exists(runner.settler.result_prefix + i) for i in ids)


def _four_slices_answered_when_stored(
        runner: BatchRunner, store: Callable[[str, dict[str, Any], list[TaskResult]], None]) -> str:
    """Answer a batch of four slices whose results ``store`` stores, as a worker would, one by one.

    Asserts that the lane answered within 2.5 s of the last (woken, not at
    its 5 s check) with every slice's results; returns the batch's token.
    """
    entry = runner.registry.get("sliced_v0.0")
    assert entry is not None and entry.slices_wanted() == 4
    tasks = make_tasks(["a", "b", "c", "d", "e", "f"])
    payload = _payload(tasks)
    batch = decode_request(payload)
    token = keys.batch_token("sliced_v0.0", str(uuid.uuid4()), payload, tasks)
    queue = str(entry.options.queue)
    runner.redis.delete(queue)
    settled: list[Settlement] = []
    lane = threading.Thread(target=lambda: settled.append(runner.settle("sliced_v0.0", token, batch)))
    lane.start()
    wait_until(lambda: runner.redis.llen(queue) == 4, timeout=10, what="the four slices to be sent")
    messages = [json.loads(raw) for raw in runner.redis.lrange(queue, 0, -1)]
    for message in messages:
        _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        done = [TaskResult(uuid=job["uuid"], exit_code=0, finished_at=utcnow(),
                           stdout=f"ran {job['uuid']}\n", stderr="") for job in kwargs["jobs"]]
        store(message["headers"]["id"], kwargs, done)
    last_stored = time.monotonic()

    lane.join(timeout=30)

    assert settled, "the lane never answered"
    woke_after = time.monotonic() - last_stored
    assert woke_after < 2.5, f"answered {woke_after:.1f}s after the last slice: at a poll, not woken"
    found = runner.assemble(batch, settled[0])
    assert {r.uuid: r.stdout for r in found} == {u: f"ran {u}\n" for u in tasks}
    return token


def test_slices_found_finished_before_the_callback_keep_the_results_read_with_the_check(
        runner: BatchRunner) -> None:
    # The check reads the final envelope with the slices' small results; when
    # the callback has not run but every slice has, those results are used,
    # not fetched again.
    entry, dispatch, ids = _two_slices_with_stored_results(runner)
    for slice_id in ids:
        _store_success(runner, slice_id)

    settlement = runner.settler.settled(entry, dispatch, {"t1": True, "t2": True})

    assert settlement is not None
    assert [ref.task_id for ref in settlement.finished] == ids
    assert set(settlement.prefetched) == set(ids)
    assert {u: r.stdout for u, r in runner.settler.fetch(settlement).items()} == {"t1": "ok\n", "t2": "ok\n"}


def test_a_slice_whose_results_are_stored_is_finished_whatever_celery_says_after(
        runner: BatchRunner) -> None:
    # Slice 2's pool process died after storing its results (Celery reports
    # a WorkerLostError): the script ran to the end, so its results are the
    # answer, not "worker lost".
    entry, dispatch, ids = _two_slices_with_stored_results(runner)
    runner.redis.set(runner.settler.result_prefix + ids[1], json.dumps({"status": "FAILURE", "result": {
        "exc_type": "WorkerLostError", "exc_message": ["Worker exited prematurely: signal 9 (SIGKILL)."]}}))

    settlement = runner.settler.settled(entry, dispatch, {"t1": True, "t2": True})

    assert settlement is not None
    assert [ref.task_id for ref in settlement.finished] == ids and settlement.failed == {}
    assert set(settlement.prefetched) == set(ids)
    assert {u: r.stdout for u, r in runner.settler.fetch(settlement).items()} == {"t1": "ok\n", "t2": "ok\n"}


def test_a_batch_waits_for_the_slices_whose_results_are_not_stored(runner: BatchRunner) -> None:
    entry, dispatch, ids = _two_slices_with_stored_results(runner)
    held = runner.redis.get(keys.outcome_key(ids[1]))
    runner.redis.delete(keys.outcome_key(ids[1]))
    _running(runner, ids[1])
    wants = {"t1": True, "t2": True}

    assert runner.settler.settled(entry, dispatch, wants) is None
    assert held is not None
    runner.redis.set(keys.outcome_key(ids[1]), held)
    settlement = runner.settler.settled(entry, dispatch, wants)
    assert settlement is not None and [ref.task_id for ref in settlement.finished] == ids


def test_a_slice_still_leased_is_finished_by_its_stored_results_beside_a_lost_one(
        runner: BatchRunner) -> None:
    # Slice 1 stored its results and still holds its lease, with no result
    # from Celery yet; slice 2's pool process died before storing any.
    # Slice 1 is finished by its results alone (read with the check), and
    # only slice 2's task is failed.
    entry, dispatch, ids = _two_slices_with_stored_results(runner)
    _running(runner, ids[0])
    runner.redis.delete(keys.outcome_key(ids[1]))
    runner.redis.set(runner.settler.result_prefix + ids[1], json.dumps({"status": "FAILURE", "result": {
        "exc_type": "WorkerLostError", "exc_message": ["Worker exited prematurely: signal 9 (SIGKILL)."]}}))

    settlement = runner.settler.settled(entry, dispatch, {"t1": True, "t2": True})

    assert settlement is not None
    assert [ref.task_id for ref in settlement.finished] == [ids[0]]
    assert set(settlement.prefetched) == {ids[0]}
    assert set(settlement.failed) == {"t2"}
    assert settlement.failed["t2"].stderr.startswith("amworker: worker lost: ")
    assert runner.settler.fetch(settlement)["t1"].stdout == "ok\n"


def test_a_batch_of_more_slices_than_heads_are_read_for_settles_on_stored_results(
        runner: BatchRunner) -> None:
    # 17 slices: a check reads no heads (a share of the prefetch would be
    # under its minimum), so whether each slice stored its results is asked
    # with the slices' other keys. All stored, the last still leased, no
    # envelope anywhere: finished, and fetched in the answer slot.
    entry, dispatch, ids = _slices_with_stored_results(runner, 17)
    assert PREFETCH_BYTES // 17 < PREFETCH_MIN_SHARE
    _running(runner, ids[-1])
    wants = {f"t{i + 1}": True for i in range(17)}

    settlement = runner.settler.settled(entry, dispatch, wants)

    assert settlement is not None and settlement.failed == {} and settlement.prefetched == {}
    assert [ref.task_id for ref in settlement.finished] == ids
    assert {r.stdout for r in runner.settler.fetch(settlement).values()} == {"ok\n"}
    # One slice not stored, still running: the batch waits.
    runner.redis.delete(keys.outcome_key(ids[-1]))
    assert runner.settler.settled(entry, dispatch, wants) is None


def _two_slices_with_stored_results(runner: BatchRunner) -> tuple[ScriptEntry, Dispatch, list[str]]:
    """A dispatched batch of two slices (tasks t1, t2) whose results are stored, no envelope yet."""
    return _slices_with_stored_results(runner, 2)


def _slices_with_stored_results(runner: BatchRunner,
                                count: int) -> tuple[ScriptEntry, Dispatch, list[str]]:
    """A dispatched batch of ``count`` slices (task tN in slice N) whose results are stored.

    No envelope yet, and stored without the pool's note on the outcome
    channel: nobody waits here.
    """
    entry = runner.registry.get("sliced_v0.0")
    assert entry is not None
    token = f"sliced_v0.0:{uuid.uuid4()}:digest"
    ids = [keys.slice_id(token, i, count) for i in range(count)]
    tasks = [f"t{i + 1}" for i in range(count)]
    dispatch = Dispatch(token=token, count=count, dispatched_at=time.time(),
                        slices=tuple(SliceRef(i, (t,)) for i, t in zip(ids, tasks, strict=True)))
    runner.redis.set(keys.plan_key(token), json.dumps({"count": count, "at": time.time(), "sent": True}))
    for slice_id, task_id in zip(ids, tasks, strict=True):
        done = [TaskResult(uuid=task_id, exit_code=0, finished_at=utcnow(), stdout="ok\n", stderr="")]
        runner.redis.set(keys.outcome_key(slice_id), encode_results(done))
    return entry, dispatch, ids


def _running(runner: BatchRunner, slice_id: str) -> None:
    """Slice ``slice_id`` as its worker keeps it while it runs: claimed and leased."""
    claim = json.dumps({"worker": "w1@host", "pid": 7, "at": utcnow().isoformat()})
    runner.redis.set(keys.claim_key(slice_id), claim)
    runner.redis.set(keys.lease_key(slice_id), "7")


def _store_success(runner: BatchRunner, slice_id: str) -> None:
    """The slice's SUCCESS envelope, as Celery stores it (not published: nobody waits here)."""
    runner.redis.set(runner.settler.result_prefix + slice_id, json.dumps(
        {"status": "SUCCESS", "result": SliceEnvelope(index=0, count=2, tasks=1).to_json()}))
