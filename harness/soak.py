"""Long-run load and sampling: mixed controllers, and the shim's memory and Redis's size over time.

Shared by the soak fault test and ``bench/soak.py``.
"""

from __future__ import annotations

import fnmatch
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis
from celery import Celery

from harness.controller import make_tasks, submit
from worker.celery import celery_config
from worker.config import Settings
from worker.contract import keys


def rss_mb(pid: int) -> float:
    """Resident set size of a process now (``VmRSS``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS")


def result_prefix() -> str:
    """Celery's key (and channel) prefix for stored results, under amworker's Celery settings."""
    app = Celery("result-prefix")
    app.conf.update(celery_config(Settings()))
    try:
        return keys.result_prefix(app.backend)
    finally:
        app.close()


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
        self.meta_pattern = result_prefix() + "*"
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
        return Sample(
            seconds=round(time.monotonic() - self._started, 2),
            shim_rss_mb=round(rss_mb(self.pid()), 2),
            redis_used_mb=round(used_mib(self.client), 3),
            keys=int(self.client.dbsize()),
            amworker_keys=_count(self.client, "amworker:*"),
            meta_keys=_count(self.client, self.meta_pattern),
        )


def used_mib(client: redis.Redis) -> float:
    """Redis's ``used_memory`` now, in MiB."""
    return int(client.info("memory")["used_memory"]) / 2**20


def key_names(client: redis.Redis) -> set[str]:
    """The names of every key now."""
    return {k.decode() if isinstance(k, bytes) else str(k) for k in client.scan_iter(count=1000)}


def new_keys(client: redis.Redis, baseline: set[str]) -> dict[str, int]:
    """Every key not in ``baseline``, with its TTL in seconds (-1: none)."""
    names = sorted(key_names(client) - baseline)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.ttl(name)
    # -2: the key expired between the scan and its TTL.
    return {name: int(ttl) for name, ttl in zip(names, pipe.execute(), strict=True) if int(ttl) != -2}


def wait_for_drain(client: redis.Redis, baseline: set[str], patterns: Sequence[str],
                   deadline: float, every: float = 0.5) -> dict[str, int]:
    """Poll until no key matching ``patterns`` (fnmatch) outside ``baseline`` is left,
    or ``deadline`` (monotonic) passes; the keys still left then, with their TTLs.

    Polling Redis is the synchronisation here: expiry has no event to wait on
    short of keyspace notifications, which the stack's Redis does not enable.
    """
    while True:
        left = {name: ttl for name, ttl in new_keys(client, baseline).items()
                if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(every)


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
