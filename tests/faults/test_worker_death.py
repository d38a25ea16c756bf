"""Fault 2: a whole Celery worker dies mid-batch (SIGKILL to its process group)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from harness.controller import make_tasks, submit_bg
from harness.services import Stack
from tests.faults.helpers import (
    assert_all_answered,
    children,
    config_file,
    failed_with,
    gate_args,
    records,
    wait_records,
    wait_sent,
    wait_until,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]


def test_dead_worker_fails_started_slices_and_others_run_elsewhere(faststack: Stack, tmp_path: Path) -> None:
    conf = config_file(tmp_path, '[functions."record_v0.0"]\nslices = 3\ntime_limit = 60\n')
    faststack.env["AMWORKER_CONFIG_FILE"] = str(conf)
    doomed = faststack.celery_worker("doomed", concurrency=1)
    faststack.shim()
    record, gate = tmp_path / "runs", tmp_path / "gate"
    tasks = make_tasks([gate_args(record, gate)] * 3)
    ids = list(tasks)
    started = time.monotonic()
    unique = str(uuid.uuid4())
    pending = submit_bg(faststack.server, "record_v0.0", tasks, unique=unique)

    (first_task, first_pid), = wait_records(record, 1)
    assert first_pid in children(doomed.pid)
    # The first slice can start before the shim has published the other two.
    wait_sent(faststack, "record_v0.0", unique, tasks)
    # What the dying worker holds unacknowledged (kombu's "unacked" hash):
    # nothing. The slice it runs was acknowledged when its pool process
    # accepted it (task_acks_late=False, worker/celery.py: Celery's
    # Request.on_accepted acks from the main process, a moment after the
    # script may already have written its record, hence the wait). Its only
    # pool process is busy, so worker_disable_prefetch lets it fetch nothing
    # more: the other two slices are still in the queue, not reserved.
    wait_until(lambda: faststack.redis.hlen("unacked") == 0, timeout=10,
               what="the running slice to be acknowledged")
    unacked, queued = faststack.redis.hlen("unacked"), faststack.redis.llen("amworker")
    assert (unacked, queued) == (0, 2)
    doomed.kill()  # SIGKILL to the main process and its pool, at once
    gate.touch()

    rescuer = faststack.celery_worker("rescuer", concurrency=2)
    answer = pending.wait(120)
    elapsed = time.monotonic() - started
    assert_all_answered(answer)
    assert failed_with(answer, first_task, "worker lost"), answer.results
    others = [t for t in ids if t != first_task]
    assert all(answer.exit_code(t) == 0 for t in others), answer.results
    ran = dict(records(record))
    assert all(ran[t] in children(rescuer.pid) for t in others), "ran on the other worker"
    assert sorted(t for t, _ in records(record)) == sorted(ids), "each task ran exactly once"
    # Deadline: queue wait (60 s) + time limit (60 s); well inside it here.
    assert elapsed < 120
    print(f"answered in {elapsed:.1f}s")


def test_reserved_message_is_restored_after_visibility_timeout(faststack: Stack, tmp_path: Path) -> None:
    """A message reserved by a worker that dies before starting it runs elsewhere.

    With prefetch disabled a worker only fetches for a free pool process, so
    the test makes a reservation the hard way: a worker whose only pool
    process is stopped (SIGSTOP) cannot start what it fetched.
    """
    faststack.env["AMWORKER_VISIBILITY_TIMEOUT"] = "5"
    doomed = faststack.celery_worker("doomed", concurrency=1)
    (child,) = children(doomed.pid)
    faststack.shim()
    record = tmp_path / "runs"
    os.kill(child, signal.SIGSTOP)
    tasks = make_tasks([str(record)])
    pending = submit_bg(faststack.server, "record_v0.0", tasks)
    wait_until(lambda: faststack.redis.hlen("unacked") > 0, timeout=30,
               what="the worker to reserve the slice")
    doomed.kill()
    started = time.monotonic()
    rescuer = faststack.celery_worker("rescuer", concurrency=1)
    answer = pending.wait(120)
    assert_all_answered(answer)
    (task_id,) = tasks
    assert answer.exit_code(task_id) == 0, answer.results
    ((ran, pid),) = records(record)
    assert ran == task_id and pid in children(rescuer.pid)
    print(f"restored and run {time.monotonic() - started:.1f}s after the worker died")
