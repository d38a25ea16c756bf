"""The shim's Gearman loop, packet by packet, against a scripted gearmand.

The test owns a listening loopback socket and plays gearmand on the accepted
connection, so the exact sequence the loop sends is checked: registration on
every connection, one grab at a time, ``PRE_SLEEP`` after ``NO_JOB``, no grab
while the cap is reached, and answers only on the connection a job came from.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import tracemalloc
from collections.abc import Iterator

import pytest
from gearman import protocol as gp

from harness.services import wait_until
from worker.backoff import Backoff
from worker.batch.gearman_loop import Answerer, Reply
from worker.gearman_shim import GearmanShim

pytestmark = pytest.mark.timeout(30)

HEADER = struct.Struct("!4sII")
FAST = Backoff(first=0.05, factor=2.0, maximum=0.2)


class Gearmand:
    """The scripted server's end of the shim's connection."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.sock: socket.socket | None = None
        self.buffer = b""

    def accept(self) -> None:
        self.sock, _ = self.listener.accept()
        self.sock.settimeout(10)
        self.buffer = b""

    def _take(self, size: int) -> bytes:
        assert self.sock is not None
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            assert chunk, "the shim closed the connection"
            self.buffer += chunk
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken

    def expect(self, command: int) -> list[bytes]:
        """Read the next request; fail unless it is ``command``. Returns its arguments."""
        magic, got, size = HEADER.unpack(self._take(HEADER.size))
        assert magic == b"\x00REQ"
        body = self._take(size)
        assert gp.get_command_name(got) == gp.get_command_name(command)
        count = len(gp.GEARMAN_PARAMS_FOR_COMMAND[command])
        return body.split(b"\x00", count - 1) if count else []

    def assert_closed(self, why: str) -> None:
        """The shim closed its end and sent nothing more (a reset counts: closing
        with data of ours still unread resets the connection)."""
        assert self.sock is not None
        try:
            rest = self.sock.recv(1)
        except ConnectionResetError:
            rest = b""
        assert rest == b"", why

    def answer(self) -> list[bytes]:
        """The next WORK_COMPLETE's arguments, skipping grabs before it."""
        while True:
            magic, got, size = HEADER.unpack(self._take(HEADER.size))
            body = self._take(size)
            if got == gp.GEARMAN_COMMAND_WORK_COMPLETE:
                return body.split(b"\x00", 1)
            assert got == gp.GEARMAN_COMMAND_GRAB_JOB_UNIQ, gp.get_command_name(got)

    def send(self, command: int, *args: bytes) -> None:
        assert self.sock is not None
        body = b"\x00".join(args)
        self.sock.sendall(HEADER.pack(b"\x00RES", command, len(body)) + body)

    def assign(self, handle: bytes, data: bytes) -> None:
        self.send(gp.GEARMAN_COMMAND_JOB_ASSIGN_UNIQ, handle, b"f1", b"u-" + handle, data)

    def assign_on_grab(self, handle: bytes, data: bytes) -> None:
        """Wait for the shim's next request to be a grab, then hand it this job."""
        self.expect(gp.GEARMAN_COMMAND_GRAB_JOB_UNIQ)
        self.assign(handle, data)

    def registered(self) -> None:
        # The host and pid: gearadmin --workers tells the shims apart.
        host = socket.gethostname()[:48]
        assert self.expect(gp.GEARMAN_COMMAND_SET_CLIENT_ID) == [
            f"amworker-shim:{host}:{os.getpid()}".encode()]
        assert self.expect(gp.GEARMAN_COMMAND_CAN_DO) == [b"f1"]
        assert self.expect(gp.GEARMAN_COMMAND_CAN_DO) == [b"f2"]


class Answers:
    """Holds each job until its handle is released; ``fail`` answers None, ``boom`` raises."""

    def __init__(self) -> None:
        self.release: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def event(self, unique: str) -> threading.Event:
        with self.lock:
            return self.release.setdefault(unique, threading.Event())

    def __call__(self, function: str, unique: str, data: bytes) -> bytes | None:
        assert self.event(unique).wait(20)
        if data == b"fail":
            return None
        if data == b"boom":
            raise RuntimeError("an unexpected error in the runner")
        if data == b"not-bytes":
            return 42  # type: ignore[return-value]  # a bug the loop must survive
        return f"{function}/{unique}/{data.decode()}".encode()


@pytest.fixture
def gearmand() -> Iterator[Gearmand]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    server = Gearmand(listener)
    yield server
    if server.sock is not None:
        server.sock.close()
    listener.close()


def start(gearmand: Gearmand, answers: Answerer, concurrency: int) -> GearmanShim:
    port = gearmand.listener.getsockname()[1]
    shim = GearmanShim(servers=[f"127.0.0.1:{port}"], functions=["f1", "f2"], answer=answers,
                       concurrency=concurrency, backoff=FAST)
    shim.start()
    gearmand.accept()
    gearmand.registered()
    return shim


def test_one_grab_at_a_time_sleep_once_and_stop_at_the_cap(gearmand: Gearmand) -> None:
    answers = Answers()
    shim = start(gearmand, answers, concurrency=2)
    try:
        gearmand.expect(gp.GEARMAN_COMMAND_GRAB_JOB_UNIQ)
        gearmand.send(gp.GEARMAN_COMMAND_NO_JOB)
        gearmand.expect(gp.GEARMAN_COMMAND_PRE_SLEEP)
        # Two wake-ups for one sleep: one grab, then straight back to sleep.
        gearmand.send(gp.GEARMAN_COMMAND_NOOP)
        gearmand.send(gp.GEARMAN_COMMAND_NOOP)
        gearmand.expect(gp.GEARMAN_COMMAND_GRAB_JOB_UNIQ)
        gearmand.send(gp.GEARMAN_COMMAND_NO_JOB)
        gearmand.expect(gp.GEARMAN_COMMAND_PRE_SLEEP)
        gearmand.send(gp.GEARMAN_COMMAND_NOOP)
        gearmand.assign_on_grab(b"H1", b"one")
        gearmand.assign_on_grab(b"H2", b"two")  # one held, room for another
        wait_until(lambda: shim.busy == 2, timeout=10, what="two jobs held")
        # At the cap: the next thing on the wire is H1's answer, then a grab.
        answers.event("u-H1").set()
        assert gearmand.expect(gp.GEARMAN_COMMAND_WORK_COMPLETE) == [b"H1", b"f1/u-H1/one"]
        gearmand.assign_on_grab(b"H3", b"fail")
        answers.event("u-H3").set()
        assert gearmand.expect(gp.GEARMAN_COMMAND_WORK_FAIL) == [b"H3"]
        gearmand.assign_on_grab(b"H4", b"boom")
        answers.event("u-H4").set()
        assert gearmand.expect(gp.GEARMAN_COMMAND_WORK_FAIL) == [b"H4"]
        gearmand.expect(gp.GEARMAN_COMMAND_GRAB_JOB_UNIQ)
        answers.event("u-H2").set()
        assert gearmand.expect(gp.GEARMAN_COMMAND_WORK_COMPLETE) == [b"H2", b"f1/u-H2/two"]
    finally:
        for unique in ("u-H1", "u-H2", "u-H3", "u-H4"):
            answers.event(unique).set()
        assert shim.stop(5)


def test_a_new_connection_registers_again_and_gets_no_stale_answer(gearmand: Gearmand) -> None:
    answers = Answers()
    shim = start(gearmand, answers, concurrency=2)
    try:
        gearmand.assign_on_grab(b"H1", b"one")
        gearmand.expect(gp.GEARMAN_COMMAND_GRAB_JOB_UNIQ)
        assert gearmand.sock is not None
        gearmand.sock.close()  # the connection is lost with H1 held
        gearmand.accept()
        gearmand.registered()
        # H1 still occupies its thread: one grab only, for the one free place.
        gearmand.expect(gp.GEARMAN_COMMAND_GRAB_JOB_UNIQ)
        gearmand.send(gp.GEARMAN_COMMAND_NO_JOB)
        gearmand.expect(gp.GEARMAN_COMMAND_PRE_SLEEP)
        answers.event("u-H1").set()
        wait_until(lambda: shim.busy == 0, timeout=10, what="H1's answer to come back")
        # Its answer was for the lost connection: the next packet is a grab.
        gearmand.send(gp.GEARMAN_COMMAND_NOOP)
        gearmand.expect(gp.GEARMAN_COMMAND_GRAB_JOB_UNIQ)
    finally:
        answers.event("u-H1").set()
        assert shim.stop(5)


def test_stop_answers_held_jobs_and_grabs_nothing_more(gearmand: Gearmand) -> None:
    answers = Answers()
    shim = start(gearmand, answers, concurrency=2)
    gearmand.assign_on_grab(b"H1", b"one")
    gearmand.expect(gp.GEARMAN_COMMAND_GRAB_JOB_UNIQ)
    gearmand.send(gp.GEARMAN_COMMAND_NO_JOB)
    gearmand.expect(gp.GEARMAN_COMMAND_PRE_SLEEP)
    stopped: list[bool] = []
    stopper = threading.Thread(target=lambda: stopped.append(shim.stop(10)))
    stopper.start()
    wait_until(lambda: shim.loop.stopping.is_set(), timeout=5, what="the stop request")
    gearmand.send(gp.GEARMAN_COMMAND_NOOP)  # a job arrives: a stopping shim does not grab
    answers.event("u-H1").set()
    assert gearmand.expect(gp.GEARMAN_COMMAND_WORK_COMPLETE) == [b"H1", b"f1/u-H1/one"]
    stopper.join(10)
    assert stopped == [True]
    gearmand.assert_closed("closed after the answer, nothing else sent")


def test_two_servers_share_the_cap_and_answers_go_home(gearmand: Gearmand) -> None:
    other_listener = socket.create_server(("127.0.0.1", 0))
    other_listener.settimeout(10)
    other = Gearmand(other_listener)
    answers = Answers()
    servers = [f"127.0.0.1:{g.listener.getsockname()[1]}" for g in (gearmand, other)]
    shim = GearmanShim(servers=servers, functions=["f1", "f2"], answer=answers,
                       concurrency=2, backoff=FAST)
    shim.start()
    try:
        for server in (gearmand, other):
            server.accept()
            server.registered()
            server.expect(gp.GEARMAN_COMMAND_GRAB_JOB_UNIQ)  # one grab each: 2 places
        gearmand.assign(b"A1", b"a")
        other.assign(b"B1", b"b")
        wait_until(lambda: shim.busy == 2, timeout=10, what="one job from each server")
        # A freed place may be offered to either server: skip grabs, find the answer.
        answers.event("u-B1").set()
        assert other.answer() == [b"B1", b"f1/u-B1/b"]
        answers.event("u-A1").set()
        assert gearmand.answer() == [b"A1", b"f1/u-A1/a"]
    finally:
        answers.event("u-A1").set()
        answers.event("u-B1").set()
        assert shim.stop(5)
        if other.sock is not None:
            other.sock.close()
        other_listener.close()


def test_the_loop_survives_its_own_unexpected_error(gearmand: Gearmand) -> None:
    answers = Answers()
    shim = start(gearmand, answers, concurrency=1)
    try:
        gearmand.assign_on_grab(b"H1", b"not-bytes")
        answers.event("u-H1").set()  # packing 42 fails inside the loop
        gearmand.assert_closed("the connection is dropped (gearmand would re-queue H1)")
        gearmand.accept()
        gearmand.registered()
        gearmand.assign_on_grab(b"H2", b"two")
        answers.event("u-H2").set()
        assert gearmand.expect(gp.GEARMAN_COMMAND_WORK_COMPLETE) == [b"H2", b"f1/u-H2/two"]
    finally:
        answers.event("u-H1").set()
        answers.event("u-H2").set()
        assert shim.stop(5)


class BigAnswers(Answers):
    """Answers with a fresh 1-MiB payload, allocated in :meth:`big` (traced by tracemalloc)."""

    SIZE = 1 << 20

    def __call__(self, function: str, unique: str, data: bytes) -> bytes | None:
        assert self.event(unique).wait(20)
        return self.big()

    def big(self) -> bytes:
        return b"a" * self.SIZE


def _alive_from(where: str) -> int:
    """Bytes still allocated by the code at ``where`` (a function's qualified place)."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, __file__)])
    return sum(stat.size for stat in snapshot.statistics("traceback")
               if any(where in line for line in stat.traceback.format()))


def test_an_idle_lane_keeps_nothing_of_its_last_answer(gearmand: Gearmand) -> None:
    """Each lane used to hold its last answer (and request) until its next job."""
    answers = BigAnswers()
    tracemalloc.start(4)
    # One lane: at the cap, each answer comes before the next grab.
    shim = start(gearmand, answers, concurrency=1)
    try:
        handles = [b"H1", b"H2"]
        for handle in handles:
            answers.event(f"u-{handle.decode()}").set()
            gearmand.assign_on_grab(handle, b"x")
            command = gearmand.expect(gp.GEARMAN_COMMAND_WORK_COMPLETE)
            assert command[0] == handle and len(command[1]) == BigAnswers.SIZE
            del command
        wait_until(lambda: shim.busy == 0, timeout=10, what="every answer written")
        # The answers were written; a lane that still names its last one
        # keeps it for as long as no new job comes (here: for ever).
        wait_until(lambda: _alive_from("return b\"a\" * self.SIZE") < BigAnswers.SIZE,
                   timeout=5, what="the lanes to let go of their answers")
    finally:
        tracemalloc.stop()
        assert shim.stop(5)


def test_an_idle_lane_keeps_nothing_of_its_last_request(gearmand: Gearmand) -> None:
    """The request (up to AMWORKER_MAX_PAYLOAD_BYTES) goes too, not only the answer."""
    answers = Answers()
    tracemalloc.start(4)
    shim = start(gearmand, answers, concurrency=1)
    size = BigAnswers.SIZE
    try:
        answers.event("u-H1").set()
        gearmand.assign_on_grab(b"H1", b"r" * size)
        command = gearmand.expect(gp.GEARMAN_COMMAND_WORK_COMPLETE)
        assert command[0] == b"H1"
        del command
        wait_until(lambda: shim.busy == 0, timeout=10, what="the answer written")

        def big_blocks_in_the_shim() -> int:
            # Blocks of the request's size allocated by amworker's code (the
            # fake gearmand's own copy was allocated in this file).
            snapshot = tracemalloc.take_snapshot()
            return sum(1 for trace in snapshot.traces
                       if trace.size >= size and "/worker/" in trace.traceback[0].filename)

        wait_until(lambda: big_blocks_in_the_shim() == 0, timeout=5,
                   what="the lane to let go of its request")
    finally:
        tracemalloc.stop()
        assert shim.stop(5)


class FollowedUp:
    """Replies whose follow-up waits for the test to have read the answer (or raises)."""

    def __init__(self) -> None:
        self.read = threading.Event()
        self.saw_answer_first: list[bool] = []

    def __call__(self, function: str, unique: str, data: bytes) -> Reply:
        def then() -> None:
            if data == b"boom":
                raise RuntimeError("the answer record could not be written")
            # Run before the answer was written, this would wait in vain.
            self.saw_answer_first.append(self.read.wait(5))

        return Reply(f"{unique}/{data.decode()}".encode(), then=then)


def test_a_reply_follow_up_runs_after_its_answer_is_on_the_wire(gearmand: Gearmand) -> None:
    # The answer record's round trip must not delay the controller.
    replies = FollowedUp()
    shim = start(gearmand, replies, concurrency=1)
    try:
        gearmand.assign_on_grab(b"H1", b"one")
        assert gearmand.expect(gp.GEARMAN_COMMAND_WORK_COMPLETE) == [b"H1", b"u-H1/one"]
        replies.read.set()
        wait_until(lambda: bool(replies.saw_answer_first), timeout=10, what="the follow-up")
        assert replies.saw_answer_first == [True]
        # A follow-up that fails is logged; the lane goes on serving.
        gearmand.assign_on_grab(b"H2", b"boom")
        assert gearmand.expect(gp.GEARMAN_COMMAND_WORK_COMPLETE) == [b"H2", b"u-H2/boom"]
        gearmand.assign_on_grab(b"H3", b"three")
        assert gearmand.expect(gp.GEARMAN_COMMAND_WORK_COMPLETE) == [b"H3", b"u-H3/three"]
        wait_until(lambda: len(replies.saw_answer_first) == 2, timeout=10, what="the third follow-up")
    finally:
        replies.read.set()
        assert shim.stop(5)


def test_stop_lets_the_last_follow_ups_finish(gearmand: Gearmand) -> None:
    # A stopped shim must not leave its last answered batches unrecorded.
    recorded = threading.Event()
    stopping: list[threading.Event] = []

    def answer(function: str, unique: str, data: bytes) -> Reply:
        def then() -> None:
            # A slow record write (Redis busy) still running when stop begins.
            assert stopping[0].wait(10), "stop never began"
            threading.Event().wait(0.3)  # the write's own duration, not a synchronisation
            recorded.set()

        return Reply(b"done", then=then)

    shim = start(gearmand, answer, concurrency=1)
    stopping.append(shim.loop.stopping)
    gearmand.assign_on_grab(b"H1", b"one")
    assert gearmand.expect(gp.GEARMAN_COMMAND_WORK_COMPLETE) == [b"H1", b"done"]
    assert shim.stop(5)
    assert recorded.is_set(), "stop returned while the lane was still writing its record"
