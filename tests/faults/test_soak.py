"""Fault 10: soak.

* Under chaos: >= 16 batches in flight, mixed scripts, while a chaos loop
  SIGKILLs a random pool process, the shim or a whole Celery worker every few
  seconds (and restarts what it killed). Then: every task answered, none run
  twice, every failure carrying its cause.
* Growth: three controllers send batches of 1-256 tasks of mixed scripts
  back to back while a sampler records, at a fixed cadence, the shim's RSS,
  Redis's ``used_memory`` and its key counts (DBSIZE, ``amworker:*``,
  ``celery-task-meta-*``). Over the second half of the run (the first half
  is warm-up: allocator arenas, connection pools, pool processes) the
  least-squares slope of the shim's RSS must stay under
  :data:`RSS_SLOPE_LIMIT`. A slope over many samples, not a start/end
  difference: one big answer held at the last sample must not fail the run,
  a steady creep must. Redis is judged by what it keeps, not by a slope:
  once the load stops, every key amworker or Celery's results wrote must
  expire within its lifetime, whatever is left must carry a bounded TTL, and
  ``used_memory`` must come back to within :data:`REDIS_RESIDUE_MIB` of its
  value before the load. (Redis's memory under load swings by megabytes
  with the size of the batches in flight: a slope over a 22-s half was
  +6 or -7 MiB/min on a flat server, and failed CI once.)

``AMWORKER_SOAK_SECONDS`` sets the length of each (default 45 s, which
``make test`` runs; ``make test-faults`` runs 600, the issue's ten minutes).
"""

from __future__ import annotations

import collections
import json
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.controller import make_tasks, submit
from harness.services import Proc, Stack, stack
from harness.soak import (
    MixedLoad,
    Sampler,
    key_names,
    new_keys,
    result_prefix,
    second_half,
    slope_per_minute,
    summarise,
    used_mib,
    wait_for_drain,
)
from tests.faults.helpers import FAST, children, config_file, kill, records
from worker.errors import Cause

SOAK_SECONDS = float(os.environ.get("AMWORKER_SOAK_SECONDS", "45"))
IN_FLIGHT = 16
CHAOS_EVERY = (3.0, 6.0)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(int(SOAK_SECONDS) + 600)]

CAUSES = {getattr(Cause, name) for name in dir(Cause) if not name.startswith("_")}
CONFIG = '[functions."record_v0.0"]\nslices = 3\ntime_limit = 60\n'


@dataclass
class Sent:
    """One batch the load generator sent, and what came back."""

    function: str
    tasks: dict[str, dict[str, object]]
    results: dict[str, dict[str, object]] | None = None
    error: str | None = None


def _batch(rng: random.Random, record: Path) -> tuple[str, dict[str, dict[str, object]]]:
    """A random batch of a random script (record_v0.0 half the time)."""
    count = rng.randint(1, 6)
    pick = rng.random()
    if pick < 0.5:
        # record_v0.0 with a gate that never opens: it records, then sleeps.
        return "record_v0.0", make_tasks([f"{record} {rng.uniform(0.1, 1.5):.2f} /nonexistent"
                                          for _ in range(count)])
    if pick < 0.65:
        return "echo_v0.0", make_tasks([f"hello {i}" for i in range(count)])
    if pick < 0.8:
        return "exitcode_v0.0", make_tasks([str(rng.choice([0, 3])) for _ in range(count)])
    if pick < 0.9:
        return "sliced_v0.0", make_tasks(["x"] * count)
    return "raises_v0.0", make_tasks(["x"] * count)


def _load(s: Stack, record: Path, until: float, seed: int, sent: list[Sent],
          lock: threading.Lock) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        function, tasks = _batch(rng, record)
        item = Sent(function, tasks)
        with lock:
            sent.append(item)
        try:
            item.results = submit(s.server, function, tasks, unique=str(uuid.uuid4()),
                                  timeout=300).results
        except Exception as exc:  # noqa: BLE001 - counted and reported by the test
            item.error = repr(exc)


class Chaos:
    """Kills a random pool process, the shim or a Celery worker, and restarts it."""

    def __init__(self, s: Stack, rng: random.Random) -> None:
        self.s = s
        self.rng = rng
        self.workers = [s.celery_worker("w0", concurrency=2), s.celery_worker("w1", concurrency=2)]
        self.shim: Proc = s.shim("shim-0")
        self.counts: collections.Counter[str] = collections.Counter()
        self.serial = 2

    def strike(self) -> None:
        action = self.rng.choices(["pool", "shim", "worker"], weights=[3, 2, 1])[0]
        if action == "pool":
            worker = self.rng.choice(self.workers)
            pool = children(worker.pid)
            if pool:
                kill(self.rng.choice(pool))
                self.counts["pool process killed"] += 1
        elif action == "shim":
            self.shim.kill()
            self.counts["shim killed"] += 1
            self.shim = self.s.shim(f"shim-{self.serial}")
            self.serial += 1
        else:
            index = self.rng.randrange(len(self.workers))
            self.workers[index].kill()
            self.counts["Celery worker killed"] += 1
            self.workers[index] = self.s.celery_worker(f"w{self.serial}", concurrency=2)
            self.serial += 1


def _classify(function: str, result: dict[str, object]) -> str:
    code = result["exitCode"]
    assert isinstance(code, int), result
    stderr = str(result.get("stderror", ""))
    if stderr.startswith("amworker: ") or "\namworker: " in stderr:
        cause = stderr.split("amworker: ", 1)[1].split(":", 1)[0]
        return f"failed: {cause}" if code == 1 and cause in CAUSES else f"BAD CAUSE: {cause}"
    if code == 0:
        return "ok"
    if function == "exitcode_v0.0" and code == 3:
        return "script's own exit code"
    if function == "raises_v0.0" and code == 1 and "boom from raises_v0.0" in stderr:
        return "script's own exit code"
    return f"UNEXPLAINED failure (exit {code})"


def test_soak_under_chaos(tmp_path: Path) -> None:
    env = {**FAST, "AMWORKER_CONFIG_FILE": str(config_file(tmp_path, CONFIG)),
           "AMWORKER_SHIM_CONCURRENCY": "24"}
    record = tmp_path / "runs"
    rng = random.Random(int(os.environ.get("AMWORKER_SOAK_SEED", "10")))
    with stack(tmp_path, env=env) as s:
        chaos = Chaos(s, rng)
        sent: list[Sent] = []
        lock = threading.Lock()
        started = time.monotonic()
        until = started + SOAK_SECONDS
        threads = [threading.Thread(target=_load, args=(s, record, until, i, sent, lock),
                                    daemon=True) for i in range(IN_FLIGHT)]
        for thread in threads:
            thread.start()
        while time.monotonic() < until:
            # Chaos on a timer is the point here (not synchronisation).
            time.sleep(rng.uniform(*CHAOS_EVERY))
            chaos.strike()
        for thread in threads:
            thread.join(timeout=400)
        assert not any(t.is_alive() for t in threads), "a batch was never answered"
        elapsed = time.monotonic() - started

    counts: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    executions = collections.Counter(task for task, _ in records(record))
    for item in sent:
        if item.results is None:
            problems.append(f"{item.function}: no answer ({item.error or 'WORK_FAIL'})")
            continue
        if set(item.results) != set(item.tasks):
            problems.append(f"{item.function}: answer lacks tasks")
        for task_id, result in item.results.items():
            kind = _classify(item.function, result)
            counts[kind] += 1
            if kind.startswith(("BAD", "UNEXPLAINED")):
                problems.append(f"{item.function} {task_id}: {kind}: {result}")
            if item.function == "record_v0.0":
                ran = executions[task_id]
                counts[f"record tasks executed {ran}x"] += 1
                if ran > 1 or (kind == "ok" and ran != 1):
                    problems.append(f"record task {task_id} ok={kind} but executed {ran} times")
    report = {
        "seconds": round(elapsed, 1),
        "batches": len(sent),
        "tasks": sum(len(i.tasks) for i in sent),
        "outcomes": dict(sorted(counts.items())),
        "chaos": dict(chaos.counts),
        "executed twice": sum(1 for n in executions.values() if n > 1),
        "problems": len(problems),
    }
    print("\nSOAK", json.dumps(report, indent=2))
    (tmp_path / "soak.json").write_text(json.dumps(report, indent=2))
    assert not problems, "\n".join(problems[:20])
    assert len(sent) >= IN_FLIGHT


# -- growth ---------------------------------------------------------------------

#: Tolerances of the growth test: the least-squares slope over the second
#: half of the run may not exceed max(limit, NOISE_ALLOWANCE / minutes of
#: that half). Measured on 2 shared cores at ~400 tasks/s (docs/reliability.md):
#: the shim with Celery's result consumer switched on crept 1.5 MiB/min over
#: minutes 2-4 (2.3 MiB/min over the bench's 10-minute soak); without it
#: 0.3-0.5 MiB/min there, with its Python heap flat (tracemalloc) -- the
#: allocator settling, which levels off: +0.15 MiB/min over minutes 5-10.
#: 0.5 MiB/min therefore fails a creep like issue 8's in the ten-minute run.
#: The allowance is what a flat series still wanders (an answer of 256
#: tasks held at a sample, an arena grown once): 1 MiB over the half, so a
#: 45-s run (22 s of second half) fails only a steep leak; the deterministic
#: test below covers the creep's cause in every run.
RSS_SLOPE_LIMIT = 0.5
#: Celery's Redis backend (5.7) marks a finished chord with
#: ``celery-taskset-meta-<group>.c`` for max(2 x claim, 300) s, whatever
#: ``result_expires`` says: the one key allowed to outlive the drain.
CHORD_MARKER_SECONDS = 300
#: Redis ``used_memory`` allowed above its pre-load value once the load's
#: keys have expired: the chord markers still alive (~150 B each, a few
#: thousand) and the connections the load opened. One batch left behind
#: is ~21 KB, and the run sends thousands.
REDIS_RESIDUE_MIB = 4.0
#: Seconds past the lifetime cap for the last keys to go (Redis expires
#: keys by sampling, ten times a second).
DRAIN_SLACK_SECONDS = 20.0
#: MiB a flat series may wander over the second half (see above).
NOISE_ALLOWANCE = 1.0
#: Load run before sampling starts, so the slope measures the steady state.
WARM_UP_SECONDS = 30.0
#: Growth config: four slices a batch, so most batches are chords.
GROWTH_CONFIG = ('[functions."echo_v0.0"]\nslices = 4\n'
                 '[functions."exitcode_v0.0"]\nslices = 2\n')


def _mixed(rng: random.Random, size: int) -> tuple[str, list[str]]:
    """A batch of ``size`` tasks: output, exit codes, slices by the script, a raise."""
    pick = rng.random()
    if pick < 0.5:
        return "echo_v0.0", [f"--uuid {i} --file /tmp/{rng.random():.6f}" for i in range(size)]
    if pick < 0.75:
        return "sliced_v0.0", ["x"] * size
    if pick < 0.95:
        return "exitcode_v0.0", [str(rng.choice([0, 0, 0, 3])) for _ in range(size)]
    return "raises_v0.0", ["x"] * size


def test_shim_memory_and_redis_stay_flat(tmp_path: Path) -> None:
    # Every key an answered batch leaves lives at most AMWORKER_RESULT_EXPIRES
    # (the operator's ceiling on the derived lifetimes, docs/design.md "What
    # Redis keeps"): a quarter of the run, so the drain is quick.
    horizon = max(10, int(SOAK_SECONDS / 4))
    env = {"AMWORKER_CONFIG_FILE": str(config_file(tmp_path, GROWTH_CONFIG)),
           "AMWORKER_LEASE_SECONDS": "5", "AMWORKER_RESULT_EXPIRES": str(horizon)}
    every = max(1.0, SOAK_SECONDS / 120)
    with stack(tmp_path, env=env) as s:
        s.celery_worker("w0", concurrency=2)
        shim = s.shim()
        baseline, used_before = key_names(s.redis), used_mib(s.redis)
        load = MixedLoad(s.server, _mixed, controllers=3, seed=int(
            os.environ.get("AMWORKER_SOAK_SEED", "8")))
        # The shim's first half-minute under load is warm-up (thread arenas,
        # pools, the first big answers: 45 -> 58 MB in the 10-minute bench
        # soak); growth is measured after it.
        load.run(WARM_UP_SECONDS)
        sampler = Sampler(lambda: shim.pid, s.redis, every)
        sampler.start()
        load.run(SOAK_SECONDS)
        samples = sampler.stop()
        left = wait_for_drain(s.redis, baseline, ["amworker:*", result_prefix() + "*"],
                              time.monotonic() + horizon + DRAIN_SLACK_SECONDS)
        residue, used_after = new_keys(s.redis, baseline), used_mib(s.redis)
        assert shim.alive(), shim.output()[-4000:]

    summary = summarise(samples)
    report = {"seconds": SOAK_SECONDS, "every": every, "batches": load.batches,
              "tasks": load.tasks, **summary, "redis_used_mb_before": round(used_before, 3),
              "redis_used_mb_drained": round(used_after, 3), "keys_after_drain": len(residue)}
    print("\nGROWTH", json.dumps(report, indent=2))
    (tmp_path / "growth.json").write_text(json.dumps(
        {**report, "series": [vars(x) for x in samples]}, indent=1))
    assert not load.problems, "\n".join(load.problems[:20])
    assert not sampler.errors, sampler.errors[:5]
    half = second_half(samples)
    assert len(half) >= 10, f"too few samples in the second half: {len(half)}"
    assert load.batches >= 10, report
    allowance = NOISE_ALLOWANCE / ((half[-1].seconds - half[0].seconds) / 60)
    rss_limit = max(RSS_SLOPE_LIMIT, allowance)
    rss = slope_per_minute(half, "shim_rss_mb")
    assert rss <= rss_limit, (
        f"shim RSS grows {rss:.3f} MiB/min over the second half (limit {rss_limit:.3f}): "
        f"{[x.shim_rss_mb for x in half]}")
    assert not left, (f"{len(left)} keys outlived the {horizon}-s lifetime cap by "
                      f"{DRAIN_SLACK_SECONDS:.0f} s: {sorted(left.items())[:10]}")
    unbounded = {name: ttl for name, ttl in residue.items()
                 if not 0 <= ttl <= CHORD_MARKER_SECONDS}
    assert not unbounded, f"keys the load left with no or a long TTL: {sorted(unbounded.items())[:10]}"
    assert used_after - used_before <= REDIS_RESIDUE_MIB, (
        f"Redis keeps {used_after - used_before:.2f} MiB after the load's keys expired "
        f"({used_before:.2f} -> {used_after:.2f}); {len(residue)} keys left")


def test_shim_keeps_no_result_channel_subscribed(tmp_path: Path) -> None:
    """The shim hears results through its one watcher (a pattern): Celery's own
    per-thread result consumer must subscribe nothing (the cause of the creep:
    one entry per slice sent, kept for ever)."""
    env = {"AMWORKER_CONFIG_FILE": str(config_file(tmp_path, GROWTH_CONFIG))}
    with stack(tmp_path, env=env) as s:
        s.celery_worker("w0", concurrency=2)
        s.shim()
        rng = random.Random(3)
        for size in (1, 7, 16, 40, 3, 64):
            function, arguments = _mixed(rng, size)
            tasks = make_tasks(arguments)
            answer = submit(s.server, function, tasks, timeout=120)
            assert answer.results is not None and set(answer.results) == set(tasks)
        assert s.redis.pubsub_channels(result_prefix() + "*") == []
        clients = s.redis.client_list()
        subscribed = [c for c in clients if int(c.get("sub", 0)) > 0]
        assert subscribed == [], subscribed

