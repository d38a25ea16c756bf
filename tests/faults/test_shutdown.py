"""Fault 9: graceful shutdown (SIGTERM) of the shim and of a Celery worker."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from harness.controller import make_tasks, submit_bg
from harness.services import Stack, gearman_status
from tests.faults.helpers import (
    assert_all_answered,
    config_file,
    gate_args,
    records,
    wait_records,
    wait_until,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]


def _workers(port: int, function: str = "record_v0.0") -> int:
    return gearman_status(port).get(function, (0, 0, 0))[2]


def test_sigterm_to_the_shim_answers_in_flight_and_takes_nothing_new(
    faststack: Stack, tmp_path: Path,
) -> None:
    faststack.celery_worker("w1", concurrency=2)
    shim = faststack.shim("shim-1")
    record, gate = tmp_path / "runs", tmp_path / "gate"
    in_flight = make_tasks([gate_args(record, gate)])
    a = submit_bg(faststack.server, "record_v0.0", in_flight, timeout=120)
    wait_records(record, 1)

    shim.popen.send_signal(signal.SIGTERM)
    # B must come after the shim heard it: a batch queued in the same
    # instant may still be taken (and is then answered within the grace).
    wait_until(lambda: "taking no new batches" in shim.output(), timeout=30,
               what="the shim to stop taking batches")
    # The shim keeps its one connection (and registration) until batch A is answered.
    assert _workers(faststack.gearman_port) == 1, "one shim connection registered"
    later = make_tasks([str(record)])
    b = submit_bg(faststack.server, "record_v0.0", later, timeout=120)
    wait_until(lambda: gearman_status(faststack.gearman_port)["record_v0.0"][0] >= 2, timeout=30,
               what="batch B queued in gearmand")
    gate.touch()
    answer = a.wait(60)
    assert_all_answered(answer)
    assert all(answer.exit_code(t) == 0 for t in in_flight)
    assert shim.popen.wait(60) == 0, "the shim exits 0 after answering"
    assert list(later)[0] not in {t for t, _ in records(record)}, "B was not taken"

    faststack.shim("shim-2")  # B waits in gearmand for the next shim
    answer = b.wait(60)
    assert_all_answered(answer)
    assert all(answer.exit_code(t) == 0 for t in later)


def test_sigterm_to_a_celery_worker_finishes_started_slices(faststack: Stack, tmp_path: Path) -> None:
    conf = config_file(tmp_path, '[functions."record_v0.0"]\nslices = 2\n')
    faststack.env["AMWORKER_CONFIG_FILE"] = str(conf)
    leaving = faststack.celery_worker("leaving", concurrency=1)
    faststack.shim()
    record, gate = tmp_path / "runs", tmp_path / "gate"
    tasks = make_tasks([gate_args(record, gate)] * 2)
    first, second = list(tasks)
    pending = submit_bg(faststack.server, "record_v0.0", tasks, timeout=120)
    ((started, _),) = wait_records(record, 1)
    assert started == first

    leaving.popen.send_signal(signal.SIGTERM)  # warm shutdown: finish, take nothing new
    # Open the gate only once the worker is in warm shutdown, so the slice
    # does not end before it is (and the next one is not taken by a worker
    # still running). Celery's handler writes this line and sets the flag its
    # loop checks before taking anything, both in the one handler call.
    wait_until(lambda: "Warm shutdown (MainProcess)" in leaving.output(), timeout=30,
               what="the worker to begin its warm shutdown")
    gate.touch()
    assert leaving.popen.wait(60) == 0
    # The slice it had not started was never reserved (prefetch disabled): it
    # waits in the queue for the next worker.
    assert second not in {t for t, _ in records(record)}
    faststack.celery_worker("next", concurrency=1)
    answer = pending.wait(90)
    assert_all_answered(answer)
    assert all(answer.exit_code(t) == 0 for t in tasks), answer.results
    assert sorted(t for t, _ in records(record)) == sorted(tasks), "each ran exactly once"
