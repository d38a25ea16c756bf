"""A minimal Gearman client speaking the binary protocol over a plain socket.

It does what the controller does and nothing more: ``SUBMIT_JOB``
(normal priority, foreground, with a ``unique``) and wait for ``WORK_COMPLETE``
or ``WORK_FAIL``. It shares no code with the shim's gearman3 stack on
purpose, so ``amworker submit``, the tests and the benchmarks check the shim
from the outside, the way the controller sees it.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

REQ = b"\x00REQ"
RES = b"\x00RES"
HEADER = struct.Struct("!4sII")

SUBMIT_JOB = 7
JOB_CREATED = 8
WORK_STATUS = 12
WORK_COMPLETE = 13
WORK_FAIL = 14
ERROR = 19
WORK_EXCEPTION = 25
WORK_DATA = 28
WORK_WARNING = 29


class GearmanClientError(Exception):
    """The server answered with ERROR, the connection broke, or time ran out."""


@dataclass(frozen=True)
class Submission:
    """One job to submit."""

    function: str
    data: bytes
    unique: str = ""


@dataclass(frozen=True)
class Outcome:
    """How a job ended: ``WORK_COMPLETE`` with data, or ``WORK_FAIL``/``WORK_EXCEPTION``."""

    complete: bool
    data: bytes = b""
    exception: bytes | None = None


def pack(command: int, *args: bytes) -> bytes:
    """One request packet."""
    body = b"\x00".join(args)
    return HEADER.pack(REQ, command, len(body)) + body


class GearmanClient:
    """A blocking client for one gearmand (``host:port``)."""

    def __init__(self, server: str, *, connect_timeout: float = 5.0) -> None:
        host, _, port = server.rpartition(":")
        self._sock = socket.create_connection((host, int(port)), timeout=connect_timeout)
        self._buffer = bytearray()

    def close(self) -> None:
        """Close the connection (gearmand forgets foreground jobs it had for us)."""
        self._sock.close()

    def __enter__(self) -> GearmanClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def submit(self, function: str, data: bytes, *, unique: str = "", timeout: float = 60.0) -> Outcome:
        """Submit one job and wait for its end."""
        return self.submit_many([Submission(function, data, unique)], timeout=timeout)[0]

    def submit_many(self, jobs: Sequence[Submission], *, timeout: float = 60.0) -> list[Outcome]:
        """Submit every job at once (all in flight together) and wait for all."""
        deadline = time.monotonic() + timeout
        self._sock.sendall(b"".join(
            pack(SUBMIT_JOB, j.function.encode(), j.unique.encode(), j.data) for j in jobs
        ))
        handles: list[bytes] = []
        outcomes: dict[bytes, Outcome] = {}
        # Not len(outcomes): gearmand gives equal (function, unique) jobs one
        # handle, so two submissions can share a single outcome.
        while len(handles) < len(jobs) or not outcomes.keys() >= set(handles):
            command, args = self._read(deadline)
            if command == JOB_CREATED:
                handles.append(args)
            elif command in (WORK_COMPLETE, WORK_EXCEPTION):
                handle, _, data = args.partition(b"\x00")
                if command == WORK_COMPLETE:
                    outcomes[handle] = Outcome(complete=True, data=data)
                else:
                    outcomes[handle] = Outcome(complete=False, exception=data)
            elif command == WORK_FAIL:
                outcomes.setdefault(args, Outcome(complete=False))
            elif command == ERROR:
                raise GearmanClientError(f"gearmand error: {args!r}")
            # WORK_STATUS / WORK_DATA / WORK_WARNING carry nothing we need.
        return [outcomes[h] for h in handles]

    def _read(self, deadline: float) -> tuple[int, bytes]:
        while True:
            if len(self._buffer) >= HEADER.size:
                magic, command, size = HEADER.unpack_from(self._buffer)
                if magic != RES:
                    raise GearmanClientError(f"bad magic {magic!r} from gearmand")
                if len(self._buffer) >= HEADER.size + size:
                    body = bytes(self._buffer[HEADER.size:HEADER.size + size])
                    del self._buffer[:HEADER.size + size]
                    return command, body
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GearmanClientError("timed out waiting for gearmand")
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(256 * 1024)
            except TimeoutError:
                raise GearmanClientError("timed out waiting for gearmand") from None
            if not chunk:
                raise GearmanClientError("gearmand closed the connection")
            self._buffer += chunk
