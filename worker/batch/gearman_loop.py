"""The shim's Gearman worker loop: one connection per gearmand, many jobs held on it.

One selector thread plays the worker side of the protocol on one connection
per configured server: ``CAN_DO`` for every function on every
(re)connection; ``GRAB_JOB_UNIQ`` while fewer than ``concurrency`` jobs are
held or on their way; ``PRE_SLEEP`` after ``NO_JOB``, and a grab after the
``NOOP`` that wakes the connection. Each assigned job is answered by one of
``concurrency`` threads (the :data:`Answerer` seam);
its ``WORK_COMPLETE`` or ``WORK_FAIL`` comes back to the loop through a
queue and a socketpair wake-up and goes out on the connection the job came
from, unless that connection was lost meanwhile: gearmand has re-queued the
job, so the answer is dropped. Each connection's socket and buffers are a
:class:`~worker.batch.gearman_link.Link`; this module decides what to send
and when. Why, and what it saves: docs/design.md.
"""

from __future__ import annotations

import logging
import os
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gearman import protocol as gp
from gearman.errors import ProtocolError

from worker.batch.gearman_io import CONNECT_TIMEOUT_SECONDS as CONNECT_TIMEOUT
from worker.batch.gearman_link import GRABBING, IDLE, SLEEPING, Link

if TYPE_CHECKING:
    from worker.backoff import Backoff

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    """An answer, and what its lane does once the answer is on its way.

    ``then`` is work that must not delay the controller: the lane runs it
    after handing ``data`` to the loop, while the loop writes the answer.
    """

    data: bytes | None
    then: Callable[[], None] | None = None


#: Answers one batch: (function, unique, payload) -> the WORK_COMPLETE data,
#: or None for WORK_FAIL; or a :class:`Reply` carrying either.
Answerer = Callable[[str, str, bytes], bytes | None | Reply]

#: How long :meth:`GearmanLoop.stop` waits for the lanes' last follow-ups.
FOLLOW_UP_SECONDS = 5.0
#: The longest the loop sleeps without looking at its clock (retries, deadlines).
TICK_SECONDS = 1.0
#: What gearmand's ``workers`` admin command shows first for the shim's connections.
CLIENT_ID_PREFIX = "amworker-shim"


def client_id() -> bytes:
    """This shim's id in gearmand's ``workers`` list: ``amworker-shim:<host>:<pid>``.

    With several shims (or a restarted one) an operator running
    ``gearadmin --workers`` sees which process holds which connection.
    The host is cut so the id stays well inside gearmand's limit.
    """
    return f"{CLIENT_ID_PREFIX}:{socket.gethostname()[:48]}:{os.getpid()}".encode()


@dataclass(frozen=True)
class _Job:
    link: Link
    generation: int
    handle: bytes
    function: str
    unique: str
    data: bytes


class GearmanLoop:
    """Serve ``functions`` from every server, holding up to ``concurrency`` jobs."""

    def __init__(self, *, servers: Sequence[str], functions: Sequence[str], answer: Answerer,
                 concurrency: int, backoff: Backoff,
                 on_state: Callable[[str, bool], None]) -> None:
        self.servers = tuple(servers)
        self.functions = tuple(functions)
        self.answer = answer
        self.concurrency = concurrency
        self.backoff = backoff
        self.on_state = on_state
        self.stopping = threading.Event()
        self._selector = selectors.DefaultSelector()
        self.links = [Link(server, self._selector, self._lost) for server in self.servers]
        self._busy = 0  # jobs assigned and not yet answered; the loop thread writes it
        self._stop_deadline = float("inf")
        self._left = 0  # held jobs still unanswered when the loop ended
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[_Job, bytes | None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._threads: list[threading.Thread] = []
        self._loop_thread = threading.Thread(target=self._run, name="gearman-loop", daemon=True)

    @property
    def busy(self) -> int:
        """Jobs held: assigned and not yet answered."""
        return self._busy

    def start(self) -> None:
        """Start the answer threads and the loop."""
        for index in range(self.concurrency):
            # Daemon threads: an answer still running when the grace ends must
            # not hold the process open (gearmand re-delivers its job).
            thread = threading.Thread(target=self._serve_jobs, name=f"gearman-job-{index}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._loop_thread.start()

    def stop(self, grace: float) -> bool:
        """Grab nothing more; answer held jobs for up to ``grace`` s; close. True if all were."""
        self._stop_deadline = time.monotonic() + grace
        self.stopping.set()
        log.info("taking no new batches; answering the %d held for up to %g s", self._busy, grace)
        self._wake()
        self._loop_thread.join(grace + CONNECT_TIMEOUT)
        for _ in self._threads:
            self._jobs.put(None)
        # Lanes whose answers went out may still be running their follow-up
        # (the answer record): give them a moment, so a stopped shim leaves
        # its last batches recorded. A lane still answering past the grace is
        # not waited for (gearmand re-delivers its job).
        until = time.monotonic() + FOLLOW_UP_SECONDS
        for thread in self._threads:
            thread.join(max(0.0, until - time.monotonic()))
        return self._left == 0 and not self._loop_thread.is_alive()

    # -- answer threads -------------------------------------------------------

    def _serve_jobs(self) -> None:
        while (job := self._jobs.get()) is not None:
            reply = self._answer_one(job)
            self._done.put((job, reply.data))
            # An idle lane keeps nothing of its last batch: a local still
            # naming the job (its request) or the answer would hold them
            # until the next job came, sixteen lanes' worth at once (W5 had
            # fifteen 1-MiB answers alive that way, 15 of its 25 MB peak).
            del job
            then = reply.then
            del reply
            self._wake()
            if then is not None:
                self._follow_up(then)
                del then

    def _answer_one(self, job: _Job) -> Reply:
        """The job's reply; WORK_FAIL (data None) if answering it raised."""
        try:
            reply = self.answer(job.function, job.unique, job.data)
        except Exception:  # noqa: BLE001 - one boundary per job; the thread keeps serving
            log.exception("%s batch %s: unexpected error; answering WORK_FAIL",
                          job.function, job.unique)
            return Reply(None)
        return reply if isinstance(reply, Reply) else Reply(reply)

    @staticmethod
    def _follow_up(then: Callable[[], None]) -> None:
        """Run a reply's follow-up; its failure is logged, the answer already went."""
        try:
            then()
        except Exception:  # noqa: BLE001 - the lane keeps serving
            log.exception("a batch's follow-up after its answer failed")

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up byte is already waiting, or the loop is gone

    # -- the loop ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._finished():
                try:
                    self._turn()
                except Exception as exc:  # noqa: BLE001 - the loop's boundary: keep serving
                    log.exception("the gearman loop failed; reconnecting every server")
                    for link in self.links:
                        self._lost(link, exc)
        finally:
            self._left = self._answerable()
            for link in self.links:
                self._close(link)
            self._selector.close()
            self._wake_r.close()  # a late answer's wake-up then fails quietly (OSError)
            self._wake_w.close()

    def _turn(self) -> None:
        """One pass: connect, grab, wait for sockets, then write the answers that came back."""
        self._connect_due()
        self._grab()
        self._update_interest()
        for key, mask in self._selector.select(self._timeout()):
            if key.data is None:
                self._drain_wake()
            elif key.data.sock is key.fileobj:
                self._service(key.data, mask)
        self._expire_connects()
        self._write_answers()

    def _finished(self) -> bool:
        if not self.stopping.is_set():
            return False
        if time.monotonic() >= self._stop_deadline:
            return True
        return self._answerable() == 0 and not any(link.out for link in self.links if link.up)

    def _answerable(self) -> int:
        """Held jobs whose connection is still up: the only ones an answer can reach."""
        return sum(len(link.held) for link in self.links if link.up)

    def _timeout(self) -> float:
        now = time.monotonic()
        moments = [self._stop_deadline] if self.stopping.is_set() else []
        for link in self.links:
            if link.sock is None and not self.stopping.is_set():
                moments.append(link.retry_at)
            elif link.connecting:
                moments.append(link.deadline)
        return max(0.0, min([now + TICK_SECONDS, *moments]) - now)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _update_interest(self) -> None:
        for link in self.links:
            link.update_interest()

    def _service(self, link: Link, mask: int) -> None:
        if link.connecting:
            self._finish_connect(link)
            return
        if mask & selectors.EVENT_READ and not self._receive(link):
            return
        if mask & selectors.EVENT_WRITE:
            link.flush()

    # -- connections ------------------------------------------------------------

    def _connect_due(self) -> None:
        if self.stopping.is_set():
            return
        now = time.monotonic()
        for link in self.links:
            if link.sock is None and now >= link.retry_at:
                link.open()

    def _finish_connect(self, link: Link) -> None:
        if not link.finish_open():
            return
        link.send(gp.GEARMAN_COMMAND_SET_CLIENT_ID, client_id())
        for function in self.functions:
            link.send(gp.GEARMAN_COMMAND_CAN_DO, function)
        if link.sock is None:
            return  # lost while registering; _lost has scheduled the retry
        link.up, link.attempt = True, 0
        log.info("gearmand %s connected", link.server)
        self.on_state(link.server, True)

    def _expire_connects(self) -> None:
        now = time.monotonic()
        for link in self.links:
            if link.connect_expired(now):
                self._lost(link, TimeoutError(f"no answer in {CONNECT_TIMEOUT:.0f}s"))

    def _lost(self, link: Link, exc: BaseException) -> None:
        """Close ``link``; its held jobs are gearmand's again. Schedule a retry."""
        was_up, dropped = link.up, len(link.held)
        self._close(link)
        if self.stopping.is_set():
            return
        delay = self.backoff.delay(link.attempt)
        link.attempt += 1
        link.retry_at = time.monotonic() + delay
        if was_up:
            log.warning("gearmand %s: connection lost (%s); %d held batch(es) go back to it; "
                        "retry %d in %.1fs", link.server, exc, dropped, link.attempt, delay)
        else:
            log.warning("no gearmand reachable at %s (%s); retry %d in %.1fs",
                        link.server, exc, link.attempt, delay)

    def _close(self, link: Link) -> None:
        if link.close():
            log.info("gearmand %s disconnected", link.server)
            self.on_state(link.server, False)

    def _receive(self, link: Link) -> bool:
        """Handle every packet that arrived; False if the link was lost meanwhile."""
        commands = link.receive()
        if commands is None:
            return False
        generation = link.generation
        for command, args in commands:
            self._handle(link, command, args)
            if link.generation != generation:
                return False
        return True

    # -- the protocol ---------------------------------------------------------------

    def _handle(self, link: Link, command: int, args: dict[str, bytes]) -> None:
        if command in (gp.GEARMAN_COMMAND_JOB_ASSIGN_UNIQ, gp.GEARMAN_COMMAND_JOB_ASSIGN):
            self._assigned(link, args)
        elif command == gp.GEARMAN_COMMAND_NO_JOB:
            link.state = SLEEPING
            link.send(gp.GEARMAN_COMMAND_PRE_SLEEP)
        elif command == gp.GEARMAN_COMMAND_NOOP:
            if link.state == SLEEPING:
                link.state = IDLE
        elif command == gp.GEARMAN_COMMAND_ERROR:
            self._lost(link, ProtocolError(f"gearmand sent ERROR {args!r}"))
        else:
            log.warning("gearmand %s: ignoring unexpected %s", link.server,
                        gp.get_command_name(command))

    def _assigned(self, link: Link, args: dict[str, bytes]) -> None:
        link.state = IDLE
        handle = bytes(args["job_handle"])
        job = _Job(link, link.generation, handle, _text(args["task"]),
                   _text(args.get("unique", b"")), bytes(args["data"]))
        link.held.add(handle)
        self._busy += 1
        self._jobs.put(job)

    def _grab(self) -> None:
        """Ask for jobs while fewer than ``concurrency`` are held or on their way."""
        if self.stopping.is_set():
            return
        free = self.concurrency - self._busy - sum(link.state == GRABBING for link in self.links)
        # Start from a different server each time, so none starves the others.
        self.links.append(self.links.pop(0))
        for link in self.links:
            if free <= 0:
                return
            if link.up and link.state == IDLE:
                link.state = GRABBING
                free -= 1
                link.send(gp.GEARMAN_COMMAND_GRAB_JOB_UNIQ)

    def _write_answers(self) -> None:
        while True:
            try:
                job, payload = self._done.get_nowait()
            except queue.Empty:
                return
            self._busy -= 1
            link = job.link
            if link.generation != job.generation or not link.up:
                log.info("%s batch %s: answered after its connection to %s was lost; "
                         "discarded (gearmand re-delivers it)", job.function, job.unique,
                         link.server)
                continue
            link.held.discard(job.handle)
            if payload is None:
                link.send(gp.GEARMAN_COMMAND_WORK_FAIL, job.handle)
            else:
                link.send(gp.GEARMAN_COMMAND_WORK_COMPLETE, job.handle, payload)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
