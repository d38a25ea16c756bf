"""The ``amworker`` and ``celery`` command lines against a running stack."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence

import pytest

from harness.services import ROOT, Stack, free_port
from tests.integration.controller import function_count

pytestmark = pytest.mark.integration

#: The installed console script next to this interpreter, else the module
#: (the same entry point, worker.cli.command:main).
_SCRIPT = shutil.which("amworker", path=str(ROOT / ".venv/bin"))
AMWORKER = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "worker.cli"]


def amworker(args: Sequence[str], env: Mapping[str, str],
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AMWORKER, *args], env=dict(env), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("encoding", ["json", "pickle"])
def test_submit_prints_each_tasks_exit_code_and_output(amworker_stack: Stack,
                                                       encoding: str) -> None:
    done = amworker(["submit", "echo_v0.0", "--tasks", "3", "--encoding", encoding,
                     "--wants-output", "--", "hello", "two words"], amworker_stack.env)
    assert done.returncode == 0, done.stderr
    tasks = re.findall(r"^task ([0-9a-f-]{36}): exit code (\d+)$", done.stdout, re.MULTILINE)
    assert len(tasks) == 3 and len({t for t, _ in tasks}) == 3, done.stdout
    assert {code for _, code in tasks} == {"0"}
    assert done.stdout.count("echo_v0.0 hello two words") == 3
    assert done.stdout.count("to stderr") == 3


def test_submit_reports_a_failing_exit_code(amworker_stack: Stack) -> None:
    done = amworker(["submit", "exitcode_v0.0", "--wants-output", "--", "7"], amworker_stack.env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"^task [0-9a-f-]{36}: exit code 7$", done.stdout, re.MULTILINE), done.stdout
    assert "exiting with 7" in done.stdout


def test_submit_to_an_unreachable_gearmand_exits_2(amworker_stack: Stack) -> None:
    port = free_port()
    env = {**amworker_stack.env, "AMWORKER_GEARMAN_SERVERS": f"127.0.0.1:{port}"}
    done = amworker(["submit", "echo_v0.0", "--timeout", "10", "--", "x"], env, timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"cannot submit to gearmand at 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_scripts_lists_functions_modules_slices_and_import_status(amworker_stack: Stack) -> None:
    done = amworker(["scripts"], amworker_stack.env)
    # importfail_v0.0 cannot be imported: the listing says so and exits non-zero.
    assert done.returncode != 0, done.stdout
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:] if line.strip()}
    assert len(rows) == function_count(), done.stdout
    assert re.match(r"echo_v0\.0\s+echo_args\s+1\s", rows["echo_v0.0"]), rows["echo_v0.0"]
    assert re.match(r"sliced_v0\.0\s+sliced\s+4\s", rows["sliced_v0.0"]), rows["sliced_v0.0"]
    assert re.match(r"rendezvous_v0\.0\s+rendezvous\s+2\s", rows["rendezvous_v0.0"])
    assert rows["echo_v0.0"].rstrip().endswith("ok")
    assert "IMPORT FAILED" in rows["importfail_v0.0"]
    assert "No module named 'amworker_no_such_dependency'" in rows["importfail_v0.0"]
    assert all("IMPORT FAILED" not in row for name, row in rows.items()
               if name != "importfail_v0.0")


def test_celery_inspect_registered_lists_the_amworker_tasks(amworker_stack: Stack,
                                                            worker_node: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "inspect", "registered",
         "-d", worker_node, "-t", "10"],
        env=amworker_stack.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert worker_node in done.stdout
    assert "amworker.run_slice" in done.stdout
    assert "amworker.collect" in done.stdout
