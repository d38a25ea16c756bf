"""The Redis broker transport keeps one Redis client per channel (worker/broker_transport.py).

On a real Redis: messages and fanout events go through intact, and the
number of ``redis.Redis`` objects built stays constant however many are
sent, where kombu's own transport builds one per command (the control).
The count is taken at ``redis.Redis.__init__``, a seam outside the code
under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu import transport as kombu_transports
from kombu.transport.redis import Transport as StockTransport

import worker.celery  # noqa: F401 - installs the transport, as every amworker process does
from worker import broker_transport

pytestmark = pytest.mark.timeout(60)

MESSAGES = 40
STOCK = "kombu.transport.redis:Transport"


@contextmanager
def clients_built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Every ``redis.Redis`` built inside the block."""
    built: list[object] = []
    original = redis.Redis.__init__

    def counting(self: redis.Redis, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(redis.Redis, "__init__", counting)
        yield built


def _round_trip(connection: Connection, name: str) -> list[object]:
    """Publish MESSAGES to a queue and as fanout events, then consume and ack the queue."""
    queue = Queue(f"{name}-queue", Exchange(f"{name}-direct", type="direct"), routing_key=name)
    fanout = Exchange(f"{name}-events", type="fanout")
    received: list[object] = []
    with connection.Producer() as producer:
        for number in range(MESSAGES):
            producer.publish({"n": number}, exchange=queue.exchange, routing_key=name,
                             declare=[queue], serializer="json")
            producer.publish({"event": number}, exchange=fanout, routing_key="", serializer="json")
    with connection.SimpleQueue(queue) as simple:  # type: ignore[arg-type]  # kombu takes a Queue too
        for _ in range(MESSAGES):
            message = simple.get(timeout=10)
            received.append(message.payload)
            message.ack()
    return received


def test_redis_schemes_resolve_to_the_shared_client_transport(redis_url: str) -> None:
    for url in (redis_url, redis_url.replace("redis://", "rediss://", 1)):
        connection = Connection(url)
        assert connection.transport_cls in broker_transport.SCHEMES  # the URL reads as usual
        assert isinstance(connection.transport, broker_transport.Transport)
        # Celery keys Redis-only behaviour on this (worker_disable_prefetch).
        assert connection.transport.driver_type == "redis"
    assert not isinstance(Connection("amqp://guest@127.0.0.1//").transport,
                          broker_transport.Transport)


def test_many_messages_build_a_constant_number_of_clients(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Connection(redis_url) as connection, clients_built(monkeypatch) as built:
        received = _round_trip(connection, "shared")
        first = len(built)
        again = _round_trip(connection, "shared")
    assert received == again == [{"n": number} for number in range(MESSAGES)]
    # At most one synchronous client and kombu's cached asynchronous one...
    assert 1 <= first <= 2, f"{first} Redis clients for {MESSAGES} messages"
    # ...and none more however many messages follow on the channel.
    assert len(built) == first


def test_install_wins_over_a_scheme_resolved_earlier(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # kombu caches a scheme's class once resolved; a connection made before
    # worker.celery was imported must not pin the stock transport.
    cache = kombu_transports._transport_cache  # type: ignore[attr-defined]  # private, unannotated
    monkeypatch.setitem(cache, "redis", StockTransport)
    assert not isinstance(Connection(redis_url).transport, broker_transport.Transport)
    broker_transport.install()
    assert isinstance(Connection(redis_url).transport, broker_transport.Transport)


def test_kombus_own_transport_builds_a_client_per_command(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The control: what the transport saves, on the same round trip.
    with Connection(redis_url, transport=STOCK) as connection, clients_built(monkeypatch) as built:
        received = _round_trip(connection, "stock")
    assert received == [{"n": number} for number in range(MESSAGES)]
    assert len(built) >= 2 * MESSAGES


def test_a_replaced_pool_gets_a_client_of_its_own(redis_url: str) -> None:
    with Connection(redis_url) as connection:
        assert isinstance(connection.default_channel, broker_transport.Channel)
        channel: Any = connection.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        # What kombu does in a forked child (and when a channel closes): the
        # old pool's connections belong to the parent.
        channel._disconnect_pools()
        second = channel._create_client()
        assert second is not first
        assert second.connection_pool is channel.pool
        assert _round_trip(connection, "after-reset") == [{"n": n} for n in range(MESSAGES)]
