"""Fault 3: the shim dies mid-batch and is restarted; gearmand re-delivers, it attaches."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from harness.controller import make_tasks, submit_bg
from harness.services import Stack, gearman_status
from harness.soak import result_prefix
from tests.faults.helpers import (
    assert_all_answered,
    config_file,
    gate_args,
    records,
    wait_records,
    wait_until,
)
from worker.contract import keys

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]


def test_restarted_shim_attaches_and_every_task_runs_once(faststack: Stack, tmp_path: Path) -> None:
    conf = config_file(tmp_path, '[functions."record_v0.0"]\nslices = 3\n')
    faststack.env["AMWORKER_CONFIG_FILE"] = str(conf)
    faststack.celery_worker("w1", concurrency=5)
    shim = faststack.shim("shim-1")
    record, gate, gate_b = tmp_path / "runs", tmp_path / "gate", tmp_path / "gate-b"
    # Batch A is still running when the shim dies; batch B finishes while no
    # shim is alive (its answer must come from the stored Celery results).
    tasks_a = make_tasks([gate_args(record, gate)] * 3)
    tasks_b = make_tasks([gate_args(record, gate_b)] * 2)
    unique_b = str(uuid.uuid4())
    a = submit_bg(faststack.server, "record_v0.0", tasks_a, unique=str(uuid.uuid4()), timeout=180)
    wait_records(record, 3)
    b = submit_bg(faststack.server, "record_v0.0", tasks_b, unique=unique_b, timeout=180)
    wait_records(record, 5)

    shim.kill()  # SIGKILL: the Gearman connections drop, gearmand re-queues both jobs
    gate_b.touch()
    token_b = keys.batch_token("record_v0.0", unique_b, b"", tasks_b)
    collect_b = result_prefix() + keys.collect_id(token_b)
    wait_until(lambda: faststack.redis.exists(collect_b) == 1, timeout=60,
               what="batch B to finish on Celery while no shim runs")
    # Both jobs were already counted (queued counts running ones too) before
    # the kill: only "none running, no worker" says gearmand dropped the dead
    # shim and put both back in its queue. It also makes shim-2's readiness
    # (a registered worker) its own, not shim-1's stale registration.
    wait_until(lambda: gearman_status(faststack.gearman_port)["record_v0.0"] == (2, 0, 0),
               timeout=30, what="gearmand to drop the dead shim and re-queue both batches")
    faststack.shim("shim-2")
    restarted = time.monotonic()
    gate.touch()

    # The controller's original connections receive the complete answers.
    for pending, tasks in ((a, tasks_a), (b, tasks_b)):
        answer = pending.wait(120)
        assert_all_answered(answer)
        assert all(answer.exit_code(t) == 0 for t in tasks), answer.results
    # Every task ran exactly once: the new shim attached, it did not re-dispatch.
    ran = [t for t, _ in records(record)]
    assert sorted(ran) == sorted([*tasks_a, *tasks_b])
    print(f"both answered {time.monotonic() - restarted:.1f}s after the new shim registered; "
          f"{len(ran)} executions for {len(ran)} tasks")
    log = (tmp_path / "shim-2.log").read_text()
    assert "attaching to the work under way" in log or "re-delivered" in log
