"""What Redis keeps once batches are answered, and how long (docs/design.md).

A real stack (gearmand, Redis, a Celery worker, the shim). After a mix of
batches is answered, every key left is one of the documented short-lived
kinds, with a TTL within the bound derived from the deadlines
(queue wait + time limit + grace + margin); a big output never rides on
pub/sub; and a Gearman unique reused with other tasks is a new batch.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import redis

from harness.controller import make_tasks, submit, submit_many
from harness.services import Stack, stack, wait_until
from tests.faults.helpers import config_file, records

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

QUEUE_WAIT, TIME_LIMIT, LEASE = 60, 120, 1
#: docs/design.md: queue wait + time limit + 30 s pool grace + 120 s margin.
BOUND = QUEUE_WAIT + TIME_LIMIT + 30 + 120
#: How long an answered batch's outcomes stay for a re-delivery: by default
#: the queue wait (AMWORKER_REDELIVERY_GRACE unset).
GRACE = QUEUE_WAIT
BIG_MB = 50

CONFIG = f"""
[functions."echo_v0.0"]
slices = 3
[functions."bigoutput_v0.0"]
slices = 1
max_output_bytes = {(BIG_MB + 4) * 1024 * 1024}
"""

#: Every key family allowed to remain, and the longest TTL it may have
#: (None: the broker's own bindings, one per queue, not per batch).
ALLOWED: dict[str, int | None] = {
    r"amworker:answer:.+": BOUND,
    r"amworker:claim:.+": BOUND,
    r"amworker:outcome:.+": GRACE,
    # A chord callback that ran after the shim had answered from the slices.
    r"celery-task-meta-.+:collect": BOUND,
    # A slice's lease, re-set by a beat already under way when the shim
    # answered from the slice's stored results and dropped it: three beats.
    r"amworker:lease:.+": 3 * LEASE,
    # Celery's own "chord done" marker: it sets 5 minutes itself.
    r"celery-taskset-meta-.+\.c": 300,
    r"_kombu\.binding.*": None,
    # Each worker's advertised script mapping (one per worker, not per
    # batch; design.md "The shim and the workers agree"): 90 s, refreshed.
    r"amworker:workers:.+": 90,
}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("redis-keys")
    env = {"AMWORKER_QUEUE_WAIT": str(QUEUE_WAIT), "AMWORKER_TIME_LIMIT": str(TIME_LIMIT),
           "AMWORKER_LEASE_SECONDS": str(LEASE),
           "AMWORKER_CONFIG_FILE": str(config_file(workdir, CONFIG))}
    with stack(workdir, env=env) as s:
        s.celery_worker("keys", concurrency=2)
        s.shim(functions=1)
        yield s


def _recorded(client: redis.Redis) -> bool:
    """True once every answered batch has its answer record in place of its plan.

    The shim writes the record (and shortens the outcomes' TTL) just after
    the answer leaves, so it can trail the answer by a moment.
    """
    return not any(client.scan_iter(match="amworker:plan:*", count=1000))


def _family(key: str) -> str | None:
    return next((pattern for pattern in ALLOWED if re.fullmatch(pattern, key)), None)


def test_answered_batches_leave_only_short_lived_keys(deployed: Stack, tmp_path: Path) -> None:
    batches = []
    for n in range(12):
        kind = n % 4
        if kind == 0:
            batches.append(("echo_v0.0", make_tasks([f"hello {n}"] * 5), str(uuid.uuid4())))
        elif kind == 1:
            batches.append(("exitcode_v0.0", make_tasks(["3", "0"]), str(uuid.uuid4())))
        elif kind == 2:
            # One task refused (unbalanced quote), one run.
            batches.append(("echo_v0.0", make_tasks(["'open", "fine"]), str(uuid.uuid4())))
        else:
            batches.append(("importfail_v0.0", make_tasks(["x"]), str(uuid.uuid4())))
    answers = submit_many(deployed.server, batches, timeout=120)
    assert all(a.results is not None and set(a.results) == set(a.tasks) for a in answers)

    client = deployed.redis

    def drained() -> bool:
        # The shim answers as soon as every slice reported, which can be
        # before the last slice's pool process has published the chord
        # callback: an empty queue proves nothing until Celery has dropped
        # each chord's bookkeeping (it keeps only the ".c" marker once the
        # callback is published).
        # A slice stores no Celery result of its own on success (run_slice's
        # ignore_result); one found here is a leak, and this wait fails on it.
        chords = [k for k in client.scan_iter(match="celery-taskset-meta-*", count=1000)
                  if not k.endswith(b".c")]
        slices = any(client.scan_iter(match="celery-task-meta-*:slice-*", count=1000))
        return (not chords and not slices
                and not any(client.exists(k) for k in ("amworker", "unacked"))
                and _recorded(client))

    wait_until(drained, timeout=60, what="every chord callback to be published and taken, and "
               "every slice's Celery result dropped")
    left = _ttls(client, client.scan_iter(count=1000))
    strays = {k: t for k, t in left.items() if _family(k) is None}
    assert not strays, f"keys no answered batch should leave: {strays}"
    for key, ttl in left.items():
        longest = ALLOWED[_family(key) or ""]
        if longest is None:
            assert ttl == -1, key
        else:
            assert 0 < ttl <= longest, (key, ttl)
    answers_left = [k for k in left if k.startswith("amworker:answer:")]
    assert len(answers_left) == len(batches)
    # What outlives the re-delivery grace is small: answer records and claims.
    lasting = [k for k, t in left.items() if t > GRACE]
    size = sum(client.memory_usage(k) or 0 for k in lasting)
    assert size < len(batches) * 4096, f"{size} bytes kept beyond the grace for {len(batches)} batches"
    print(f"{len(left)} keys left for {len(batches)} batches; {len(lasting)} outlive the grace, "
          f"{size} bytes; longest TTL {max(left.values())} s (bound {BOUND} s)")
    # No argv or kwargs anywhere in what is kept.
    for key in left:
        if client.type(key) == b"string":
            assert b"hello" not in (client.get(key) or b"") or key.startswith("amworker:outcome:")


def _ttls(client: redis.Redis, found: Iterable[bytes]) -> dict[str, float]:
    """Each key's TTL in seconds (-1: none), leaving out keys gone since the scan found them.

    A key can go between SCAN and the look at its TTL: a chord callback
    drops its own stored result just after storing it (the batch was
    answered first), and an earlier test's keys expire. In milliseconds, so
    a key with under half a second left does not read as 0.
    """
    ttls = {key.decode(): client.pttl(key) for key in found}
    return {key: ms if ms == -1 else ms / 1000 for key, ms in ttls.items() if ms != -2}


def test_a_big_output_is_answered_without_the_watcher_losing_redis(deployed: Stack) -> None:
    tasks = make_tasks([str(BIG_MB)])
    (task_id,) = tasks
    started = time.monotonic()
    answer = submit(deployed.server, "bigoutput_v0.0", tasks, timeout=240)
    print(f"{BIG_MB} MB output answered in {time.monotonic() - started:.1f}s")

    assert answer.exit_code(task_id) == 0, answer.stderr(task_id)
    assert len(answer.stdout(task_id)) >= BIG_MB * 1024 * 1024
    wait_until(lambda: _recorded(deployed.redis), timeout=30, what="the answer record")
    shim_log = (deployed.workdir / "shim.log").read_text(errors="replace")
    # A result published on pub/sub past Redis's 32 MB client buffer cuts
    # the watcher's connection; only a small envelope is published now.
    assert "result watcher lost Redis" not in shim_log
    outcomes = _ttls(deployed.redis, deployed.redis.scan_iter("amworker:outcome:*"))
    assert all(0 < ttl <= GRACE for ttl in outcomes.values()), outcomes


def test_a_reused_unique_with_new_tasks_runs_them(deployed: Stack, tmp_path: Path) -> None:
    unique = str(uuid.uuid4())
    record = tmp_path / "runs"
    first = make_tasks([str(record)] * 2)
    second = make_tasks([str(record)] * 3)

    one = submit(deployed.server, "record_v0.0", first, unique=unique)
    two = submit(deployed.server, "record_v0.0", second, unique=unique)
    again = submit(deployed.server, "record_v0.0", second, unique=unique)

    assert all(one.exit_code(t) == 0 for t in first), one.results
    # Same unique, other task UUIDs: a new batch, run for real.
    assert all(two.exit_code(t) == 0 for t in second), two.results
    # Same unique, same tasks: a re-delivery, answered again without running.
    assert all(again.exit_code(t) == 0 for t in second), again.results
    ran = sorted(t for t, _ in records(record))
    assert ran == sorted([*first, *second])
