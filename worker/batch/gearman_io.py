"""A fixed connection class for gearman3 0.2.1, plugged in where it asks for one.

gearman3's ``GearmanConnectionManager`` takes a ``connection_class``. Its own
``GearmanConnection`` cannot work on Python 3.9+ and is slow:

* it appends received bytes with ``array.fromstring``, which Python 3.9
  removed, so the first byte a worker receives raises ``AttributeError``;
* it reads 4 KiB per poll, so a 500 KB batch takes 125 trips round the
  event loop;
* after every parsed command it copies the whole rest of the buffer
  (``buffer[cmd_len:]``), which is quadratic in the number of commands
  waiting;
* it connects with no timeout, so an unreachable server hangs the thread,
  and its TLS path calls ``ssl.wrap_socket``, removed in Python 3.12;
* it joins every packed command onto its output buffer and re-slices the
  buffer after each partial send: three copies of a large answer.

:class:`FastGearmanConnection` keeps the class's contract (the manager and the
command handlers are unchanged) and replaces only those parts.
"""

from __future__ import annotations

import array
import collections
import socket
import struct

from gearman.connection import GearmanConnection
from gearman.protocol import (
    GEARMAN_COMMAND_TEXT_COMMAND,
    GEARMAN_PARAMS_FOR_COMMAND,
    MAGIC_REQ_STRING,
    MAGIC_RES_STRING,
    NULL_CHAR,
    parse_binary_command,
    parse_text_command,
)

#: One recv takes up to this much: a whole typical batch in one call.
READ_CHUNK_BYTES = 256 * 1024
#: How long connecting to a gearmand may take before the attempt fails.
CONNECT_TIMEOUT_SECONDS = 5.0


class FastGearmanConnection(GearmanConnection):
    """``GearmanConnection`` with a bytearray buffer, big reads and a connect timeout."""

    # gearman3's is an array; every method that touches it is replaced here.
    _incoming_buffer: bytearray  # type: ignore[assignment]

    def _reset_connection(self) -> None:
        super()._reset_connection()
        self._incoming_buffer = bytearray()
        # Packed commands waiting for the socket, sent through memoryviews:
        # a multi-megabyte WORK_COMPLETE is never joined or re-sliced.
        self._outgoing_chunks: collections.deque[memoryview] = collections.deque()

    def writable(self) -> bool:
        """True when a command or packed bytes wait to be sent."""
        return bool(self.connected and (self._outgoing_commands or self._outgoing_chunks))

    def _live_socket(self) -> socket.socket:
        """The connected socket; ConnectionError (gearman3's) when there is none."""
        if not self.connected or self.gearman_socket is None:
            self.throw_exception(message="disconnected")
        return self.gearman_socket

    def send_commands_to_buffer(self) -> None:
        """Queue each command as chunks: its header, then its arguments as they are.

        A WORK_COMPLETE's data is the encoded answer, megabytes for a batch
        with output; packing it behind its header would copy it once more.
        """
        while self._outgoing_commands:
            cmd_type, cmd_args = self._outgoing_commands.popleft()
            if cmd_type == GEARMAN_COMMAND_TEXT_COMMAND or cmd_type not in GEARMAN_PARAMS_FOR_COMMAND:
                packed = self._pack_command(cmd_type, cmd_args)  # gearman3 checks and raises
                self._outgoing_chunks.append(memoryview(_as_bytes(packed)))
                continue
            args = [cmd_args[name] for name in GEARMAN_PARAMS_FOR_COMMAND[cmd_type]]
            self._outgoing_chunks.extend(
                pack_chunks(cmd_type, *args, is_response=bool(self._is_server_side)))

    def send_data_to_socket(self) -> int:
        """Send what the socket takes now; return the bytes still waiting."""
        sock = self._live_socket()
        while self._outgoing_chunks:
            chunk = self._outgoing_chunks[0]
            try:
                sent = sock.send(chunk)
            except BlockingIOError:
                break
            except OSError as exc:
                self.throw_exception(exception=exc)
            if sent == 0:
                self.throw_exception(message="remote disconnected")
            if sent < len(chunk):
                self._outgoing_chunks[0] = chunk[sent:]
                break
            self._outgoing_chunks.popleft()
        return sum(len(chunk) for chunk in self._outgoing_chunks)

    def _create_client_socket(self) -> None:
        if self.use_ssl:
            self.throw_exception(message="TLS connections to gearmand are not supported")
        try:
            client_socket = socket.create_connection(
                (self.gearman_host, self.gearman_port), timeout=CONNECT_TIMEOUT_SECONDS
            )
        except OSError as exc:
            self.throw_exception(exception=exc)
        # Dead peers are noticed by the kernel even when no data flows.
        client_socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.set_socket(client_socket)

    def read_data_from_socket(self, bytes_to_read: int = READ_CHUNK_BYTES) -> int:
        """Append what the socket has (up to ``READ_CHUNK_BYTES``) to the buffer."""
        sock = self._live_socket()
        try:
            received = sock.recv(max(bytes_to_read, READ_CHUNK_BYTES))
        except BlockingIOError:
            return len(self._incoming_buffer)
        except OSError as exc:
            self.throw_exception(exception=exc)
        if not received:
            self.throw_exception(message="remote disconnected")
        self._incoming_buffer += received
        return len(self._incoming_buffer)

    def read_commands_from_buffer(self) -> int:
        """Parse every complete command in the buffer; drop the parsed bytes once."""
        offset = 0
        parsed = 0
        view = memoryview(self._incoming_buffer)
        try:
            while offset < len(view):
                cmd_type, cmd_args, cmd_len = self._unpack_command(view[offset:])
                if cmd_type is None or cmd_args is None:  # not a whole command yet
                    break
                self._incoming_commands.append((cmd_type, cmd_args))
                offset += cmd_len
                parsed += 1
        finally:
            view.release()
        if offset:
            del self._incoming_buffer[:offset]
        return parsed

    def _unpack_command(
        self, given_buffer: memoryview | array.array[int]
    ) -> tuple[int | None, dict[str, bytes] | None, int]:
        if not len(given_buffer):
            return None, None, 0
        if struct.pack("B", given_buffer[0]) == NULL_CHAR:
            return parse_binary_command(given_buffer, is_response=bool(self._is_client_side))
        # gearman3 calls .tobytes() on what it is given, as on its own array buffer.
        return parse_text_command(given_buffer)


def pack_chunks(
    cmd_type: int, *args: bytes | bytearray | str, is_response: bool = False
) -> list[memoryview]:
    """One binary command as chunks to send in order: its header, then each argument.

    The arguments are not copied: a WORK_COMPLETE's data (an answer of
    megabytes) goes to the socket as the very object it was built as.
    """
    params = GEARMAN_PARAMS_FOR_COMMAND.get(cmd_type)
    if params is None or cmd_type == GEARMAN_COMMAND_TEXT_COMMAND or len(params) != len(args):
        raise ValueError(f"not a binary command with {len(args)} argument(s): {cmd_type}")
    data = [_as_bytes(arg) for arg in args]
    if any(NULL_CHAR in arg for arg in data[:-1]):
        raise ValueError("only the last argument of a command may hold NUL bytes")
    size = sum(len(arg) for arg in data) + max(len(data) - 1, 0)
    magic = MAGIC_RES_STRING if is_response else MAGIC_REQ_STRING
    chunks = [memoryview(struct.pack("!4sII", magic, cmd_type, size))]
    for index, arg in enumerate(data):
        if index:
            chunks.append(memoryview(NULL_CHAR))
        if arg:
            chunks.append(memoryview(arg))
    return chunks


def parse_responses(buffer: bytearray) -> list[tuple[int, dict[str, bytes]]]:
    """Every complete response packet in ``buffer``, parsed by gearman3; removed from it once.

    Raises gearman3's ``ProtocolError`` on bytes that are not a response packet.
    """
    commands = []
    offset = 0
    view = memoryview(buffer)
    try:
        while True:
            command, args, size = parse_binary_command(view[offset:], is_response=True)
            if command is None or args is None:  # not a whole packet yet
                break
            commands.append((command, args))
            offset += size
    finally:
        view.release()
    del buffer[:offset]
    return commands


def _as_bytes(value: bytes | bytearray | str) -> bytes | bytearray:
    """gearman3 hands arguments as str or bytes; the wire wants bytes."""
    return value.encode("utf-8") if isinstance(value, str) else value
