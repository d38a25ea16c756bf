"""Fault 5: Redis (broker and results, no persistence) restarts or stays away mid-batch."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from harness.controller import make_tasks, submit_bg
from harness.services import Stack
from tests.faults.helpers import (
    assert_all_answered,
    assert_broker_lost_at_once,
    assert_serves_again,
    failed_with,
    gate_args,
    kill_redis,
    records,
    restart_redis,
    use_config,
    wait_records,
    wait_sent,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]


def test_redis_restart_mid_batch(faststack: Stack, tmp_path: Path) -> None:
    use_config(faststack, '[functions."record_v0.0"]\nslices = 2\ntime_limit = 60\n')
    worker = faststack.celery_worker("w1", concurrency=1)
    shim = faststack.shim()
    record, gate = tmp_path / "runs", tmp_path / "gate"
    tasks = make_tasks([gate_args(record, gate)] * 2)
    running, queued = list(tasks)
    started = time.monotonic()
    unique = str(uuid.uuid4())
    pending = submit_bg(faststack.server, "record_v0.0", tasks, unique=unique, timeout=200)
    wait_records(record, 1)
    # The queued slice must be in the Redis that dies, not still on its way.
    wait_sent(faststack, "record_v0.0", unique, tasks)

    kill_redis(faststack)
    restart_redis(faststack)
    gate.touch()

    answer = pending.wait(180)
    elapsed = time.monotonic() - started
    assert_all_answered(answer)
    # The queued slice's message was lost with Redis: failed with the cause,
    # promptly (not after queue_wait) and never run.
    assert failed_with(answer, queued, "broker lost"), answer.results
    assert queued not in {t for t, _ in records(record)}
    # The running slice finished on its worker (which re-set its lease in
    # the new Redis) and its real result came back: recovered, run once.
    assert answer.exit_code(running) == 0, answer.results
    assert [t for t, _ in records(record)].count(running) == 1
    assert elapsed < 60 + 60, "within the deadline (queue wait + time limit)"

    # Shim and worker reconnected: a new batch runs end to end.
    assert shim.alive() and worker.alive()
    assert_serves_again(faststack, tmp_path)
    print(f"running slice: exit {answer.exit_code(running)}; answered in {elapsed:.1f}s")


def test_redis_down_while_waiting_ends_in_broker_lost(faststack: Stack, tmp_path: Path) -> None:
    faststack.env["AMWORKER_QUEUE_WAIT"] = "8"
    faststack.celery_worker("w1", concurrency=1)
    faststack.shim()
    record, gate = tmp_path / "runs", tmp_path / "gate"
    tasks = make_tasks([gate_args(record, gate, 120)])
    pending = submit_bg(faststack.server, "record_v0.0", tasks, timeout=120)
    wait_records(record, 1)
    started = time.monotonic()
    kill_redis(faststack)
    answer = pending.wait(90)
    waited = time.monotonic() - started
    assert_all_answered(answer)
    (task_id,) = tasks
    assert failed_with(answer, task_id, "broker lost"), answer.results
    # Patience is queue_wait (8 s) here, plus a check interval and retries.
    assert waited < 40
    print(f"broker lost after {waited:.1f}s")


def test_dispatch_without_redis_answers_broker_lost(faststack: Stack, tmp_path: Path) -> None:
    faststack.celery_worker("w1", concurrency=1)
    faststack.shim()
    kill_redis(faststack)
    assert_broker_lost_at_once(faststack, tmp_path)
