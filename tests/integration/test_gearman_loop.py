"""The shim's Gearman loop against a real gearmand: many batches on one connection.

The shim (:class:`worker.gearman_shim.GearmanShim`) runs in this process with
a scripted :data:`~worker.gearman_shim.Answerer` (the seam where the batch
runner plugs in); gearmand, the controller's client and the wire are real.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.services import Proc, gearman_admin, gearman_status, start_gearmand, wait_until
from worker.backoff import Backoff
from worker.cli.gearman_client import GearmanClient, Outcome, Submission
from worker.gearman_shim import GearmanShim

pytestmark = pytest.mark.timeout(60)

FUNCTION = "loop_v0.0"
FAST = Backoff(first=0.05, factor=2.0, maximum=0.5)


class Answers:
    """An answerer that holds every delivery until told, and counts deliveries."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.deliveries: Counter[str] = Counter()
        self.in_progress = 0
        self.most = 0
        self.release = {1: threading.Event(), 2: threading.Event()}

    def __call__(self, function: str, unique: str, data: bytes) -> bytes | None:
        with self.lock:
            self.deliveries[unique] += 1
            delivery = self.deliveries[unique]
            self.in_progress += 1
            self.most = max(self.most, self.in_progress)
        try:
            assert self.release[min(delivery, 2)].wait(30), "never released"
            if data == b"undecodable":
                return None
            return f"{unique}:{delivery}".encode()
        finally:
            with self.lock:
                self.in_progress -= 1

    def busy(self) -> int:
        with self.lock:
            return self.in_progress


class Proxy:
    """A TCP relay to gearmand whose connections the test can cut."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        # The accept thread adds pairs while the test thread cuts them.
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                inner, _ = self.listener.accept()
            except OSError:
                return
            outer = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.pairs.append((inner, outer))
                self.accepted += 1
            for a, b in ((inner, outer), (outer, inner)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def cut(self) -> None:
        """Close every relayed connection at once, both ends.

        Only those made so far: a reconnection accepted meanwhile is the
        next connection, not one to cut.
        """
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for inner, outer in pairs:
            for sock in (inner, outer):
                # A side whose peer already hung up (the shim stopping, say)
                # is not connected any more; closing it is all that is left.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass


def gearman_workers(port: int) -> list[str]:
    """gearmand's ``workers`` admin lines: ``fd ip client_id : functions``."""
    return gearman_admin(port, "workers")


@pytest.fixture
def gearmand(tmp_path: Path) -> Iterator[int]:
    proc: Proc
    proc, port = start_gearmand(tmp_path)
    yield port
    proc.stop()


def submit(port: int, jobs: list[Submission]) -> Future[list[Outcome]]:
    pool = ThreadPoolExecutor(1)

    def run() -> list[Outcome]:
        with GearmanClient(f"127.0.0.1:{port}") as client:
            return client.submit_many(jobs, timeout=45)

    future = pool.submit(run)
    pool.shutdown(wait=False)
    return future


def running(port: int) -> int:
    return gearman_status(port).get(FUNCTION, (0, 0, 0))[1]


def queued(port: int) -> int:
    return gearman_status(port).get(FUNCTION, (0, 0, 0))[0]


def test_n_batches_in_flight_on_one_connection(gearmand: int) -> None:
    n = 4
    answers = Answers()
    shim = GearmanShim(servers=[f"127.0.0.1:{gearmand}"], functions=[FUNCTION, "other_v0.0"],
                       answer=answers, concurrency=n, backoff=FAST)
    shim.start()
    try:
        jobs = [Submission(FUNCTION, b"payload", f"batch-{i}") for i in range(n + 2)]
        jobs.append(Submission(FUNCTION, b"undecodable", "bad"))
        pending = submit(gearmand, jobs)
        wait_until(lambda: answers.busy() == n, timeout=20, what=f"{n} batches held at once")
        wait_until(lambda: running(gearmand) == n, timeout=10, what="gearmand to count them")
        shim_lines = [line for line in gearman_workers(gearmand) if "amworker-shim" in line]
        assert len(shim_lines) == 1, f"one connection for the shim, got {shim_lines}"
        assert FUNCTION in shim_lines[0] and "other_v0.0" in shim_lines[0]
        assert queued(gearmand) == len(jobs), "the rest wait in gearmand (queued counts all)"
        answers.release[1].set()
        outcomes = pending.result(timeout=40)
    finally:
        answers.release[1].set()
        assert shim.stop(10)
    by_unique = dict(zip((job.unique for job in jobs), outcomes, strict=True))
    for i in range(n + 2):
        assert by_unique[f"batch-{i}"] == Outcome(complete=True, data=f"batch-{i}:1".encode())
    assert by_unique["bad"] == Outcome(complete=False), "WORK_FAIL, never WORK_EXCEPTION"
    assert answers.most == n, "never more than concurrency held"
    assert set(answers.deliveries.values()) == {1}, "each delivered once"


def test_a_lost_connection_requeues_exactly_the_jobs_it_held(gearmand: int) -> None:
    n = 3
    answers = Answers()
    proxy = Proxy(gearmand)
    states: list[bool] = []
    shim = GearmanShim(servers=[f"127.0.0.1:{proxy.port}"], functions=[FUNCTION],
                       answer=answers, concurrency=n, backoff=FAST,
                       on_state=lambda server, up: states.append(up))
    shim.start()
    try:
        jobs = [Submission(FUNCTION, b"payload", f"batch-{i}") for i in range(n)]
        pending = submit(gearmand, jobs)
        wait_until(lambda: answers.busy() == n, timeout=20, what=f"{n} batches held")
        proxy.cut()
        # gearmand takes the held jobs back; the shim reconnects and registers.
        wait_until(lambda: queued(gearmand) == n and running(gearmand) == 0, timeout=20,
                   what="gearmand to re-queue the held jobs")
        wait_until(lambda: states[-1:] == [True] and len(states) >= 3, timeout=20,
                   what="the shim to reconnect")
        # The shim counts itself up once its connect() returns, which can be
        # before the proxy's accept() does: wait for the proxy's count too.
        wait_until(lambda: proxy.accepted >= 2, timeout=20, what="the proxy to accept the reconnection")
        assert proxy.accepted == 2, "one reconnection, not several"
        # The first deliveries finish now: their answers must go nowhere.
        answers.release[1].set()
        answers.release[2].set()
        outcomes = pending.result(timeout=40)
    finally:
        answers.release[1].set()
        answers.release[2].set()
        shim.stop(10)
        proxy.close()
    assert states[:3] == [True, False, True]
    for job, outcome in zip(jobs, outcomes, strict=True):
        assert outcome == Outcome(complete=True, data=f"{job.unique}:2".encode()), \
            "answered once, by the re-delivery"
    assert answers.deliveries == Counter({job.unique: 2 for job in jobs})
