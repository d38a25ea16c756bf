"""BatchRunner in-process against a real Redis: slots, stored answers, causes.

No Celery worker is needed: these paths end before a slice would run (a
stored answer), or the seam between waiting and settling is replaced by a
fault (a bug inside settling) to check the cause the controller is told.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.faults.helpers import make_tasks
from tests.services import ROOT, start_redis
from worker import keys
from worker.batches import ANSWER_SLOTS, BatchRunner
from worker.celery import celery_config
from worker.config import Settings
from worker.dispatch import SliceRef
from worker.errors import DecodeError
from worker.executor import failed_results
from worker.registry import load_registry
from worker.settling import Settlement
from worker.watcher import META_PREFIX, ResultWatcher
from worker.wire import Encoding, decode_request, decode_result, encode_request

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
    url = f"redis://127.0.0.1:{redis_port}/0"
    settings = Settings.from_env({
        "AMWORKER_BROKER_URL": url, "AMWORKER_RESULT_BACKEND": url,
        "AMWORKER_MODULES_FILE": str(ROOT / "tests/fixture_scripts/modules.ini"),
        "AMWORKER_CLIENT_SCRIPTS_PACKAGE": "tests.fixture_scripts",
        "AMWORKER_SHARED_DIRECTORY": f"{tmp_path}/", "AMWORKER_LEASE_SECONDS": "1",
    })
    app = Celery("runner-test")
    app.conf.update(celery_config(settings))
    client = redis.Redis.from_url(url, socket_timeout=10)
    watcher = ResultWatcher(client)
    watcher.start()
    try:
        yield BatchRunner(settings=settings, registry=load_registry(settings), app=app,
                          client=client, watcher=watcher)
    finally:
        watcher.stop()
        app.close()


def _payload(tasks: dict[str, dict[str, object]]) -> bytes:
    return encode_request(tasks, Encoding.JSON)


def test_more_callers_of_run_than_slots_never_deadlock(runner: BatchRunner) -> None:
    # Every caller of run() on its own thread, more of them than there are
    # answer slots: a slot taken in run() and only given back by answer()
    # leaks one per thread, and the last caller would wait forever.
    tasks = make_tasks(["a"])
    (task_id,) = tasks
    payload = _payload(tasks)
    token = keys.batch_token("echo_v0.0", "u", payload, tasks)
    stored = failed_results([task_id], "amworker: worker lost: earlier")
    runner.redis.set(keys.answer_key(token), json.dumps([r.to_json() for r in stored]))
    batch = decode_request(payload)
    got: list[int] = []

    def call() -> None:
        got.append(runner.run("echo_v0.0", token, batch)[0].exit_code)

    for _ in range(ANSWER_SLOTS + 2):
        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), f"run() #{len(got) + 1} blocked: answer slots leaked"
    assert got == [1] * (ANSWER_SLOTS + 2)


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


def test_a_broker_fault_while_sending_is_broker_lost(
        runner: BatchRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*_: object) -> None:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(runner.dispatcher, "send", unreachable)
    tasks = make_tasks(["hello"])
    (task_id,) = tasks

    answer = runner.answer("echo_v0.0", str(uuid.uuid4()), _payload(tasks))

    assert answer is not None
    assert str(decode_result(answer)[task_id]["stderror"]).startswith("amworker: broker lost: ")


def test_results_left_inline_by_an_older_worker_are_still_read(runner: BatchRunner) -> None:
    # Mid-upgrade, a worker of the previous version returns its results in
    # Celery's result instead of under their own key.
    (task_id,) = make_tasks(["a"])
    slice_id = f"echo_v0.0:{uuid.uuid4()}:x:slice-1-of-1"
    done = failed_results([task_id], "script said no")
    runner.redis.set(META_PREFIX + slice_id, json.dumps(
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
