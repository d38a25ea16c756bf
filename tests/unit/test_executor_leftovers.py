"""The executor kills and reaps child processes a script leaves behind."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.subreaper import is_subreaper
from worker.client.job import Job
from worker.contract.plan import JobSpec
from worker.pool.executor import build_jobs, child_pids, kill_leftovers, run_script

# run_script makes the process a subreaper: hand that back after each test.
pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("restores_subreaper")]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class _Spawner:
    """A script that starts a long sleep and returns without waiting for it."""

    def __init__(self, *, daemonise: bool = False, pidfile: Path | None = None) -> None:
        self.daemonise = daemonise
        self.pidfile = pidfile
        self.pids: list[int] = []

    def call(self, jobs: list[Job]) -> None:
        if self.daemonise:
            assert self.pidfile is not None
            # The shell backgrounds a sleep and exits: the sleep is orphaned.
            subprocess.run(["sh", "-c", f"sleep 60 >/dev/null 2>&1 & echo $! > {self.pidfile}"],
                           check=True, timeout=30)
            self.pids.append(int(self.pidfile.read_text()))
        else:
            self.pids.append(subprocess.Popen(["sleep", "60"]).pid)  # noqa: S607
        for job in jobs:
            job.set_status(0)


def _jobs() -> list[Job]:
    return build_jobs("spawn_v0.0", [JobSpec(uuid="u1", argv=(), wants_output=True)],
                      max_output_bytes=1 << 20)


def test_leftover_child_is_killed_reaped_and_reported() -> None:
    script = _Spawner()
    jobs = _jobs()
    run_script(script, jobs)
    (pid,) = script.pids
    assert _gone(pid), "the leftover must be killed and reaped (no zombie)"
    assert pid not in child_pids()
    assert jobs[0].get_exit_code() == 1
    assert "child process(es) still running" in jobs[0].get_stderr()
    assert str(pid) in jobs[0].get_stderr()


def test_running_a_script_makes_the_process_a_subreaper() -> None:
    # What the restores_subreaper fixture undoes, and the autouse check in
    # tests/conftest.py looks for: the check can see the flag at all.
    run_script(_Spawner(), _jobs())
    assert is_subreaper()


def test_daemonised_grandchild_is_adopted_and_killed(tmp_path: Path) -> None:
    script = _Spawner(daemonise=True, pidfile=tmp_path / "pid")
    jobs = _jobs()
    run_script(script, jobs)
    (pid,) = script.pids
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid)
    assert jobs[0].get_exit_code() == 1


def test_a_leftover_childs_own_child_is_killed_too(tmp_path: Path) -> None:
    # Killing the shell hands its background sleep to this (subreaper)
    # process only once the shell is dead: a single pass over the children
    # missed it, and it lived on into the next slice.
    pidfile = tmp_path / "pid"

    class Nester:
        def call(self, jobs: list[Job]) -> None:
            subprocess.Popen(["sh", "-c", f"sleep 60 & echo $! > {pidfile}.tmp; "  # noqa: S607
                              f"mv {pidfile}.tmp {pidfile}; sleep 60"])
            deadline = time.monotonic() + 10
            while not pidfile.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            for job in jobs:
                job.set_status(0)

    before = child_pids()
    jobs = _jobs()
    run_script(Nester(), jobs)
    grandchild = int(pidfile.read_text())

    assert _gone(grandchild), "the shell's own child must be killed and reaped too"
    assert child_pids() - before == set()
    # The shell, its background sleep and the sleep it was waiting on.
    assert "3 child process(es) still running" in jobs[0].get_stderr()


def test_children_from_before_the_call_are_left_alone() -> None:
    older = subprocess.Popen(["sleep", "60"])  # noqa: S607
    try:
        before = child_pids()
        assert older.pid in before
        assert kill_leftovers(before) == []
        assert older.poll() is None
    finally:
        older.kill()
        older.wait()


def test_a_script_that_waits_for_its_children_is_untouched() -> None:
    class Tidy:
        def call(self, jobs: list[Job]) -> None:
            subprocess.run(["true"], check=True)  # noqa: S607
            for job in jobs:
                job.set_status(0)

    jobs = _jobs()
    run_script(Tidy(), jobs)
    assert jobs[0].get_exit_code() == 0
    assert jobs[0].get_stderr() == ""
