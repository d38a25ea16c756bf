"""Fault 5b: RabbitMQ, as Celery's broker, goes away and comes back mid-batch.

The machine's RabbitMQ is shared, so the restart is inflicted on the test's
own virtual host, the way clients see a restart: RabbitMQ closes every
connection of the vhost and refuses new ones until it is "back". Its durable
queues keep what they held, as a restarted node does. Redis (results, claims,
leases) is untouched: that fault is tests/faults/test_redis_restart.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.controller import make_tasks, submit_bg
from harness.services import Stack, rabbitmqctl, stack, wait_until
from tests.faults.helpers import (
    FAST,
    assert_all_answered,
    assert_broker_lost_at_once,
    assert_serves_again,
    gate_args,
    records,
    use_config,
    wait_records,
)
from worker.contract import keys

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]


@pytest.fixture
def rabbitstack(tmp_path: Path) -> Iterator[Stack]:
    """The fast fault stack with a private RabbitMQ vhost as Celery's broker."""
    with stack(tmp_path, env=FAST, broker="rabbitmq") as s:
        yield s


def queue_counts(vhost: str, queue: str) -> tuple[int, int]:
    """(ready, unacknowledged) messages of ``queue``, as RabbitMQ counts them."""
    listed = rabbitmqctl("list_queues", "-q", "--no-table-headers", "-p", vhost,
                         "name", "messages_ready", "messages_unacknowledged")
    for line in listed.splitlines():
        name, ready, unacked = line.split("\t")
        if name == queue:
            return int(ready), int(unacked)
    raise LookupError(f"no queue {queue!r} in vhost {vhost}: {listed!r}")


def received(log: str, task_id: str) -> int:
    """How many times the worker's log says it received the Celery task ``task_id``."""
    return sum(1 for line in log.splitlines() if f"[{task_id}] received" in line)


def test_rabbitmq_restart_mid_batch(rabbitstack: Stack, tmp_path: Path) -> None:
    s = rabbitstack
    assert s.vhost is not None
    use_config(s, '[functions."record_v0.0"]\nslices = 2\ntime_limit = 60\n')
    worker = s.celery_worker("w1", concurrency=1)
    shim = s.shim()
    record, gate = tmp_path / "runs", tmp_path / "gate"
    tasks = make_tasks([gate_args(record, gate)] * 2)
    unique = str(uuid.uuid4())
    pending = submit_bg(s.server, "record_v0.0", tasks, unique=unique, timeout=200)
    ((running, _),) = wait_records(record, 1)
    index = list(tasks).index(running)
    token = keys.batch_token("record_v0.0", unique, b"", tasks)
    running_slice = keys.slice_id(token, index, 2)

    # Acknowledged when it ends, with prefetch 1: the running slice's message
    # is unacked, and the other one waits in RabbitMQ for any free worker
    # instead of being reserved behind it (acking on start would show (0, 0)).
    wait_until(lambda: queue_counts(s.vhost or "", "amworker") == (1, 1), timeout=30,
               what="one slice running (unacked) and one ready in the queue")

    # The broker goes away: every connection is closed, new ones are refused.
    rabbitmqctl("set_vhost_limits", "-p", s.vhost, '{"max-connections": 0}')
    rabbitmqctl("close_all_connections", "-p", s.vhost, "amworker fault test: broker restart")
    wait_until(lambda: "Cannot connect to amqp" in worker.output(), timeout=60,
               what="the worker to find the broker gone")
    rabbitmqctl("clear_vhost_limits", "-p", s.vhost)
    gate.touch()

    answer = pending.wait(180)
    assert_all_answered(answer)
    # Nothing was lost: the queued slice stayed in its durable queue and ran
    # after the broker came back; the running one finished where it was.
    assert all(answer.exit_code(t) == 0 for t in tasks), answer.results
    ran = [t for t, _ in records(record)]
    assert sorted(ran) == sorted(tasks), "each slice ran exactly once"
    # The running slice's message came back when its connection closed and
    # was delivered again; its claim made that copy a no-op.
    assert received(worker.output(), running_slice) == 2, worker.output()[-4000:]

    # Shim and worker are connected again: a new batch runs end to end.
    assert shim.alive() and worker.alive()
    assert_serves_again(s, tmp_path)


def test_dispatch_while_rabbitmq_refuses_answers_broker_lost(rabbitstack: Stack,
                                                             tmp_path: Path) -> None:
    s = rabbitstack
    assert s.vhost is not None
    s.celery_worker("w1", concurrency=1)
    s.shim()
    rabbitmqctl("set_vhost_limits", "-p", s.vhost, '{"max-connections": 0}')
    rabbitmqctl("close_all_connections", "-p", s.vhost, "amworker fault test: broker down")
    # The send itself fails (publisher confirms, a refused connection): the
    # batch is answered at once with the cause, nothing ran.
    assert_broker_lost_at_once(s, tmp_path)
