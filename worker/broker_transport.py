"""kombu's Redis transport, keeping one Redis client per channel instead of one per command.

kombu's Redis channel builds a new ``redis.Redis`` object for nearly every
synchronous command it sends (``Channel.conn_or_acquire``): each published
message, each task event, each delivery's bookkeeping and each
acknowledgement. With redis-py 8 building one costs about 0.2 ms of CPU (its
table of response callbacks is rebuilt every time), and on a 128-task batch
that was 13 % of Celery's main process (py-spy, bench/analysis.md). The
connection itself comes from the channel's pool either way, so one client per
pool does the same work: ``redis.Redis`` is safe to share between threads,
and a pool replaced (after a fork, or when the channel closes) gets a client of its own.

:func:`install` points the ``redis://`` and ``rediss://`` schemes at this
transport before any connection is made, so broker URLs, Flower and
``celery inspect`` see the usual scheme.
"""

from __future__ import annotations

from typing import Any

from kombu import transport as kombu_transports
from kombu.transport import redis as kombu_redis

#: The schemes this transport serves (kombu's aliases for its Redis transport).
SCHEMES = ("redis", "rediss")


class Channel(kombu_redis.Channel):
    """A Redis channel that reuses its synchronous client while its pool lives."""

    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        # kombu's annotations leave out its private helpers, hence the ignores.
        stock = super()._create_client  # type: ignore[misc]
        if asynchronous:  # kombu caches the asynchronous one itself (Channel.client)
            return stock(asynchronous=True)
        pool = self.pool
        client = self._shared_client
        if client is None or client.connection_pool is not pool:
            client = self._shared_client = stock()
        return client


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


def install() -> None:
    """Serve ``redis://`` and ``rediss://`` broker URLs with :class:`Transport`."""
    path = f"{__name__}:{Transport.__name__}"
    for scheme in SCHEMES:
        kombu_transports.TRANSPORT_ALIASES[scheme] = path
        # kombu remembers each scheme's class once resolved: forget it, or a
        # connection made before this call would keep the stock transport.
        kombu_transports._transport_cache.pop(scheme, None)  # type: ignore[attr-defined]  # private, unannotated
