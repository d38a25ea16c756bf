"""One non-blocking connection to one gearmand, as the shim's loop drives it.

A :class:`Link` owns its socket, its read buffer, the packed commands waiting
to be sent (memoryviews: a multi-megabyte ``WORK_COMPLETE`` is never joined
or re-sliced) and its place in the grab cycle. It never decides what a
failure means: every socket or protocol error goes to the ``lost`` callback
the loop gave it, which closes the link, hands its jobs back to gearmand and
schedules the retry (:mod:`worker.batch.gearman_loop`).

Hazard: a job answered after its connection was lost must not be written on
the next one (gearmand keeps the handle on re-queue, so the stale answer
would complete the re-delivered job). :meth:`Link.close` therefore bumps the
link's ``generation``, and the loop drops any answer of an older one.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable

from gearman.errors import ProtocolError

from worker.batch.gearman_io import CONNECT_TIMEOUT_SECONDS as CONNECT_TIMEOUT
from worker.batch.gearman_io import READ_CHUNK_BYTES, pack_chunks, parse_responses

#: Where a connected link is in the grab cycle: free to grab, a grab sent,
#: or asleep after ``NO_JOB`` until gearmand's ``NOOP``.
IDLE, GRABBING, SLEEPING = "idle", "grabbing", "sleeping"

#: A parsed packet: the command number and its named arguments.
Command = tuple[int, dict[str, bytes]]


class Link:
    """One connection to one gearmand and what it waits for."""

    def __init__(self, server: str, selector: selectors.BaseSelector,
                 lost: Callable[[Link, BaseException], None]) -> None:
        host, _, port = server.rpartition(":")
        self.server = server
        self.address = (host or "127.0.0.1", int(port or 4730))
        self.sock: socket.socket | None = None
        self.connecting = False
        self.up = False
        self.deadline = 0.0
        self.retry_at = 0.0
        self.attempt = 0
        #: Bumped on every loss: a job answered for an older generation is dropped.
        self.generation = 0
        self.state = IDLE
        self.held: set[bytes] = set()
        self.inbuf = bytearray()
        self.out: deque[memoryview] = deque()
        self.events = 0
        self._selector = selector
        self._lost = lost

    def open(self) -> None:
        """Start connecting (non-blocking); the selector reports when it is done."""
        try:
            # One address per attempt: a name with several (::1 and
            # 127.0.0.1) is tried round them as attempts go on.
            found = socket.getaddrinfo(*self.address, type=socket.SOCK_STREAM)
            family, kind, proto, _, address = found[self.attempt % len(found)]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            self._lost(self, exc)
            return
        sock.setblocking(False)
        code = sock.connect_ex(address)
        self.sock = sock
        if code not in (0, errno.EINPROGRESS):
            self._lost(self, OSError(code, errno.errorcode.get(code, str(code))))
            return
        self.connecting = True
        self.deadline = time.monotonic() + CONNECT_TIMEOUT
        self.events = selectors.EVENT_WRITE
        self._selector.register(sock, self.events, self)

    def finish_open(self) -> bool:
        """The connect completed: True if the socket is usable (else it was reported lost)."""
        assert self.sock is not None
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._lost(self, OSError(code, errno.errorcode.get(code, str(code))))
            return False
        # Dead peers are noticed even when nothing flows; small packets
        # (GRAB_JOB after an answer) leave at once.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connecting, self.state = False, IDLE
        return True

    def connect_expired(self, now: float) -> bool:
        """True while connecting past the connect timeout."""
        return self.connecting and now >= self.deadline

    def close(self) -> bool:
        """Close the socket and forget its jobs and buffers; True if it had been up."""
        if self.sock is not None:
            if self.events or self.connecting:
                self._selector.unregister(self.sock)
            self.sock.close()
        was_up = self.up
        self.sock, self.connecting, self.up, self.events, self.state = None, False, False, 0, IDLE
        self.generation += 1
        self.held.clear()
        self.inbuf.clear()
        self.out.clear()
        return was_up

    def update_interest(self) -> None:
        """Ask the selector for what this link waits on: the connect, bytes to send, replies."""
        if self.sock is None:
            return
        events = selectors.EVENT_WRITE if self.connecting or self.out else 0
        events |= 0 if self.connecting else selectors.EVENT_READ
        if events != self.events:
            self._selector.modify(self.sock, events, self)
            self.events = events

    def receive(self) -> list[Command] | None:
        """Read what is there and parse whole packets; None if the link was lost doing it."""
        assert self.sock is not None
        try:
            data = self.sock.recv(READ_CHUNK_BYTES)
        except BlockingIOError:
            return []
        except OSError as exc:
            self._lost(self, exc)
            return None
        if not data:
            self._lost(self, ConnectionResetError("gearmand closed the connection"))
            return None
        self.inbuf += data
        try:
            return parse_responses(self.inbuf)
        except ProtocolError as exc:
            self._lost(self, exc)
            return None

    def send(self, command: int, *args: bytes | str) -> None:
        """Queue one packet and send as much as the socket takes now."""
        if self.sock is None:
            return  # lost a moment ago: nothing may wait for its successor
        self.out.extend(pack_chunks(command, *args))
        self.flush()

    def flush(self) -> None:
        """Send queued bytes until the socket would block."""
        while self.out and self.sock is not None:
            try:
                sent = self.sock.send(self.out[0])
            except BlockingIOError:
                return
            except OSError as exc:
                self._lost(self, exc)
                return
            if sent < len(self.out[0]):
                self.out[0] = self.out[0][sent:]
                return
            self.out.popleft()
