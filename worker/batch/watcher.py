"""Waking batch threads when Celery stores a result, without busy-polling.

Celery's ``AsyncResult.get()`` is a poor fit for many threads waiting at once:
its Redis result consumer shares one pub/sub connection whose bookkeeping has
a long history of thread-safety bugs (lost wake-ups, "Connection closed by
server" in another thread's wait), and it has no notion of "wake me when *any*
of these ids changes, or when a lease lapses".

So the shim has exactly one thread that owns one pub/sub connection. The
Redis backend publishes every stored result on a channel named like its key
(``celery-task-meta-<id>``), and a slice publishes on the channel named like
its outcome key once its results are stored (``amworker:outcome:<id>``;
Celery stores a result of its own only for the chord callback and for a
slice that failed in Celery); the watcher
pattern-subscribes to both once and sets the :class:`threading.Event` of
whichever batch registered the id. Batch threads never touch the pub/sub
connection. A waiter always checks the stored state after registering and
after every wake-up, so a message missed while Redis was away costs at most
one check interval, never a hang.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence

import redis

from worker.backoff import RECONNECT

log = logging.getLogger(__name__)


class ResultWatcher:
    """One pub/sub listener fanning out "result stored" to registered waiters.

    ``prefixes`` are the channel prefixes to listen on: Celery's key (and
    channel) prefix for task results (``keys.result_prefix(app.backend)``)
    and :data:`keys.OUTCOME_PREFIX`; a channel is a prefix and a task id.
    """

    def __init__(self, client: redis.Redis, *, prefixes: Sequence[str]) -> None:
        self._client = client
        self._prefixes = tuple(prefixes)
        self._patterns = [prefix + "*" for prefix in self._prefixes]
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="result-watcher", daemon=True)
        self.connected = threading.Event()

    def start(self) -> None:
        """Start the listener thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop listening; waiters fall back to their timeouts."""
        self._stopping.set()
        self._thread.join(timeout=5)

    @contextlib.contextmanager
    def watching(self, task_ids: Iterable[str]) -> Iterator[threading.Event]:
        """An event set whenever a result for one of ``task_ids`` is stored."""
        event = threading.Event()
        ids = list(task_ids)
        with self._lock:
            for task_id in ids:
                self._waiters.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                for task_id in ids:
                    waiting = self._waiters.get(task_id)
                    if waiting is not None:
                        waiting.discard(event)
                        if not waiting:
                            del self._waiters[task_id]

    def _wake(self, task_id: str) -> None:
        with self._lock:
            events = list(self._waiters.get(task_id, ()))
        for event in events:
            event.set()

    def _wake_all(self) -> None:
        with self._lock:
            events = [event for group in self._waiters.values() for event in group]
        for event in events:
            event.set()

    def _run(self) -> None:
        pauses = RECONNECT.schedule()
        while not self._stopping.is_set():
            try:
                self._listen()
            except redis.RedisError as exc:
                if self.connected.is_set():
                    # It was subscribed: a new outage starts from the first
                    # pause, not from where the last one left off.
                    pauses.reset()
                self.connected.clear()
                pause = pauses.next()
                log.warning("result watcher lost Redis (%s); reconnecting in %.1fs", exc, pause)
                # Anything published while we were away is lost: make every
                # waiter re-check the stored state.
                self._wake_all()
                self._stopping.wait(pause)

    def _listen(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]  # redis-py: unannotated
        try:
            pubsub.psubscribe(*self._patterns)
            self.connected.set()
            self._wake_all()
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is None or message.get("type") != "pmessage":
                    continue
                if _not_final(message.get("data")):
                    continue
                channel = message["channel"]
                if isinstance(channel, bytes):
                    channel = channel.decode("utf-8", "replace")
                task_id = self._task_id(channel)
                if task_id is not None:
                    self._wake(task_id)
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                pubsub.close()

    def _task_id(self, channel: str) -> str | None:
        """The task id a channel names, or ``None`` if it is none of ours."""
        for prefix in self._prefixes:
            if channel.startswith(prefix):
                return channel[len(prefix):]
        return None


#: States Celery stores on the way to a result; nobody waits for them.
_INTERIM = (b'"status": "STARTED"', b'"status": "PENDING"', b'"status": "RETRY"')


def _not_final(data: object) -> bool:
    """True for a published meta that is not a final state (saves a wasted check).

    Celery puts ``status`` first in the meta it publishes, so looking at the
    head is enough; anything unrecognised counts as final, and wakes.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if not isinstance(data, bytes):
        return False
    head = data[:64]
    return any(marker in head for marker in _INTERIM)
