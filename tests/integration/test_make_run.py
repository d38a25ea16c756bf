"""`make run` starts a private gearmand and Redis when none answers; it must
stop them on its way out, and `make stop` must stop leftovers.

Real processes throughout: scripts/ensure-services daemonises a gearmand and
a Redis on free loopback ports, their pid files in a temporary directory
(``MAKE_RUN_DIR``); the checks read /proc, never sleep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.services import ROOT, accepts, free_port, gearman_status, spawn, wait_until
from tests.faults.helpers import alive

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _env(tmp_path: Path) -> tuple[dict[str, str], int, int]:
    gearman_port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMWORKER_", "ARCHIVEMATICA_"))}
    env.update({
        "MAKE_RUN_DIR": str(tmp_path / "var"),
        "AMWORKER_GEARMAN_SERVERS": f"127.0.0.1:{gearman_port}",
        "AMWORKER_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AMWORKER_RESULT_BACKEND": f"redis://127.0.0.1:{redis_port}/0",
    })
    return env, gearman_port, redis_port


def _pid(path: Path) -> int:
    return int(path.read_text().strip())


def _script(name: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / name), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_stop_services_stops_what_ensure_services_started(tmp_path: Path) -> None:
    env, gearman_port, redis_port = _env(tmp_path)
    started = _script("ensure-services", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    state = tmp_path / "var"
    assert (state / "started").read_text().split() == ["gearmand", "redis"]
    gearmand, redis_server = _pid(state / "gearmand.pid"), _pid(state / "redis.pid")
    assert alive(gearmand) and alive(redis_server)
    assert accepts(gearman_port) and accepts(redis_port)

    stopped = _script("stop-services", "--started", env=env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    # The script waits until each is gone before it reports it stopped.
    assert not alive(gearmand), stopped.stdout
    assert not alive(redis_server), stopped.stdout
    assert not accepts(gearman_port) and not accepts(redis_port)
    assert not (state / "gearmand.pid").exists() and not (state / "redis.pid").exists()
    assert "gearmand: stopped" in stopped.stdout and "redis: stopped" in stopped.stdout


def test_stop_services_never_kills_what_is_not_its_own(tmp_path: Path) -> None:
    env, _, _ = _env(tmp_path)
    state = tmp_path / "var"
    state.mkdir()
    # A stale pid file naming an unrelated, live process.
    bystander = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE)
    try:
        (state / "gearmand.pid").write_text(f"{bystander.pid}\n")
        done = _script("stop-services", env=env)
        assert done.returncode == 0, done.stderr
        assert "no private gearmand or Redis" in done.stdout
        assert bystander.poll() is None, "stop-services killed a process that is not its gearmand"
        assert not (state / "gearmand.pid").exists(), "the stale pid file is left behind"
    finally:
        bystander.kill()
        bystander.wait(10)


def test_make_run_stops_its_private_services_on_ctrl_c(tmp_path: Path) -> None:
    env, gearman_port, redis_port = _env(tmp_path)
    env.update({
        "AMWORKER_DATA_DIRECTORY": str(tmp_path / "data"),
        "AMWORKER_SHARED_DIRECTORY": f"{tmp_path}/shared/",
        "AMWORKER_CLIENT_ASSETS_DIRECTORY": f"{tmp_path}/assets/",
        "AMWORKER_WORKER_CONCURRENCY": "1",
    })
    (tmp_path / "data").mkdir()
    make = spawn("make-run", ["make", "--no-print-directory", "run"], env=env, workdir=tmp_path)
    try:
        state = tmp_path / "var"

        def serving() -> bool:
            assert make.alive(), make.output()
            try:
                return any(workers for (_, _, workers) in gearman_status(gearman_port).values())
            except OSError:
                return False

        wait_until(serving, timeout=120, what="make run's shim registering", interval=0.2)
        gearmand, redis_server = _pid(state / "gearmand.pid"), _pid(state / "redis.pid")
        assert alive(gearmand) and alive(redis_server)
        # Ctrl-C: SIGINT to the whole foreground process group.
        os.killpg(make.pid, signal.SIGINT)
        make.popen.wait(60)
        assert not alive(gearmand), make.output()
        assert not alive(redis_server), make.output()
        assert not accepts(gearman_port) and not accepts(redis_port)
        assert "gearmand: stopped the private one" in make.output()
    finally:
        make.kill()
        _script("stop-services", env=env)
