"""A worker started with another modules file than the shim's (issue 8, item 6).

Before, the worker ran whatever *its* modules file mapped the function to: a
different script, exit code 0, no word anywhere. Now the slice carries the
entry the shim planned for; the worker refuses it (``script mismatch``, with
both modules named), logs it, and ``amworker check`` names the worker.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.controller import make_tasks, submit
from harness.services import ROOT, Stack, wait_until
from tests.faults.helpers import assert_all_answered, failed_with
from tests.integration.ops import write_modules
from worker.pool import advertise

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]


def test_a_worker_with_another_modules_file_refuses_the_slice_and_check_says_so(
    faststack: Stack, tmp_path: Path,
) -> None:
    shims = write_modules(tmp_path / "shim.ini", {"echo_v0.0": "echo_args", "sliced_v0.0": "sliced"})
    # Same function names; echo_v0.0 runs another script here.
    workers = write_modules(tmp_path / "worker.ini", {"echo_v0.0": "exit_with",
                                                      "sliced_v0.0": "sliced"})
    faststack.env["AMWORKER_MODULES_FILE"] = str(shims)
    worker = faststack.celery_worker("other", extra={"AMWORKER_MODULES_FILE": str(workers)})
    faststack.shim(functions=2)

    tasks = make_tasks(["--one", "--two"])
    answer = submit(faststack.server, "echo_v0.0", tasks)

    assert_all_answered(answer)
    for task_id in tasks:
        assert failed_with(answer, task_id, "script mismatch"), answer.stderr(task_id)
        assert "tests.fixture_scripts.echo_args" in answer.stderr(task_id)
        assert "tests.fixture_scripts.exit_with" in answer.stderr(task_id)
    wait_until(lambda: "refusing a slice" in worker.output(), timeout=30,
               what="the worker logging the mismatch")
    # A function both map alike still runs.
    same = make_tasks(["x"])
    assert submit(faststack.server, "sliced_v0.0", same).exit_code(next(iter(same))) == 0
    node = f"other@{socket.gethostname()}"
    wait_until(lambda: faststack.redis.exists(advertise.key(node)) == 1, timeout=30,
               what="the worker to advertise its scripts")

    check = subprocess.run([sys.executable, "-m", "worker.cli", "check"], env=faststack.env,
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    line = next((x for x in check.stdout.splitlines() if x.startswith("[FAIL] worker other@")), "")
    assert "echo_v0.0 = tests.fixture_scripts.exit_with there, tests.fixture_scripts.echo_args here" \
        in line, check.stdout
    assert "sliced_v0.0" not in line
    assert check.returncode == 1


def test_a_worker_with_the_same_modules_file_is_reported_alike(faststack: Stack) -> None:
    faststack.celery_worker("same")
    # The worker writes its advertisement from a thread it starts once ready;
    # answering a ping does not prove the thread has written it yet.
    node = f"same@{socket.gethostname()}"
    wait_until(lambda: faststack.redis.exists(advertise.key(node)) == 1, timeout=30,
               what="the worker to advertise its scripts")

    check = subprocess.run([sys.executable, "-m", "worker.cli", "check"], env=faststack.env,
                           cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert any(x.startswith("[ ok ] worker same@") and "same scripts" in x
               for x in check.stdout.splitlines()), check.stdout
