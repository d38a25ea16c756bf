"""Unit tests for the minimal Gearman client, against a scripted fake gearmand.

The fake runs in a thread on a loopback socket. Each test hands it a script
(a function of one :class:`Peer`) that reads the client's requests and writes
the responses gearmand would; the script's assertions and errors are raised
in the test when the thread is joined.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from worker.cli.gearman_client import (
    ERROR,
    JOB_CREATED,
    SUBMIT_JOB,
    WORK_COMPLETE,
    WORK_DATA,
    WORK_EXCEPTION,
    WORK_FAIL,
    WORK_STATUS,
    GearmanClient,
    GearmanClientError,
    Outcome,
    Submission,
    pack,
)

pytestmark = pytest.mark.timeout(20)

HEADER = struct.Struct("!4sII")


class Peer:
    """The fake gearmand's end of one client connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("client closed the connection")
            self.buffer += chunk
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken

    def request(self) -> tuple[int, list[bytes]]:
        magic, command, size = HEADER.unpack(self._take(HEADER.size))
        assert magic == b"\x00REQ"
        return command, self._take(size).split(b"\x00", 2)

    def submission(self) -> tuple[bytes, bytes, bytes]:
        command, args = self.request()
        assert command == SUBMIT_JOB
        function, unique, data = args
        return function, unique, data

    def send(self, command: int, *args: bytes, magic: bytes = b"\x00RES") -> None:
        body = b"\x00".join(args)
        self.sock.sendall(HEADER.pack(magic, command, len(body)) + body)


Script = Callable[[Peer], None]


class FakeGearmand:
    """Accepts one connection and runs ``script`` on it in a thread."""

    def __init__(self, script: Script) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.script = script
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
            with conn:
                self.script(Peer(conn))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            self.error = exc

    def finish(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive(), "fake gearmand script did not finish"
        self.server.close()
        if self.error is not None:
            raise self.error


Start = Callable[[Script], FakeGearmand]


@pytest.fixture
def gearmand() -> Iterator[Start]:
    started: list[FakeGearmand] = []

    def start(script: Script) -> FakeGearmand:
        fake = FakeGearmand(script)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.server.close()


def run(gearmand: Start, script: Script,
        client_side: Callable[[GearmanClient], object]) -> object:
    fake = gearmand(script)
    with GearmanClient(fake.address, connect_timeout=5) as client:
        try:
            return client_side(client)
        finally:
            client.close()
            fake.finish()


# --- packets -------------------------------------------------------------------


def test_pack_builds_a_request_packet() -> None:
    assert pack(SUBMIT_JOB, b"f", b"u", b"data") == b"\x00REQ" + struct.pack("!II", 7, 8) + b"f\x00u\x00data"
    assert pack(4) == b"\x00REQ\x00\x00\x00\x04\x00\x00\x00\x00"


# --- one job ---------------------------------------------------------------------


def test_submit_sends_function_unique_and_data_and_returns_work_complete(gearmand: Start) -> None:
    seen: list[tuple[bytes, bytes, bytes]] = []

    def script(peer: Peer) -> None:
        seen.append(peer.submission())
        peer.send(JOB_CREATED, b"H:1")
        peer.send(WORK_COMPLETE, b"H:1", b"result\x00with a NUL")

    outcome = run(gearmand, script, lambda c: c.submit("copy_v0.0", b'{"tasks": {}}', unique="batch-1"))

    assert seen == [(b"copy_v0.0", b"batch-1", b'{"tasks": {}}')]
    assert outcome == Outcome(complete=True, data=b"result\x00with a NUL")


def test_work_fail_is_an_incomplete_outcome(gearmand: Start) -> None:
    def script(peer: Peer) -> None:
        peer.submission()
        peer.send(JOB_CREATED, b"H:1")
        peer.send(WORK_FAIL, b"H:1")

    assert run(gearmand, script, lambda c: c.submit("f", b"x")) == Outcome(complete=False)


def test_work_exception_keeps_its_text(gearmand: Start) -> None:
    def script(peer: Peer) -> None:
        peer.submission()
        peer.send(JOB_CREATED, b"H:1")
        peer.send(WORK_EXCEPTION, b"H:1", b"Traceback: boom")
        peer.send(WORK_FAIL, b"H:1")  # gearmand follows an exception with a fail

    outcome = run(gearmand, script, lambda c: c.submit("f", b"x"))

    assert outcome == Outcome(complete=False, exception=b"Traceback: boom")


def test_error_from_the_server_raises(gearmand: Start) -> None:
    def script(peer: Peer) -> None:
        peer.submission()
        peer.send(ERROR, b"ERR_UNKNOWN", b"no such function")

    with pytest.raises(GearmanClientError, match="gearmand error.*ERR_UNKNOWN"):
        run(gearmand, script, lambda c: c.submit("f", b"x"))


def test_progress_packets_are_ignored(gearmand: Start) -> None:
    def script(peer: Peer) -> None:
        peer.submission()
        peer.send(JOB_CREATED, b"H:1")
        peer.send(WORK_STATUS, b"H:1", b"1", b"2")
        peer.send(WORK_DATA, b"H:1", b"partial")
        peer.send(WORK_COMPLETE, b"H:1", b"done")

    assert run(gearmand, script, lambda c: c.submit("f", b"x")) == Outcome(complete=True, data=b"done")


def test_a_response_arriving_byte_by_byte_is_reassembled(gearmand: Start) -> None:
    def script(peer: Peer) -> None:
        peer.submission()
        wire = HEADER.pack(b"\x00RES", JOB_CREATED, 3) + b"H:1"
        wire += HEADER.pack(b"\x00RES", WORK_COMPLETE, 8) + b"H:1\x00data"
        for i in range(len(wire)):
            peer.sock.sendall(wire[i:i + 1])

    assert run(gearmand, script, lambda c: c.submit("f", b"x")) == Outcome(complete=True, data=b"data")


def test_a_large_result_is_read_whole(gearmand: Start) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB

    def script(peer: Peer) -> None:
        _, _, data = peer.submission()
        assert data == big
        peer.send(JOB_CREATED, b"H:1")
        peer.send(WORK_COMPLETE, b"H:1", data[::-1])

    outcome = run(gearmand, script, lambda c: c.submit("f", big))

    assert outcome == Outcome(complete=True, data=big[::-1])


# --- many jobs ------------------------------------------------------------------


def test_submit_many_sends_all_before_waiting_and_orders_outcomes_by_submission(gearmand: Start) -> None:
    jobs = [Submission("f", b"a", "u1"), Submission("f", b"b", "u2"), Submission("g", b"c", "u3")]

    def script(peer: Peer) -> None:
        # All three submissions arrive before the server says anything.
        assert [peer.submission() for _ in jobs] == [(b"f", b"u1", b"a"), (b"f", b"u2", b"b"),
                                                     (b"g", b"u3", b"c")]
        for handle in (b"H:1", b"H:2", b"H:3"):
            peer.send(JOB_CREATED, handle)
        peer.send(WORK_COMPLETE, b"H:3", b"third")
        peer.send(WORK_FAIL, b"H:1")
        peer.send(WORK_COMPLETE, b"H:2", b"second")

    outcomes = run(gearmand, script, lambda c: c.submit_many(jobs))

    assert outcomes == [Outcome(complete=False), Outcome(complete=True, data=b"second"),
                        Outcome(complete=True, data=b"third")]


def test_a_job_finishing_before_the_next_is_created_is_not_lost(gearmand: Start) -> None:
    def script(peer: Peer) -> None:
        peer.submission()
        peer.submission()
        peer.send(JOB_CREATED, b"H:1")
        peer.send(WORK_COMPLETE, b"H:1", b"one")
        peer.send(JOB_CREATED, b"H:2")
        peer.send(WORK_COMPLETE, b"H:2", b"two")

    outcomes = run(gearmand, script,
                   lambda c: c.submit_many([Submission("f", b"1", "a"), Submission("f", b"2", "b")]))

    assert outcomes == [Outcome(complete=True, data=b"one"), Outcome(complete=True, data=b"two")]


def test_coalesced_duplicate_submissions_both_get_the_one_result(gearmand: Start) -> None:
    """gearmand merges equal (function, unique) jobs: one handle, one result."""

    def script(peer: Peer) -> None:
        peer.submission()
        peer.submission()
        peer.send(JOB_CREATED, b"H:1")
        peer.send(JOB_CREATED, b"H:1")
        peer.send(WORK_COMPLETE, b"H:1", b"shared")

    outcomes = run(gearmand, script,
                   lambda c: c.submit_many([Submission("f", b"x", "same")] * 2, timeout=5))

    assert outcomes == [Outcome(complete=True, data=b"shared")] * 2


# --- failures of the transport -------------------------------------------------------


def test_server_closing_the_connection_raises(gearmand: Start) -> None:
    def script(peer: Peer) -> None:
        peer.submission()
        peer.send(JOB_CREATED, b"H:1")

    with pytest.raises(GearmanClientError, match="closed the connection"):
        run(gearmand, script, lambda c: c.submit("f", b"x"))


def test_bad_magic_raises(gearmand: Start) -> None:
    def script(peer: Peer) -> None:
        peer.submission()
        peer.send(JOB_CREATED, b"H:1", magic=b"\x00REQ")

    with pytest.raises(GearmanClientError, match="bad magic"):
        run(gearmand, script, lambda c: c.submit("f", b"x"))


def test_no_answer_within_the_timeout_raises(gearmand: Start) -> None:
    release = threading.Event()

    def script(peer: Peer) -> None:
        peer.submission()
        peer.send(JOB_CREATED, b"H:1")
        release.wait(10)  # hold the connection open, silent, until the client gave up

    def client_side(client: GearmanClient) -> object:
        try:
            return client.submit("f", b"x", timeout=0.2)
        finally:
            release.set()

    with pytest.raises(GearmanClientError, match="timed out"):
        run(gearmand, script, client_side)


def test_connecting_to_a_closed_port_raises() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(OSError):
        GearmanClient(f"127.0.0.1:{port}", connect_timeout=1)
