"""Unit tests for FastGearmanConnection, fed real Gearman packets over loopback TCP.

The connection connects to a listening socket the test owns and accepts, so
the whole client path runs (connect, socket options, non-blocking reads);
the test plays gearmand by writing binary packets into the accepted end.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Iterator
from typing import TypeVar

import pytest
from gearman.connection import GearmanConnection
from gearman.errors import ConnectionError as GearmanConnectionError
from gearman.protocol import (
    GEARMAN_COMMAND_CAN_DO,
    GEARMAN_COMMAND_JOB_ASSIGN_UNIQ,
    GEARMAN_COMMAND_NO_JOB,
    GEARMAN_COMMAND_NOOP,
    GEARMAN_COMMAND_PRE_SLEEP,
    GEARMAN_COMMAND_TEXT_COMMAND,
    GEARMAN_COMMAND_WORK_COMPLETE,
    GEARMAN_COMMAND_WORK_FAIL,
    pack_binary_command,
)

from worker.batch import gearman_io
from worker.batch.gearman_io import READ_CHUNK_BYTES, FastGearmanConnection

C = TypeVar("C", bound=GearmanConnection)

pytestmark = pytest.mark.timeout(20)

HANDLE = b"H:gearmand:42"
FUNCTION = b"copy_v0.0"
UNIQUE = b"7f3c2d1e-0000-4000-8000-000000000001"


def response(command: int, *args: bytes) -> bytes:
    """A packet as gearmand sends it to a worker."""
    body = b"\x00".join(args)
    return struct.pack("!4sII", b"\x00RES", command, len(body)) + body


def assign(data: bytes) -> bytes:
    return response(GEARMAN_COMMAND_JOB_ASSIGN_UNIQ, HANDLE, FUNCTION, UNIQUE, data)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    yield server
    server.close()


def connect(cls: type[C], listener: socket.socket) -> tuple[C, socket.socket]:
    host, port = listener.getsockname()
    connection = cls(host=host, port=port)
    connection.connect()
    peer, _ = listener.accept()
    return connection, peer


@pytest.fixture
def fast(listener: socket.socket) -> Iterator[tuple[FastGearmanConnection, socket.socket]]:
    connection, peer = connect(FastGearmanConnection, listener)
    yield connection, peer
    connection.close()
    peer.close()


def read_exactly(connection: GearmanConnection, total: int) -> int:
    """Call read_data_from_socket until the buffer holds ``total`` bytes; count the calls."""
    calls = 0
    while len(connection._incoming_buffer) < total:
        select.select([connection], [], [], 5)
        connection.read_data_from_socket()
        calls += 1
    return calls


def commands(connection: GearmanConnection) -> list[tuple[int, dict[str, bytes]]]:
    out = []
    while (command := connection.read_command()) is not None:
        out.append(command)
    return out


def test_a_1mb_job_split_across_many_reads_is_parsed_once_whole(
    fast: tuple[FastGearmanConnection, socket.socket],
) -> None:
    connection, peer = fast
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value, NULs included
    packet = assign(data)
    # Odd cut points: inside the header, inside the arguments, then 64 KiB pieces.
    cuts = [5, 40, *range(64 * 1024, len(packet), 64 * 1024), len(packet)]

    received = 0
    reads = 0
    start = 0
    for end in cuts:
        peer.sendall(packet[start:end])
        received += end - start
        reads += read_exactly(connection, received)
        start = end
        if end < len(packet):
            assert connection.read_commands_from_buffer() == 0
            assert len(connection._incoming_buffer) == end  # nothing dropped while waiting

    assert connection.read_commands_from_buffer() == 1
    assert reads >= len(cuts) > len(packet) // READ_CHUNK_BYTES
    assert commands(connection) == [
        (GEARMAN_COMMAND_JOB_ASSIGN_UNIQ,
         {"job_handle": HANDLE, "task": FUNCTION, "unique": UNIQUE, "data": data}),
    ]
    assert len(connection._incoming_buffer) == 0


def test_several_commands_in_one_chunk_are_all_parsed(
    fast: tuple[FastGearmanConnection, socket.socket],
) -> None:
    connection, peer = fast
    chunk = (
        response(GEARMAN_COMMAND_NOOP)
        + assign(b'{"tasks": {}}')
        + response(GEARMAN_COMMAND_NO_JOB)
        + response(GEARMAN_COMMAND_NOOP)
    )
    tail = assign(b"second")[:20]  # the start of a fifth command

    peer.sendall(chunk + tail)
    read_exactly(connection, len(chunk) + len(tail))

    assert connection.read_commands_from_buffer() == 4
    assert commands(connection) == [
        (GEARMAN_COMMAND_NOOP, {}),
        (GEARMAN_COMMAND_JOB_ASSIGN_UNIQ,
         {"job_handle": HANDLE, "task": FUNCTION, "unique": UNIQUE, "data": b'{"tasks": {}}'}),
        (GEARMAN_COMMAND_NO_JOB, {}),
        (GEARMAN_COMMAND_NOOP, {}),
    ]
    # Only the incomplete command is left, and the buffer still grows (no view pins it).
    assert bytes(connection._incoming_buffer) == tail
    rest = assign(b"second")[20:]
    peer.sendall(rest)
    read_exactly(connection, len(tail) + len(rest))
    assert connection.read_commands_from_buffer() == 1
    assert commands(connection)[0][1]["data"] == b"second"
    assert len(connection._incoming_buffer) == 0


def test_noop_alone_wakes_the_worker(fast: tuple[FastGearmanConnection, socket.socket]) -> None:
    connection, peer = fast

    peer.sendall(response(GEARMAN_COMMAND_NOOP))
    read_exactly(connection, 12)

    assert connection.read_commands_from_buffer() == 1
    assert commands(connection) == [(GEARMAN_COMMAND_NOOP, {})]
    assert len(connection._incoming_buffer) == 0


def test_text_responses_are_parsed_line_by_line(fast: tuple[FastGearmanConnection, socket.socket]) -> None:
    connection, peer = fast

    peer.sendall(b"OK\r\nsta")
    read_exactly(connection, 7)

    assert connection.read_commands_from_buffer() == 1
    assert commands(connection) == [(GEARMAN_COMMAND_TEXT_COMMAND, {"raw_text": b"OK\r"})]
    assert bytes(connection._incoming_buffer) == b"sta"


def test_a_read_with_nothing_waiting_returns_without_blocking(
    fast: tuple[FastGearmanConnection, socket.socket],
) -> None:
    connection, _ = fast

    assert connection.read_data_from_socket() == 0


def test_remote_close_raises_gearman_connection_error(
    fast: tuple[FastGearmanConnection, socket.socket],
) -> None:
    connection, peer = fast
    peer.close()
    select.select([connection], [], [], 5)

    with pytest.raises(GearmanConnectionError, match="remote disconnected"):
        connection.read_data_from_socket()
    assert connection.connected is False


def test_connected_socket_is_non_blocking_with_keepalive(
    fast: tuple[FastGearmanConnection, socket.socket],
) -> None:
    connection, _ = fast
    sock = connection.gearman_socket
    assert sock is not None

    assert sock.gettimeout() == 0.0
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_stock_gearman3_connection_cannot_read_a_single_packet(listener: socket.socket) -> None:
    """Why FastGearmanConnection exists: gearman3 0.2.1 calls array.fromstring."""
    connection, peer = connect(GearmanConnection, listener)
    try:
        peer.sendall(response(GEARMAN_COMMAND_NOOP))
        select.select([connection], [], [], 5)

        with pytest.raises(AttributeError, match="fromstring"):
            connection.read_data_from_socket()
    finally:
        connection.close()
        peer.close()


# --- connecting -------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_connecting_to_a_closed_port_raises_connection_error_quickly() -> None:
    connection = FastGearmanConnection(host="127.0.0.1", port=closed_port())
    started = time.monotonic()

    with pytest.raises(GearmanConnectionError, match="127.0.0.1"):
        connection.connect()

    assert time.monotonic() - started < 2
    assert connection.connected is False


def test_connecting_to_a_server_that_never_answers_gives_up_at_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A server that never answers the SYN (a dead host, a firewall that drops)
    # makes the kernel's connect wait until the timeout it was given runs out;
    # socket.create_connection then raises TimeoutError("timed out"). Making
    # that happen for real depends on the kernel (a full accept queue drops
    # SYNs only on some), so the seam is played here: what amworker owns is
    # passing its timeout down and turning the timeout into gearman3's error.
    asked: list[tuple[tuple[str, int], object]] = []

    def never_answers(address: tuple[str, int], timeout: object = None, *_: object) -> socket.socket:
        asked.append((address, timeout))
        raise TimeoutError("timed out")

    monkeypatch.setattr(gearman_io, "CONNECT_TIMEOUT_SECONDS", 0.3)
    monkeypatch.setattr(socket, "create_connection", never_answers)
    connection = FastGearmanConnection(host="192.0.2.1", port=4730)  # TEST-NET-1: never routed

    with pytest.raises(GearmanConnectionError, match="timed out"):
        connection.connect()

    assert asked == [(("192.0.2.1", 4730), 0.3)], "the connect timeout was not passed down"
    assert connection.connected is False


def test_tls_is_refused_with_a_connection_error() -> None:
    connection = FastGearmanConnection(host="127.0.0.1", port=closed_port(),
                                       keyfile="k", certfile="c", ca_certs="ca")

    with pytest.raises(GearmanConnectionError, match="TLS"):
        connection.connect()


@pytest.mark.parametrize(
    ("command", "args"),
    [
        (GEARMAN_COMMAND_WORK_COMPLETE, {"job_handle": b"H:vm:1", "data": b"x" * 300_000}),
        (GEARMAN_COMMAND_WORK_COMPLETE, {"job_handle": "H:vm:2", "data": b""}),
        (GEARMAN_COMMAND_WORK_FAIL, {"job_handle": b"H:vm:3"}),
        (GEARMAN_COMMAND_CAN_DO, {"task": "copy_v0.0"}),
        (GEARMAN_COMMAND_PRE_SLEEP, {}),
    ],
)
def test_outgoing_commands_are_byte_identical_to_gearman3s_packing(
    fast: tuple[FastGearmanConnection, socket.socket], command: int, args: dict[str, bytes | str],
) -> None:
    connection, peer = fast
    expected = pack_binary_command(command, dict(args), is_response=False)

    connection.send_command(command, dict(args))
    connection.send_commands_to_buffer()
    assert connection.gearman_socket is not None
    while connection.send_data_to_socket():
        select.select([], [connection.gearman_socket], [], 1)

    received = b""
    peer.settimeout(2)
    while len(received) < len(expected):
        received += peer.recv(1 << 20)
    assert received == expected


def test_pack_chunks_round_trips_through_gearman3s_parser() -> None:
    from gearman.protocol import parse_binary_command

    answer = bytearray(b"\x00big answer\x00" * 1000)
    chunks = gearman_io.pack_chunks(GEARMAN_COMMAND_WORK_COMPLETE, HANDLE, answer)
    assert any(chunk.obj is answer for chunk in chunks), "the answer is sent as is, not copied"
    packet = b"".join(chunks)
    # gearman3's parser expects a buffer with .tobytes(), as the connection hands it.
    command, args, size = parse_binary_command(memoryview(packet), is_response=False)
    assert (command, size) == (GEARMAN_COMMAND_WORK_COMPLETE, len(packet))
    assert args == {"job_handle": HANDLE, "data": bytes(answer)}
    assert b"".join(gearman_io.pack_chunks(GEARMAN_COMMAND_NO_JOB, is_response=True)) == \
        response(GEARMAN_COMMAND_NO_JOB)


def test_pack_chunks_refuses_what_gearman_cannot_carry() -> None:
    with pytest.raises(ValueError, match="NUL"):
        gearman_io.pack_chunks(GEARMAN_COMMAND_WORK_COMPLETE, b"H\x00:1", b"data")
    with pytest.raises(ValueError, match="argument"):
        gearman_io.pack_chunks(GEARMAN_COMMAND_WORK_FAIL, HANDLE, b"extra")
