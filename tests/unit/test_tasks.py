"""Unit tests of the Celery task bodies' guards (no broker involved)."""

from __future__ import annotations

import json

import pytest
import redis
from celery.app.task import Context

from worker import tasks
from worker.config import Settings
from worker.contract import keys
from worker.contract.keys import SCRIPT_HEADER
from worker.contract.results import failed_results
from worker.pool.runtime import WorkerRuntime
from worker.scripts.registry import Registry


def test_a_slice_without_a_task_id_is_refused_before_it_claims_anything(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Called directly, a task has no request id: its claim would be
    # "amworker:claim:None", shared with every other such call.
    def no_runtime(_: object) -> None:
        raise AssertionError("the runtime (Redis claim, script) must not be reached")

    monkeypatch.setattr(tasks.SliceTask, "runtime", property(no_runtime))

    with pytest.raises(ValueError, match="needs a Celery task id"):
        tasks.run_slice("echo_v0.0", "echo_v0.0:u", 0, 1, [])


@pytest.mark.parametrize("task_id", [None, ""])
def test_require_task_id_refuses_missing_ids(task_id: str | None) -> None:
    with pytest.raises(ValueError, match="needs a Celery task id"):
        tasks.require_task_id(task_id)


def test_require_task_id_keeps_a_real_id() -> None:
    assert tasks.require_task_id("f:u:slice-1-of-2") == "f:u:slice-1-of-2"


def test_the_planned_script_is_read_from_the_message_header() -> None:
    # What Celery's worker builds from a message's headers.
    request = Context({"id": "f:u:slice-1-of-1", "task": "amworker.run_slice",
                       SCRIPT_HEADER: "echo_v0.0 = tests.fixture_scripts.echo_args"})
    assert tasks.planned_script(request) == "echo_v0.0 = tests.fixture_scripts.echo_args"
    assert tasks.planned_script(Context({"id": "x"})) is None


class _FlakyRedis:
    """Fails ``failures`` SETs with a connection error, then keeps what it is given."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.kept: dict[str, str] = {}
        self.attempts = 0

    def set(self, key: str, value: str, ex: int | None = None) -> bool:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise redis.ConnectionError("Connection reset by peer")
        self.kept[key] = value
        return True


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def _runtime(client: _FlakyRedis) -> WorkerRuntime:
    return WorkerRuntime(settings=Settings(lease_seconds=10.0), registry=Registry({}),
                         redis=client)  # type: ignore[arg-type]


RESULTS = failed_results(["t1"], "script said no")


def test_a_redis_blip_after_the_script_ran_does_not_lose_its_results() -> None:
    client, clock = _FlakyRedis(failures=3), _Clock()

    _runtime(client).store_outcome("s1", "echo_v0.0", RESULTS, sleep=clock.sleep,
                                   clock=lambda: clock.now)

    assert json.loads(client.kept[keys.outcome_key("s1")])[0]["uuid"] == "t1"
    assert client.attempts == 4
    # Backing off, never past the lease TTL (3 beats of 10 s).
    assert clock.pauses == sorted(clock.pauses) and sum(clock.pauses) <= 30


def test_results_not_stored_within_a_lease_ttl_raise_and_are_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    client, clock = _FlakyRedis(failures=10_000), _Clock()

    with pytest.raises(redis.ConnectionError):
        _runtime(client).store_outcome("s1", "echo_v0.0", RESULTS, sleep=clock.sleep,
                                       clock=lambda: clock.now)

    assert 30 <= clock.now <= 31
    assert any("not stored" in r.getMessage() for r in caplog.records)
