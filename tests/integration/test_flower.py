"""Flower, started as an operator would, shows each slice of a batch.

``celery -A worker flower`` reads the task events the worker sends (on by
default in worker.celery); its HTTP API must show every slice with a readable
name, the batch's identifiers in the kwargs, and state SUCCESS once done.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.ops import http_json, run_batch, write_modules
from tests.services import Proc, Stack, accepts, free_port, spawn, stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FUNCTIONS = {"sliced_v0.0": "sliced"}


@pytest.fixture(scope="module")
def flower(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, int]]:
    workdir = tmp_path_factory.mktemp("flower")
    modules = write_modules(workdir / "modules.ini", FUNCTIONS)
    port = free_port()
    with stack(workdir, modules_file=modules) as deployed:
        deployed.celery_worker("flower-it", concurrency=2)
        deployed.shim(functions=len(FUNCTIONS))
        env = {**deployed.env, "FLOWER_UNAUTHENTICATED_API": "true"}
        proc: Proc = spawn("flower", [sys.executable, "-m", "celery", "-A", "worker", "flower",
                                      f"--port={port}", "--address=127.0.0.1"],
                           env=env, workdir=workdir)
        deployed.procs.append(proc)
        wait_until(lambda: accepts(port) or not proc.alive(), timeout=60, what="Flower",
                   interval=0.2)
        assert proc.alive(), proc.output()
        # Flower learns of workers from their heartbeats; wait until it knows ours
        # so the batch's events are not sent before it listens.
        wait_until(lambda: _knows_worker(port), timeout=60, what="Flower seeing the worker",
                   interval=0.5)
        yield deployed, port


def _knows_worker(port: int) -> bool:
    try:
        workers = http_json(f"http://127.0.0.1:{port}/api/workers?refresh=true")
    except OSError:
        return False
    return isinstance(workers, dict) and any(name.startswith("flower-it@") for name in workers)


def test_flower_shows_each_slice_with_its_batch(flower: tuple[Stack, int]) -> None:
    deployed, port = flower
    results = run_batch(deployed.server, "sliced_v0.0", tasks=4)
    assert [r.exit_code for r in results] == [0] * 4

    slices = _wait_for_slices(port, count=4)

    names = sorted(task["name"] for task in slices)
    assert names == [f"sliced_v0.0 slice {i}/4" for i in range(1, 5)]
    batches = set()
    for task in slices:
        assert task["state"] == "SUCCESS", task
        # queued -> started -> done: the shim's task-sent event and the worker's.
        assert task["sent"] and task["started"] and task["succeeded"], task
        kwargs = task["kwargs"]
        assert "'function': 'sliced_v0.0'" in kwargs
        assert "'tasks': 1" in kwargs
        assert "'slice': '" in kwargs and "/4'" in kwargs
        batches.add(kwargs.split("'batch': '", 1)[1].split("'", 1)[0])
    # One batch: its UUID (the Gearman unique) is in every slice's kwargs.
    assert len(batches) == 1
    assert batches.pop().startswith("sliced_v0.0:")


def _wait_for_slices(port: int, *, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The slice tasks Flower knows, once ``count`` of them have succeeded."""
    deadline = time.monotonic() + timeout
    slices: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        tasks = http_json(f"http://127.0.0.1:{port}/api/tasks")
        assert isinstance(tasks, dict)
        slices = [t for task_id, t in tasks.items() if ":slice-" in task_id]
        if sum(1 for t in slices if t.get("state") == "SUCCESS") >= count:
            return slices
        time.sleep(0.2)
    raise AssertionError(f"Flower did not show {count} finished slices: {slices}")
