"""The Gearman shim: take batches from gearmand, answer them, keep serving.

It moves bytes and waits; the work happens on Celery (worker.batch.runner).

The Gearman side is :class:`worker.batch.gearman_loop.GearmanLoop`: one
connection per configured gearmand, holding up to ``concurrency`` batches at
once, each answered on a thread of its own; reconnection with bounded
exponential backoff, every attempt logged, ``CAN_DO`` re-sent for every
function on every new connection.

Undecodable payloads get ``WORK_FAIL``; everything else gets
``WORK_COMPLETE``. ``WORK_EXCEPTION`` is never sent: a batch that cannot be
answered is a ``WORK_FAIL``, as the stock worker sends.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Sequence
from types import FrameType

from worker.backoff import RECONNECT, Backoff
from worker.batch.gearman_loop import Answerer, GearmanLoop

log = logging.getLogger(__name__)

class GearmanShim:
    """Serve ``functions`` from every server, up to ``concurrency`` batches at a time."""

    def __init__(
        self,
        *,
        servers: Sequence[str],
        functions: Sequence[str],
        answer: Answerer,
        concurrency: int,
        backoff: Backoff | None = None,
        on_state: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.servers = tuple(servers)
        self.functions = tuple(functions)
        self.concurrency = concurrency
        self.loop = GearmanLoop(servers=self.servers, functions=self.functions, answer=answer,
                                concurrency=concurrency, backoff=backoff or RECONNECT,
                                on_state=on_state or (lambda server, up: None))

    @property
    def busy(self) -> int:
        """Batches currently held."""
        return self.loop.busy

    def start(self) -> None:
        """Connect to every server and start taking batches."""
        self.loop.start()
        log.info("shim serving %d function(s) from %s, up to %d batch(es) at a time",
                 len(self.functions), ", ".join(self.servers), self.concurrency)

    def stop(self, grace: float) -> bool:
        """Stop taking batches; wait up to ``grace`` seconds for those in flight.

        Returns True if every held batch was answered. A batch still
        unanswered when the process exits is handed back by gearmand (its
        connection drops) and the next shim attaches to its Celery work.
        """
        return self.loop.stop(grace)


def install_signal_handlers(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT ask the shim to stop gracefully."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping (batches in flight are answered first)",
                 signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
