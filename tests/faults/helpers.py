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
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.services import Stack, stack, start_gearmand, start_redis, wait_until
from worker.gearman_client import GearmanClient, Submission
from worker.wire import Encoding, decode_result, encode_request

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


def make_tasks(arguments: Sequence[str], *, wants_output: bool = True) -> dict[str, dict[str, object]]:
    """One task per arguments string, keyed by a fresh UUID."""
    created = datetime.now(UTC).isoformat()
    tasks: dict[str, dict[str, object]] = {}
    for args in arguments:
        task_id = str(uuid.uuid4())
        tasks[task_id] = {"uuid": task_id, "createdDate": created, "arguments": args,
                          "wants_output": wants_output}
    return tasks


@dataclass
class Answer:
    """What the controller got for one batch: per-task dicts, or None on WORK_FAIL."""

    tasks: dict[str, dict[str, object]]
    results: dict[str, dict[str, object]] | None = None
    error: BaseException | None = None

    def exit_code(self, task_id: str) -> int:
        assert self.results is not None
        return int(self.results[task_id]["exitCode"])  # type: ignore[call-overload]

    def stderr(self, task_id: str) -> str:
        assert self.results is not None
        return str(self.results[task_id].get("stderror", ""))

    def stdout(self, task_id: str) -> str:
        assert self.results is not None
        return str(self.results[task_id].get("stdout", ""))


def submit(server: str, function: str, tasks: dict[str, dict[str, object]], *,
           unique: str | None = None, timeout: float = 90,
           encoding: Encoding = Encoding.JSON) -> Answer:
    """Submit one batch like the controller does and wait for its answer."""
    with GearmanClient(server, connect_timeout=10) as client:
        outcome = client.submit(function, encode_request(tasks, encoding),
                                unique=unique or str(uuid.uuid4()), timeout=timeout)
    answer = Answer(tasks)
    if outcome.complete:
        answer.results = decode_result(outcome.data)
    return answer


@dataclass
class Background:
    """A batch submitted from a thread, so the test can inflict faults meanwhile."""

    answer: Answer
    thread: threading.Thread
    done: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float) -> Answer:
        assert self.done.wait(timeout), f"no answer within {timeout}s"
        if self.answer.error is not None:
            raise self.answer.error
        return self.answer


def submit_bg(server: str, function: str, tasks: dict[str, dict[str, object]], *,
              unique: str | None = None, timeout: float = 90,
              encoding: Encoding = Encoding.JSON) -> Background:
    """:func:`submit` in a daemon thread."""
    answer = Answer(tasks)
    done = threading.Event()

    def run() -> None:
        try:
            got = submit(server, function, tasks, unique=unique, timeout=timeout, encoding=encoding)
            answer.results = got.results
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            answer.error = exc
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return Background(answer, thread, done)


def submit_many(server: str, batches: Sequence[tuple[str, dict[str, dict[str, object]], str]], *,
                timeout: float) -> list[Answer]:
    """Submit (function, tasks, unique) batches on one connection, all in flight at once."""
    with GearmanClient(server, connect_timeout=10) as client:
        outcomes = client.submit_many(
            [Submission(fn, encode_request(tasks, Encoding.JSON), unique)
             for fn, tasks, unique in batches], timeout=timeout)
    answers = []
    for (_, tasks, _), outcome in zip(batches, outcomes, strict=True):
        answers.append(Answer(tasks, decode_result(outcome.data) if outcome.complete else None))
    return answers


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




def config_file(workdir: Path, text: str) -> Path:
    """A TOML config file (per-function slices, time limits) for AMWORKER_CONFIG_FILE."""
    path = workdir / "amworker.toml"
    path.write_text(text)
    return path


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
