"""A real worker publishes its task events a few at a time, and every one arrives.

What Flower shows comes from these events (test_flower.py checks it shows
them); here the raw publishes on the broker's event channel are read. The
worker flushes its buffered events on a timer (worker.pool.events), so its
publishes are more than ``FLUSH_SECONDS`` apart: a batch's fifteen events
arrive in a handful of publishes, not one each. A flood of events (one
slice per task) is still published in groups no bigger than Celery's own
buffer. A worker stopped right after a batch still publishes how each slice
ended.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.services import Stack, stack, wait_until
from tests.integration.ops import PubSubTap, run_batch, write_modules
from worker.pool.events import FLUSH_SECONDS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WORKER_EVENTS = ("task-received", "task-started", "task-succeeded")
#: How a slice ends, as the worker reports it.
ENDINGS = ("task-succeeded", "task-failed")


class EventTap(PubSubTap):
    """The events of every publish on the broker's event channels, in order."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client, "*celeryev*")

    @property
    def publishes(self) -> list[list[dict[str, Any]]]:
        """Each publish's events, decoded."""
        return [_events(data) for _, data in list(self.messages)]


def _events(data: bytes) -> list[dict[str, Any]]:
    """The events in one kombu message: a list for grouped ones, else one."""
    envelope = json.loads(data)
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    decoded = json.loads(body)
    return decoded if isinstance(decoded, list) else [decoded]


#: Celery's event buffer: it publishes at once when this many are waiting.
CELERY_BUFFER_LIMIT = 24


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[Stack]:
    modules = write_modules(tmp_path / "modules.ini", {"sliced_v0.0": "sliced"})
    with stack(tmp_path, modules_file=modules) as running:
        running.celery_worker("events-it", concurrency=2)
        running.shim(functions=1)
        yield running


@pytest.fixture
def flooding(tmp_path: Path) -> Iterator[Stack]:
    """A stack whose ``sliced_v0.0`` batches are cut into one slice per task."""
    modules = write_modules(tmp_path / "modules.ini", {"sliced_v0.0": "sliced"})
    config = tmp_path / "amworker.toml"
    config.write_text('[functions."sliced_v0.0"]\nslices = 64\n', encoding="utf-8")
    with stack(tmp_path, modules_file=modules, env={"AMWORKER_CONFIG_FILE": str(config)}) as running:
        running.celery_worker("events-it", concurrency=2)
        running.shim(functions=1)
        yield running


def _worker_events(tap: EventTap) -> list[list[dict[str, Any]]]:
    """The tap's publishes that carry the worker's task events, with only those."""
    kinds = {*WORKER_EVENTS, *ENDINGS}
    return [[e for e in events if e.get("type") in kinds] for events in list(tap.publishes)
            if any(e.get("type") in kinds for e in events)]


def _seen(tap: EventTap) -> set[tuple[str, str]]:
    """(task id, event type) of every worker event the tap has read."""
    return {(e["uuid"], e["type"]) for events in _worker_events(tap) for e in events}


def test_a_batchs_task_events_all_arrive_in_few_publishes(deployed: Stack) -> None:
    tap = EventTap(deployed.redis)
    try:
        results = run_batch(deployed.server, "sliced_v0.0", tasks=8)
        assert [r.exit_code for r in results] == [0] * 8
        # Four slices and the chord's callback, each received, started and succeeded.
        wait_until(lambda: len(_seen(tap)) >= 15, timeout=30, what="the worker's 15 task events",
                   interval=0.05)
    finally:
        tap.close()
    publishes = _worker_events(tap)
    tasks = {uuid for uuid, _ in _seen(tap)}
    assert sorted(uuid.rsplit(":", 1)[1] for uuid in tasks) == [
        "collect", *(f"slice-{i}-of-4" for i in range(1, 5))], tasks
    assert _seen(tap) == {(uuid, kind) for uuid in tasks for kind in WORKER_EVENTS}
    # The timer's flushes are more than FLUSH_SECONDS apart: every event of a
    # publish was buffered after the one before went out, which was at least
    # FLUSH_SECONDS after its own first event. Read on the worker's clock (each
    # event's timestamp, taken as it is buffered), not on the tap's.
    firsts = [min(e["timestamp"] for e in events) for events in publishes]
    gaps = [later - earlier for earlier, later in itertools.pairwise(firsts)]
    assert all(gap >= FLUSH_SECONDS - 0.002 for gap in gaps), gaps
    assert len(publishes) < 15, len(publishes)


def test_events_waiting_for_the_timer_are_published_when_the_worker_stops(deployed: Stack) -> None:
    tap = EventTap(deployed.redis)
    try:
        results = run_batch(deployed.server, "sliced_v0.0", tasks=8)
        # The batch is answered once the last slice stored its results: how
        # its slices ended is still in the worker, waiting for the timer.
        # (The harness stops the worker's whole process group, so a slice
        # whose pool process had not yet reported to Celery ends as failed,
        # worker lost: an ending all the same.)
        worker = next(p for p in deployed.procs if p.name.startswith("events-it"))
        assert worker.stop() == 0, worker.output()[-3000:]
        assert [r.exit_code for r in results] == [0] * 8

        def ended() -> set[str]:
            return {uuid.rsplit(":", 1)[1] for uuid, kind in _seen(tap) if kind in ENDINGS}

        wait_until(lambda: ended() >= {f"slice-{i}-of-4" for i in range(1, 5)}, timeout=10,
                   what=f"how every slice ended: {sorted(_seen(tap))}", interval=0.05)
    finally:
        tap.close()


def test_a_flood_of_events_is_published_in_bounded_groups_and_all_arrive(flooding: Stack) -> None:
    # The worst a batch can do to the timer: 64 one-task slices and the
    # chord's callback, 195 events as fast as the worker can take them. What
    # waits is bounded by Celery's buffer (it publishes at once when full),
    # not by how many events come within the timer's 50 ms.
    tap = EventTap(flooding.redis)
    try:
        results = run_batch(flooding.server, "sliced_v0.0", tasks=64)
        assert [r.exit_code for r in results] == [0] * 64
        wait_until(lambda: len(_seen(tap)) >= 65 * 3, timeout=60,
                   what="the worker's 195 task events", interval=0.05)
    finally:
        tap.close()
    tasks = {uuid for uuid, _ in _seen(tap)}
    assert len(tasks) == 65, len(tasks)
    assert _seen(tap) == {(uuid, kind) for uuid in tasks for kind in WORKER_EVENTS}
    sizes = [len(events) for events in _worker_events(tap)]
    assert max(sizes) <= CELERY_BUFFER_LIMIT, sizes
    assert len(sizes) < 65 * 3, len(sizes)
