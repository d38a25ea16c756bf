"""Helpers of the fault tests: a private stack, batches, pool pids.

Every test here inflicts its fault on real processes (SIGKILL, SIGTERM,
restarting servers on the same port) and waits on conditions, never on fixed
sleeps. Lease, queue-wait and time-limit knobs are small so faults resolve in
seconds.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from tests.services import Stack, stack, start_gearmand, start_redis, wait_until
from worker.cli.gearman_client import GearmanClient, Submission
from worker.codec.wire import Encoding, decode_result, encode_request

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


def rss_mb(pid: int) -> float:
    """Resident set size of a process now (``VmRSS``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS")


def _count(client: redis.Redis, pattern: str) -> int:
    return sum(1 for _ in client.scan_iter(match=pattern, count=1000))


@dataclass(frozen=True)
class Sample:
    """The shim's memory and Redis's size at one moment of a long run."""

    seconds: float
    shim_rss_mb: float
    redis_used_mb: float
    keys: int
    amworker_keys: int
    meta_keys: int


class Sampler:
    """Samples :class:`Sample` every ``every`` seconds from a thread, until stopped.

    The cadence is the point here (a time series), not synchronisation.
    ``pid`` is called at each sample, so a restarted shim is followed.
    """

    def __init__(self, pid: Callable[[], int], client: redis.Redis, every: float) -> None:
        self.pid = pid
        self.client = client
        self.every = every
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._started = 0.0

    def start(self) -> None:
        """Take the first sample now, then one every ``every`` seconds."""
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> list[Sample]:
        """Stop sampling; the samples taken."""
        self._stop.set()
        self._thread.join(timeout=30)
        return self.samples

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            try:
                self.samples.append(self.sample())
            except (OSError, RuntimeError, redis.RedisError) as exc:
                self.errors.append(repr(exc))
            tick += 1
            # Fixed cadence: the next tick is due at start + tick * every.
            self._stop.wait(max(0.0, self._started + tick * self.every - time.monotonic()))

    def sample(self) -> Sample:
        """One sample, now."""
        info = self.client.info("memory")
        return Sample(
            seconds=round(time.monotonic() - self._started, 2),
            shim_rss_mb=round(rss_mb(self.pid()), 2),
            redis_used_mb=round(int(info["used_memory"]) / 2**20, 3),
            keys=int(self.client.dbsize()),
            amworker_keys=_count(self.client, "amworker:*"),
            meta_keys=_count(self.client, "celery-task-meta-*"),
        )


def slope_per_minute(samples: Sequence[Sample], field_name: str) -> float:
    """Least-squares slope of ``field_name`` over time, per minute."""
    if len(samples) < 2:
        raise ValueError("a slope needs at least two samples")
    xs = [s.seconds / 60 for s in samples]
    ys = [float(getattr(s, field_name)) for s in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        raise ValueError("samples all at one moment")
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def second_half(samples: Sequence[Sample]) -> list[Sample]:
    """The samples taken in the second half of the run (by time)."""
    if not samples:
        return []
    middle = samples[-1].seconds / 2
    return [s for s in samples if s.seconds >= middle]


def summarise(samples: Sequence[Sample]) -> dict[str, object]:
    """First, last and second-half slopes of every sampled series (JSON-safe)."""
    half = second_half(samples)
    fields = ("shim_rss_mb", "redis_used_mb", "keys", "amworker_keys", "meta_keys")
    return {
        "samples": len(samples),
        "first": asdict(samples[0]) if samples else None,
        "last": asdict(samples[-1]) if samples else None,
        "second_half_slope_per_minute": {
            name: round(slope_per_minute(half, name), 4) for name in fields
        } if len(half) >= 2 else {},
    }


@dataclass
class MixedLoad:
    """Controllers submitting batches of 1-256 tasks of mixed scripts, back to back.

    ``choose`` picks a batch's function and arguments list for a batch size;
    every answer is checked (each task UUID answered); problems are kept.
    """

    server: str
    choose: Callable[[random.Random, int], tuple[str, list[str]]]
    controllers: int = 3
    max_tasks: int = 256
    seed: int = 8
    batches: int = 0
    tasks: int = 0
    problems: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, seconds: float, *, timeout: float = 300) -> None:
        """Submit until ``seconds`` have passed; return when every controller is done."""
        until = time.monotonic() + seconds
        threads = [threading.Thread(target=self._controller, args=(self.seed + i, until, timeout),
                                    name=f"controller-{i}", daemon=True)
                   for i in range(self.controllers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + timeout + 60)
        if any(thread.is_alive() for thread in threads):
            self.problems.append("a controller never got its last answer")

    def _controller(self, seed: int, until: float, timeout: float) -> None:
        rng = random.Random(seed)
        while time.monotonic() < until:
            function, arguments = self.choose(rng, rng.randint(1, self.max_tasks))
            tasks = make_tasks(arguments, wants_output=rng.random() < 0.5)
            try:
                answer = submit(self.server, function, tasks, timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - counted; the run goes on
                self._problem(f"{function}: {exc!r}")
                continue
            if answer.results is None or set(answer.results) != set(tasks):
                self._problem(f"{function}: {len(tasks)} tasks, answer incomplete or WORK_FAIL")
            with self._lock:
                self.batches += 1
                self.tasks += len(tasks)

    def _problem(self, text: str) -> None:
        with self._lock:
            self.problems.append(text)

