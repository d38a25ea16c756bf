"""RabbitMQ as Celery's broker: what it declares, and what ``amworker check`` says.

The batch tests themselves run on both brokers (``broker_stack`` in
tests/integration/test_batches.py); these check that the RabbitMQ deployment
really carries the slices through RabbitMQ, in durable quorum queues, with
Redis left holding only results and coordination.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.services import RABBITMQ_PORT, ROOT, Stack, free_port, rabbitmqctl, wait_until
from tests.integration.controller import batch, exit_codes, run
from worker.codec.records import Encoding

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_slices_travel_through_a_durable_quorum_queue(rabbit_stack: Stack) -> None:
    assert rabbit_stack.vhost is not None
    built = batch("sliced_v0.0", Encoding.JSON, [f"job-{i}" for i in range(6)])
    assert exit_codes(run(rabbit_stack, built)) == dict.fromkeys(built.tasks, 0)

    vhost = rabbit_stack.vhost

    def queues() -> dict[str, list[str]]:
        listed = rabbitmqctl("list_queues", "-q", "--no-table-headers", "-p", vhost,
                             "name", "type", "durable", "messages")
        return {line.split("\t")[0]: line.split("\t")[1:] for line in listed.splitlines()}

    # Acknowledged late: the worker's main process acks the last message once
    # its pool process has stored the result the shim may already have answered from.
    wait_until(lambda: queues().get("amworker", [""])[-1] == "0", timeout=60,
               what="the worker to acknowledge the batch's last message", interval=0.5)
    found = queues()
    assert found["amworker"] == ["quorum", "true", "0"], found
    # Redis, the result backend, holds no queue: kombu's Redis transport
    # would have left its binding set and queue list there.
    assert not list(rabbit_stack.redis.scan_iter("_kombu.binding.*"))
    assert rabbit_stack.redis.type("amworker") == b"none"
    # While the claims and results of the batch are in Redis.
    assert list(rabbit_stack.redis.scan_iter("amworker:claim:sliced_v0.0:*"))


def test_the_worker_consumes_with_prefetch_one_per_pool_process(rabbit_stack: Stack) -> None:
    assert rabbit_stack.vhost is not None
    listed = rabbitmqctl("list_consumers", "-q", "--no-table-headers", "-p", rabbit_stack.vhost,
                         "queue_name", "ack_required", "prefetch_count")
    consumers = [line.split("\t") for line in listed.splitlines()]
    # Quorum queues have per-consumer prefetch: 1 x the pool's 2 processes.
    assert ["amworker", "true", "2"] in consumers, listed


def amworker_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", "check"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_check_reports_the_rabbitmq_broker(rabbit_stack: Stack) -> None:
    done = amworker_check(rabbit_stack.env)
    # (The exit status is not asserted: the fixture scripts include one that
    # cannot import on purpose, and check reports it.)
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("[ ok ] broker:")]
    vhost = rabbit_stack.vhost
    assert f"reachable at amqp://guest:**@127.0.0.1:{RABBITMQ_PORT}/{vhost} (RabbitMQ " in line
    assert "guest:guest" not in done.stdout


def test_check_fails_on_an_unreachable_rabbitmq(rabbit_stack: Stack) -> None:
    env = {**rabbit_stack.env,
           "AMWORKER_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}//"}
    done = amworker_check(env)
    assert done.returncode != 0
    (line,) = [ln for ln in done.stdout.splitlines() if "broker:" in ln]
    assert line.startswith("[FAIL] broker:") and "refused" in line, done.stdout
