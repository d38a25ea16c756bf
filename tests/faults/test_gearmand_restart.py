"""Fault 4: gearmand restarts, idle and with batches in flight."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from harness.controller import make_tasks, submit, submit_bg
from harness.services import Stack, gearman_status
from tests.faults.helpers import (
    assert_all_answered,
    config_file,
    gate_args,
    kill_gearmand,
    records,
    restart_gearmand,
    wait_records,
    wait_until,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]


def _registered(port: int) -> bool:
    try:
        return gearman_status(port).get("record_v0.0", (0, 0, 0))[2] > 0
    except OSError:
        return False


def test_idle_restart_reconnects_with_backoff_and_reregisters(faststack: Stack, tmp_path: Path) -> None:
    faststack.celery_worker("w1", concurrency=1)
    shim = faststack.shim()
    kill_gearmand(faststack)
    # Let the shim notice and back off at least twice before it returns.
    wait_until(lambda: len(re.findall(r"retry 2 in", shim.output())) > 0, timeout=60,
               what="two logged reconnection attempts")
    restart_gearmand(faststack)
    wait_until(lambda: _registered(faststack.gearman_port), timeout=60,
               what="the shim to re-register its functions")
    answer = submit(faststack.server, "record_v0.0", make_tasks([str(tmp_path / "r")]), timeout=60)
    assert_all_answered(answer)
    assert all(answer.exit_code(t) == 0 for t in answer.tasks)
    attempts = re.findall(r"no gearmand reachable .* retry (\d+) in ([\d.]+)s", shim.output())
    delays = [float(d) for _, d in attempts]
    assert delays and max(delays) <= 10.0, "backoff is bounded"
    print(f"{len(attempts)} logged reconnection attempts, longest delay {max(delays)}s")


def test_restart_with_batch_in_flight_does_not_repeat_work(faststack: Stack, tmp_path: Path) -> None:
    conf = config_file(tmp_path, '[functions."record_v0.0"]\nslices = 2\n')
    faststack.env["AMWORKER_CONFIG_FILE"] = str(conf)
    faststack.celery_worker("w1", concurrency=2)
    shim = faststack.shim()
    record, gate = tmp_path / "runs", tmp_path / "gate"
    tasks = make_tasks([gate_args(record, gate)] * 2)
    unique = str(uuid.uuid4())
    first = submit_bg(faststack.server, "record_v0.0", tasks, unique=unique, timeout=120)
    wait_records(record, 2)

    kill_gearmand(faststack)  # the controller's connection and gearmand's queue are gone
    with pytest.raises(Exception):  # noqa: B017 - any client error: the connection broke
        first.wait(30)
    restart_gearmand(faststack)
    wait_until(lambda: _registered(faststack.gearman_port), timeout=60,
               what="the shim to re-register after the restart")
    # The controller re-submits the same batch (same unique, same payload).
    second = submit_bg(faststack.server, "record_v0.0", tasks, unique=unique, timeout=120)
    gate.touch()
    answer = second.wait(120)
    assert_all_answered(answer)
    assert all(answer.exit_code(t) == 0 for t in tasks), answer.results
    assert sorted(t for t, _ in records(record)) == sorted(tasks), "no task ran twice"
    assert shim.alive()
