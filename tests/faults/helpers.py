"""Helpers of the fault tests: a private stack, batches, pool pids.

Every test here inflicts its fault on real processes (SIGKILL, SIGTERM,
restarting servers on the same port) and waits on conditions, never on fixed
sleeps. Lease, queue-wait and time-limit knobs are small so faults resolve in
seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from harness.controller import Answer, make_tasks, submit
from harness.services import Stack, stack, start_gearmand, start_redis
from harness.services import wait_until as wait_until  # the fault tests import it from here
from worker.batch.dispatch import load_plan
from worker.contract import keys

#: Knobs that make faults resolve in seconds (see docs/reliability.md).
FAST = {
    "AMWORKER_LEASE_SECONDS": "1",
    "AMWORKER_QUEUE_WAIT": "60",
    "AMWORKER_TIME_LIMIT": "120",
    "AMWORKER_VISIBILITY_TIMEOUT": "10",
}


@pytest.fixture
def faststack(tmp_path: Path) -> Iterator[Stack]:
    """A private gearmand and Redis with the fast knobs; processes started by the test."""
    with stack(tmp_path, env=FAST) as s:
        yield s


def records(path: Path) -> list[tuple[str, int]]:
    """(task uuid, pid) lines the record script wrote."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        task_id, _, pid = line.partition(" ")
        if pid:
            out.append((task_id, int(pid)))
    return out


def wait_records(path: Path, count: int, *, timeout: float = 60) -> list[tuple[str, int]]:
    """Wait until the record script has logged ``count`` executions."""
    wait_until(lambda: len(records(path)) >= count, timeout=timeout,
               what=f"{count} execution(s) recorded in {path}", interval=0.05)
    return records(path)


def wait_sent(s: Stack, function: str, unique: str, tasks: Iterable[str], *,
              timeout: float = 30) -> None:
    """Wait until the shim has handed every slice of the batch to the broker.

    A slice may start running before its siblings are published; the batch's
    plan in Redis says ``sent`` only once the publish of them all returned.
    """
    token = keys.batch_token(function, unique, b"", tasks)

    def sent() -> bool:
        plan = load_plan(s.redis, token)
        return plan is not None and plan.sent

    wait_until(sent, timeout=timeout, what=f"the shim to send every slice of batch {unique}")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's children), from /proc."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(p) for p in f.read().split())
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal one process, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def gate_args(record: Path, gate: Path, seconds: float = 60) -> str:
    """Arguments of a record_v0.0 task that waits on ``gate`` (at most ``seconds``)."""
    return f"{record} {seconds} {gate}"


def assert_all_answered(answer: Answer) -> None:
    """Every task UUID of the request is in the answer."""
    assert answer.results is not None, "the batch was answered WORK_FAIL"
    assert set(answer.results) == set(answer.tasks)


def failed_with(answer: Answer, task_id: str, cause: str) -> bool:
    """The task failed with exit code 1 and ``amworker: <cause>:`` in stderr."""
    return answer.exit_code(task_id) == 1 and f"amworker: {cause}:" in answer.stderr(task_id)


def assert_broker_lost_at_once(s: Stack, workdir: Path) -> Answer:
    """A batch sent while the broker is gone: every task fails ``broker lost``, none ran."""
    tasks = make_tasks([str(workdir / "runs")] * 3)
    started = time.monotonic()
    answer = submit(s.server, "record_v0.0", tasks, timeout=120)
    assert_all_answered(answer)
    assert all(failed_with(answer, t, "broker lost") for t in tasks), answer.results
    assert not (workdir / "runs").exists()
    print(f"answered in {time.monotonic() - started:.1f}s: {answer.stderr(next(iter(tasks)))!r}")
    return answer


def assert_serves_again(s: Stack, workdir: Path) -> None:
    """After a fault: a new batch runs end to end, every task exit 0."""
    again = submit(s.server, "record_v0.0", make_tasks([str(workdir / "again")] * 2), timeout=120)
    assert_all_answered(again)
    assert all(again.exit_code(t) == 0 for t in again.tasks), again.results


def config_file(workdir: Path, text: str) -> Path:
    """A TOML config file (per-function slices, time limits) for AMWORKER_CONFIG_FILE."""
    path = workdir / "amworker.toml"
    path.write_text(text)
    return path


def use_config(s: Stack, text: str) -> None:
    """The stack's processes started from now on read a config file of ``text``."""
    s.env["AMWORKER_CONFIG_FILE"] = str(config_file(s.workdir, text))


def kill_redis(s: Stack) -> None:
    """SIGKILL the stack's private Redis (found by asking it for its pid)."""
    pid = int(s.redis.info("server")["process_id"])
    kill(pid)
    wait_until(lambda: not alive(pid), timeout=30, what="Redis to die")


def restart_redis(s: Stack) -> None:
    """A fresh, empty Redis on the same port (no persistence: all state is gone)."""
    proc, _ = start_redis(s.workdir, s.redis_port)
    s.procs.insert(0, proc)  # stopped last, after the processes that use it


def gearmand_pid(port: int) -> int:
    """The pid of the gearmand listening on ``port`` (from /proc cmdlines)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"gearmand") and f"--port={port}".encode() in argv:
                return int(entry)
    raise LookupError(f"no gearmand on port {port}")


def kill_gearmand(s: Stack) -> None:
    """SIGKILL the stack's private gearmand: its queue and clients are gone."""
    pid = gearmand_pid(s.gearman_port)
    kill(pid)
    wait_until(lambda: not alive(pid), timeout=30, what="gearmand to die")


def restart_gearmand(s: Stack) -> None:
    """gearmand again on the same port."""
    proc, _ = start_gearmand(s.workdir, s.gearman_port)
    s.procs.insert(0, proc)


# -- long runs: memory and Redis sampled over time ----------------------------
