"""Flower, started as an operator would, shows each slice of a batch, safely.

``amworker flower`` runs ``celery -A worker flower``, which reads the task
events the worker sends (on by default in worker.celery); its HTTP API must
show every slice with a readable name, the batch's identifiers in the kwargs,
and state SUCCESS once done. Without ``--address`` it must listen on the
loopback only; with ``--basic-auth`` (the docs' example) it must refuse a
request without the login and answer one with it; and an address off the
loopback with no login is refused before Flower starts.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.services import ROOT, Proc, Stack, accepts, free_port, spawn, stack, wait_until
from tests.integration.ops import http_json, run_batch, write_modules

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
        # The docs' unauthenticated-API example: no address given.
        env = {**deployed.env, "FLOWER_UNAUTHENTICATED_API": "true"}
        _start_flower(deployed, env, "flower", f"--port={port}")
        # Flower learns of workers from their heartbeats; wait until it knows ours
        # so the batch's events are not sent before it listens.
        wait_until(lambda: _knows_worker(port), timeout=60, what="Flower seeing the worker",
                   interval=0.5)
        yield deployed, port


def _start_flower(deployed: Stack, env: dict[str, str], name: str, *args: str) -> Proc:
    """``amworker flower ARGS`` in the background, once it accepts connections."""
    proc = spawn(name, [sys.executable, "-m", "worker.cli", "flower", *args], env=env,
                 workdir=deployed.workdir)
    deployed.procs.append(proc)
    port = int(next(a for a in args if a.startswith("--port=")).split("=", 1)[1])
    wait_until(lambda: accepts(port) or not proc.alive(), timeout=60, what="Flower",
               interval=0.2)
    assert proc.alive(), proc.output()
    return proc


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) with a socket listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.append(address)
    return found


def _status(url: str, login: str | None = None) -> int:
    request = urllib.request.Request(url)
    if login is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


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
    """The slice tasks Flower knows, once ``count`` of them have succeeded and been seen sent.

    The shim's task-sent events and the worker's events come over separate
    connections, in no set order: a slice can be SUCCESS before its sent event arrives.
    """
    deadline = time.monotonic() + timeout
    slices: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        tasks = http_json(f"http://127.0.0.1:{port}/api/tasks")
        assert isinstance(tasks, dict)
        slices = [t for task_id, t in tasks.items() if ":slice-" in task_id]
        if sum(1 for t in slices if t.get("state") == "SUCCESS" and t.get("sent")) >= count:
            return slices
        time.sleep(0.2)
    raise AssertionError(f"Flower did not show {count} finished slices: {slices}")


def test_flower_listens_on_the_loopback_only_by_default(flower: tuple[Stack, int]) -> None:
    _, port = flower
    # 0100007F is 127.0.0.1; 00000000 (every interface) must not appear.
    assert _listening(port) == ["0100007F"]


def test_flower_basic_auth_refuses_without_the_login(flower: tuple[Stack, int]) -> None:
    deployed, _ = flower
    port = free_port()
    # The basic-auth example of docs/operations.md.
    _start_flower(deployed, dict(deployed.env), "flower-auth", f"--port={port}",
                  "--basic-auth=ops:change-me")
    url = f"http://127.0.0.1:{port}/api/workers"
    assert _status(url) == 401
    assert _status(url, "ops:wrong") == 401
    assert _status(url, "ops:change-me") == 200
    assert _listening(port) == ["0100007F"]


def test_flower_off_the_loopback_without_a_login_is_refused(flower: tuple[Stack, int]) -> None:
    deployed, _ = flower
    port = free_port()
    done = subprocess.run([sys.executable, "-m", "worker.cli", "flower", f"--port={port}",
                           "--address=0.0.0.0"], env=deployed.env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "open to anyone" in done.stderr and "--basic-auth" in done.stderr
    assert _listening(port) == []

