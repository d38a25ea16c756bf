"""Unit tests of the Celery task bodies' guards (no broker involved)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from celery.app.task import Context

from worker import tasks
from worker.config import Settings
from worker.contract import keys
from worker.contract.keys import SCRIPT_HEADER
from worker.contract.results import failed_results
from worker.pool.runtime import WorkerRuntime, despite_soft_limit
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
    """Fails ``failures`` round trips with a connection error, then keeps what it is given."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.kept: dict[str, str] = {}
        self.published: list[tuple[str, str]] = []
        self.attempts = 0

    def pipeline(self, transaction: bool = True) -> _FlakyPipeline:
        return _FlakyPipeline(self)

    def exists(self, key: str) -> int:
        return int(key in self.kept)


class _FlakyPipeline:
    """Buffers SETs and PUBLISHes; ``execute`` is one round trip of its client."""

    def __init__(self, client: _FlakyRedis) -> None:
        self.client = client
        self.sets: list[tuple[str, str]] = []
        self.publishes: list[tuple[str, str]] = []

    def set(self, key: str, value: str, ex: int | None = None) -> None:
        self.sets.append((key, value))

    def publish(self, channel: str, message: str) -> None:
        self.publishes.append((channel, message))

    def execute(self) -> None:
        self.client.attempts += 1
        if self.client.attempts <= self.client.failures:
            raise redis.ConnectionError("Connection reset by peer")
        self.client.kept.update(self.sets)
        self.client.published += self.publishes


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
    # Announced once, with the write that stored them (the shim's lane wakes on it).
    assert client.published == [(keys.outcome_key("s1"), keys.OUTCOME_STORED)]
    # Backing off, never past the lease TTL (3 beats of 10 s).
    assert clock.pauses == sorted(clock.pauses) and sum(clock.pauses) <= 30


class _ReplyLostRedis:
    """Carries out every command; the first final write's reply is lost (a connection reset)."""

    def __init__(self) -> None:
        self.strings: dict[str, str] = {}
        self.lists: dict[str, list[str]] = {}
        self.writes: list[str] = []
        self.published: list[str] = []
        self.replies_lost = 0

    def exists(self, key: str) -> int:
        return int(key in self.strings or key in self.lists)

    def delete(self, key: str) -> None:
        self.writes.append(f"DEL {key}")
        self.lists.pop(key, None)

    def rpush(self, key: str, value: str) -> None:
        self.writes.append(f"RPUSH {key}")
        self.lists.setdefault(key, []).append(value)

    def expire(self, key: str, ttl: int) -> None:
        self.writes.append(f"EXPIRE {key}")

    def pipeline(self, transaction: bool = True) -> _ReplyLostPipeline:
        return _ReplyLostPipeline(self)


class _ReplyLostPipeline:
    def __init__(self, client: _ReplyLostRedis) -> None:
        self.client = client
        self.commands: list[tuple[str, str, str]] = []

    def set(self, key: str, value: str, ex: int | None = None) -> None:
        self.commands.append(("SET", key, value))

    def publish(self, channel: str, message: str) -> None:
        self.commands.append(("PUBLISH", channel, message))

    def execute(self) -> None:
        for name, key, value in self.commands:
            self.client.writes.append(f"{name} {key}")
            if name == "SET":
                self.client.strings[key] = value
            else:
                self.client.published.append(key)
        if not self.client.replies_lost:
            self.client.replies_lost += 1
            raise redis.ConnectionError("Connection reset by peer")


def test_a_retry_after_a_lost_reply_leaves_the_stored_parts_alone() -> None:
    # The final write (first part and note) reached Redis, its reply did not.
    # A lane woken by the note may be reading the parts: the retry must not
    # empty their list and push them again, or the lane finds parts missing
    # and answers a finished script's tasks "results gone".
    client, clock = _ReplyLostRedis(), _Clock()
    results = failed_results([f"t{n}" for n in range(6)], "x" * 300)

    _runtime(client).store_outcome("s1", "echo_v0.0", results, sleep=clock.sleep,  # type: ignore[arg-type]
                                   clock=lambda: clock.now, part_chars=1024)

    more = keys.outcome_more_key("s1")
    assert client.replies_lost == 1 and len(clock.pauses) == 1
    assert client.writes.count(f"DEL {more}") == 1, client.writes
    assert client.writes.count(f"SET {keys.outcome_key('s1')}") == 1
    assert client.published == [keys.outcome_key("s1")]
    assert len(client.lists[more]) >= 2


def test_results_not_stored_within_a_lease_ttl_raise_and_are_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    client, clock = _FlakyRedis(failures=10_000), _Clock()

    with pytest.raises(redis.ConnectionError):
        _runtime(client).store_outcome("s1", "echo_v0.0", RESULTS, sleep=clock.sleep,
                                       clock=lambda: clock.now)

    assert 30 <= clock.now <= 31
    assert any("not stored" in r.getMessage() for r in caplog.records)


def test_a_slice_stores_no_celery_result_on_success_but_the_callback_and_failures_do() -> None:
    # The shim answers from a slice's own stored results; Celery's copy of a
    # success woke nobody (tests/integration/test_celery_results.py). A
    # failure Celery decides is how the shim learns its cause at once, and
    # the callback's result is what wakes a lane past 16 slices.
    assert tasks.run_slice.ignore_result is True
    assert tasks.run_slice.store_errors_even_if_ignored is True
    assert tasks.collect.ignore_result is False


class _SoftLimit(Exception):
    """Stands in for Celery's SoftTimeLimitExceeded (the seam is the tuple passed in)."""


def test_a_soft_limit_firing_in_a_write_after_the_script_returned_is_written_through() -> None:
    # Raised in a retry's pause, it escaped to Celery: the rows said exit 0
    # while the controller was told "hard time limit".
    client, clock = _FlakyRedis(failures=1), _Clock()
    fired: list[float] = []

    def sleep(seconds: float) -> None:
        if not fired:
            fired.append(seconds)
            raise _SoftLimit("SoftTimeLimitExceeded(300)")
        clock.sleep(seconds)

    despite_soft_limit((_SoftLimit,), lambda: _runtime(client).store_outcome(
        "s1", "echo_v0.0", RESULTS, sleep=sleep, clock=lambda: clock.now), "storing its results")

    assert fired
    assert json.loads(client.kept[keys.outcome_key("s1")])[0]["uuid"] == "t1"


def test_any_other_error_in_such_a_write_still_escapes() -> None:
    def write() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        despite_soft_limit((_SoftLimit,), write, "storing its results")


class _AlreadyStored:
    """Redis after a store whose final write landed: its key exists; nothing may be written."""

    def exists(self, key: str) -> int:
        return 1

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a resumed store wrote to Redis ({name}) over results a lane may be reading")


def test_a_resumed_store_checks_before_it_writes() -> None:
    # The soft limit cut the first store short after its final write: writing
    # the parts again would empty their list under a lane reading them.
    _runtime(_AlreadyStored()).store_outcome("s1", "echo_v0.0", RESULTS, resumed=True)  # type: ignore[arg-type]


def test_a_write_cut_short_by_the_soft_limit_is_finished_by_its_resumption() -> None:
    calls: list[str] = []

    def write() -> None:
        calls.append("write")
        raise _SoftLimit("SoftTimeLimitExceeded(300)")

    despite_soft_limit((_SoftLimit,), write, "storing its results", again=lambda: calls.append("again"))

    assert calls == ["write", "again"]
