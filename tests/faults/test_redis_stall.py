"""Fault 5b: a persistent Redis is away for longer than a lease TTL, then back.

While Redis is stopped (SIGSTOP) or down (killed, restarted from its
append-only file) no worker can renew its lease, so every running slice's
lease lapses by Redis's clock although every worker is alive. When Redis
answers again the slices must get one lease TTL to re-set their leases, and
every task its script's real result: not "worker lost".
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from harness.controller import Background, make_tasks, submit_bg
from harness.services import Stack, start_redis
from tests.faults.helpers import (
    assert_all_answered,
    config_file,
    gate_args,
    kill_redis,
    records,
    wait_records,
    wait_until,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

#: Longer than the lease TTL (3 x AMWORKER_LEASE_SECONDS = 3 s), shorter
#: than the Redis clients' socket timeout (30 s): a pure stall, no errors.
STOPPED_SECONDS = 8


def _persistent_redis(s: Stack) -> None:
    """Swap the stack's Redis for a persistent one on the same port, before anything connects."""
    kill_redis(s)
    proc, _ = start_redis(s.workdir, s.redis_port, appendonly=True)
    s.procs.insert(0, proc)
    assert s.redis.config_get("appendonly")["appendonly"] == "yes"


def _four_running_slices(s: Stack, tmp_path: Path) -> tuple[Background, dict[str, Any], Path, Path]:
    conf = config_file(tmp_path, '[functions."record_v0.0"]\nslices = 4\n')
    s.env["AMWORKER_CONFIG_FILE"] = str(conf)
    s.celery_worker("w1", concurrency=4)
    s.shim()
    record, gate = tmp_path / "runs", tmp_path / "gate"
    tasks = make_tasks([gate_args(record, gate, 120)] * 4)
    pending = submit_bg(s.server, "record_v0.0", tasks, timeout=200)
    wait_records(record, 4)  # every slice is running, leased, waiting on the gate
    return pending, tasks, record, gate


#: MGETs in one check of a batch by the shim: one pipeline reading the slices'
#: results, claims and leases (worker.batch.settling.Settler._read). Two
#: checks are ``2 * MGETS_PER_CHECK`` calls, not 2.
MGETS_PER_CHECK = 3


def _mgets(s: Stack) -> int:
    return int(s.redis.info("commandstats").get("cmdstat_mget", {}).get("calls", 0))


def _checked_twice_since(s: Stack, mgets: int) -> bool:
    """The shim has made two checks since Redis counted ``mgets`` MGET calls."""
    return _mgets(s) >= mgets + 2 * MGETS_PER_CHECK


def _assert_real_results(pending: Background, tasks: dict[str, Any], record: Path) -> None:
    answer = pending.wait(120)
    assert_all_answered(answer)
    for task_id in tasks:
        assert answer.exit_code(task_id) == 0, answer.stderr(task_id)
        assert "worker lost" not in answer.stderr(task_id)
    assert sorted(t for t, _ in records(record)) == sorted(tasks)  # each ran once


def test_running_slices_survive_a_redis_stall_longer_than_the_lease(faststack: Stack, tmp_path: Path) -> None:
    _persistent_redis(faststack)
    pending, tasks, record, gate = _four_running_slices(faststack, tmp_path)

    pid = int(faststack.redis.info("server")["process_id"])
    os.kill(pid, signal.SIGSTOP)
    try:
        # The fault is the stall's length itself (no state to wait on: Redis
        # cannot be asked anything while it is stopped).
        time.sleep(STOPPED_SECONDS)
    finally:
        os.kill(pid, signal.SIGCONT)
    before = _mgets(faststack)
    wait_until(lambda: _checked_twice_since(faststack, before), timeout=60,
               what="the shim to check the batch after Redis resumed")
    gate.touch()

    _assert_real_results(pending, tasks, record)


def test_running_slices_survive_a_persistent_redis_down_longer_than_the_lease(
    faststack: Stack, tmp_path: Path,
) -> None:
    # Item 10 of issue 8: Redis comes back with every key it had (append-only
    # file), but the leases expired meanwhile; the shim and the workers
    # reconnect in any order.
    _persistent_redis(faststack)
    pending, tasks, record, gate = _four_running_slices(faststack, tmp_path)

    kill_redis(faststack)
    # The outage is the fault: it must outlast the lease TTL (3 s).
    time.sleep(STOPPED_SECONDS)
    proc, _ = start_redis(faststack.workdir, faststack.redis_port, appendonly=True)
    faststack.procs.insert(0, proc)
    # Keep the slices running until the shim has judged them at least twice
    # after Redis came back (its checks are the only MGETs here), so the
    # answer cannot simply be the finished results.
    before = _mgets(faststack)
    wait_until(lambda: _checked_twice_since(faststack, before), timeout=60,
               what="the shim to check the batch after Redis came back")
    gate.touch()

    _assert_real_results(pending, tasks, record)
