"""Fault 1: a Celery pool process dies mid-slice (SIGKILL to the child)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.controller import make_tasks, submit, submit_bg
from harness.services import Stack
from tests.faults.helpers import (
    alive,
    assert_all_answered,
    children,
    config_file,
    failed_with,
    gate_args,
    kill,
    wait_records,
    wait_until,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]


def test_killed_pool_process_fails_only_its_slice(faststack: Stack, tmp_path: Path) -> None:
    conf = config_file(tmp_path, '[functions."record_v0.0"]\nslices = 2\n')
    faststack.env["AMWORKER_CONFIG_FILE"] = str(conf)
    worker = faststack.celery_worker("w1", concurrency=2)
    faststack.shim()
    record, gate_a, gate_b = tmp_path / "runs", tmp_path / "gate-a", tmp_path / "gate-b"
    tasks = make_tasks([gate_args(record, gate_a), gate_args(record, gate_b)])
    first, second = list(tasks)
    pending = submit_bg(faststack.server, "record_v0.0", tasks)

    runs = dict(wait_records(record, 2))
    victim = runs[first]
    assert victim in children(worker.pid), "the slice must run in a pool child of the worker"
    kill(victim)
    killed_at = time.monotonic()
    gate_b.touch()  # the other slice finishes normally

    answer = pending.wait(90)
    print(f"answered {time.monotonic() - killed_at:.1f}s after the kill")
    assert_all_answered(answer)
    assert failed_with(answer, first, "worker lost"), answer.results
    assert answer.exit_code(second) == 0, answer.results
    assert "amworker" not in answer.stderr(second)

    # The worker replaced the child and keeps serving.
    assert worker.alive()
    wait_until(lambda: len([p for p in children(worker.pid) if alive(p)]) >= 2, timeout=60,
               what="the pool to replace the killed process")
    again = submit(faststack.server, "record_v0.0",
                   make_tasks([str(tmp_path / "again"), str(tmp_path / "again")]), timeout=90)
    assert_all_answered(again)
    assert all(again.exit_code(t) == 0 for t in again.tasks), again.results
    # The killed slice was never re-run behind the operator's back.
    assert [t for t, _ in wait_records(record, 2)].count(first) == 1


def test_a_pool_process_over_its_memory_bound_is_replaced_and_no_slice_is_lost(
    faststack: Stack, tmp_path: Path,
) -> None:
    # 220 MB leaked per slice against a 200 MB bound: every slice leaves its
    # process over the bound, so each next slice must run in a fresh one.
    faststack.env["AMWORKER_MAX_MEMORY_PER_CHILD"] = str(200 * 1024)
    worker = faststack.celery_worker("w1", concurrency=1)
    faststack.shim()
    record = tmp_path / "runs"
    batches = [make_tasks([f"{record} 220"]) for _ in range(4)]

    pending = [submit_bg(faststack.server, "leaksmemory_v0.0", tasks) for tasks in batches]
    answers = [p.wait(120) for p in pending]

    for answer in answers:
        assert_all_answered(answer)
        assert all(answer.exit_code(t) == 0 for t in answer.tasks), answer.results
    runs = wait_records(record, 4)
    assert sorted(t for t, _ in runs) == sorted(t for b in batches for t in b)
    pids = [pid for _, pid in runs]
    assert len(set(pids)) == 4, f"every slice should run in a fresh pool process: {pids}"
    assert worker.alive()
