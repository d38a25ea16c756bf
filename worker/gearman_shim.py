"""The Gearman shim: take batches from gearmand, answer them, keep serving.

It moves bytes and waits; the work happens on Celery (worker.batches).

gearman3's ``GearmanWorker`` holds one job at a time per worker object, and
its ``work()`` loop lets ``ServerUnavailable`` escape. So the shim runs
``concurrency`` lanes, each a thread with its own ``GearmanWorker`` (its own
connection to every configured gearmand), and each lane owns its
reconnection: bounded exponential backoff, every attempt logged, functions
re-registered on every new connection (gearman3's handler sends ``CAN_DO``
for each registered function when a connection is made).

Undecodable payloads get ``WORK_FAIL``; everything else gets
``WORK_COMPLETE``. ``WORK_EXCEPTION`` is never sent: gearmand ends the job on
it and then receives a stray ``WORK_FAIL`` from gearman3.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from gearman import GearmanWorker
from gearman.errors import GearmanError, ServerUnavailable

from worker.gearman_io import FastGearmanConnection

log = logging.getLogger(__name__)

Answerer = Callable[[str, str, bytes], bytes | None]

#: How often an idle lane looks up from its poll to notice a stop request.
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Backoff:
    """Reconnection delays: ``first * factor**n``, capped at ``maximum``."""

    first: float = 0.5
    factor: float = 2.0
    maximum: float = 10.0

    def delay(self, attempt: int) -> float:
        """The pause before reconnection attempt ``attempt`` (0-based)."""
        return float(min(self.first * self.factor**attempt, self.maximum))


class _LaneWorker(GearmanWorker):
    """A ``GearmanWorker`` with the fixed connection and amworker's answers."""

    connection_class = FastGearmanConnection

    def __init__(self, servers: Sequence[str], answer: Answerer, stopping: threading.Event,
                 on_job: Callable[[bool], None],
                 on_connection: Callable[[str, bool], None] = lambda server, up: None) -> None:
        super().__init__(host_list=list(servers))
        self._answer = answer
        self._stopping = stopping
        self._on_job = on_job
        self._on_connection = on_connection

    # gearman3 (re)connects in establish_connection on every pass of its loop
    # and drops a connection in handle_error: the two places a lane's link to
    # a server changes state.
    def establish_connection(self, current_connection: Any) -> Any:
        try:
            connection = super().establish_connection(current_connection)
        except GearmanError:
            self._on_connection(_address(current_connection), False)
            raise
        self._on_connection(_address(current_connection), True)
        return connection

    def handle_error(self, current_connection: Any) -> None:
        super().handle_error(current_connection)
        self._on_connection(_address(current_connection), False)

    def on_job_execute(self, current_job: Any) -> bool:
        function = _text(current_job.task)
        unique = _text(current_job.unique or b"")
        self._on_job(True)
        try:
            try:
                payload = self._answer(function, unique, bytes(current_job.data))
            except Exception:  # noqa: BLE001 - one boundary per loop; the lane keeps serving
                log.exception("%s batch %s: unexpected error; answering WORK_FAIL", function, unique)
                payload = None
            if payload is None:
                self.send_job_failure(current_job)
                return False
            self.send_job_complete(current_job, payload)
            return True
        finally:
            self._on_job(False)

    def after_poll(self, any_activity: bool) -> bool:
        # Stop between jobs only: a lane holding a job answers it first.
        return not self._stopping.is_set()


class GearmanShim:
    """``concurrency`` lanes serving ``functions`` from every server."""

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
        self.answer = answer
        self.concurrency = concurrency
        self.backoff = backoff or Backoff()
        self.on_state = on_state or (lambda server, up: None)
        self.stopping = threading.Event()
        self._busy = 0
        self._busy_lock = threading.Lock()
        # server -> lanes connected to it; a server is "up" while any lane is.
        self._links: dict[str, set[int]] = {server: set() for server in self.servers}
        self._threads: list[threading.Thread] = []

    @property
    def busy(self) -> int:
        """Lanes currently holding a batch."""
        with self._busy_lock:
            return self._busy

    def _track(self, started: bool) -> None:
        with self._busy_lock:
            self._busy += 1 if started else -1

    def _link(self, lane: int, server: str, up: bool) -> None:
        """Record one lane's connection state; report a server's when it changes."""
        with self._busy_lock:
            lanes = self._links.setdefault(server, set())
            before = bool(lanes)
            (lanes.add if up else lanes.discard)(lane)
            after = bool(lanes)
        if before != after:
            log.info("gearmand %s %s", server, "connected" if after else "disconnected")
            self.on_state(server, after)

    def start(self) -> None:
        """Start every lane."""
        for lane in range(self.concurrency):
            thread = threading.Thread(target=self._lane, args=(lane,), name=f"gearman-lane-{lane}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("shim serving %d function(s) from %s with %d lane(s)",
                 len(self.functions), ", ".join(self.servers), self.concurrency)

    def stop(self, grace: float) -> bool:
        """Stop taking batches; wait up to ``grace`` seconds for those in flight.

        Returns True if every lane finished. A batch still unanswered when the
        process exits is handed back by gearmand (its connection drops) and the
        next shim attaches to its Celery work.
        """
        self.stopping.set()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _lane(self, lane: int) -> None:
        attempt = 0
        while not self.stopping.is_set():
            worker = _LaneWorker(self.servers, self.answer, self.stopping, self._track,
                                 functools.partial(self._link, lane))
            worker.set_client_id(f"amworker-lane-{lane}")
            for function in self.functions:
                # gearman3 compares the JOB_ASSIGN function name (bytes) with
                # the registered keys, so register bytes.
                worker.register_task(function.encode(), _unused)
            try:
                worker.work(poll_timeout=POLL_SECONDS)
                attempt = 0
            except (ServerUnavailable, GearmanError, OSError) as exc:
                for server in self.servers:
                    self._link(lane, server, False)
                delay = self.backoff.delay(attempt)
                log.warning("lane %d: no gearmand reachable at %s (%s); retry %d in %.1fs",
                            lane, ", ".join(self.servers), exc, attempt + 1, delay)
                attempt += 1
                self.stopping.wait(delay)
            except Exception:  # noqa: BLE001 - the lane's loop boundary: log, back off, go on
                delay = self.backoff.delay(attempt)
                log.exception("lane %d: unexpected error; reconnecting in %.1fs", lane, delay)
                attempt += 1
                self.stopping.wait(delay)
            finally:
                worker.shutdown()
        for server in self.servers:
            self._link(lane, server, False)
        log.debug("lane %d stopped", lane)


def _unused(worker: Any, job: Any) -> bytes:
    """Placeholder callback: _LaneWorker.on_job_execute answers every job itself."""
    raise NotImplementedError


def _address(connection: Any) -> str:
    """``host:port`` of a gearman3 connection, as the servers are configured."""
    host, port = connection.get_address()
    return f"{host}:{port}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def install_signal_handlers(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT ask the shim to stop gracefully."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping (batches in flight are answered first)",
                 signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
