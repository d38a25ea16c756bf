"""Assembling and running the shim process (``amworker shim``)."""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any

import redis
from celery import Celery
from celery.backends.redis import RedisBackend

from worker.batch.metrics import ShimMetrics
from worker.batch.runner import BatchRunner
from worker.batch.watcher import ResultWatcher
from worker.celery import app
from worker.config import Settings
from worker.config.display import redact
from worker.contract import keys
from worker.errors import ConfigError
from worker.gearman_shim import GearmanShim, install_signal_handlers
from worker.scripts.probe import probe_registry
from worker.scripts.registry import Registry

log = logging.getLogger(__name__)

#: How long a stopping shim waits for batches in flight before leaving them
#: to gearmand for re-delivery (the next shim attaches to their work).
STOP_GRACE_SECONDS = 30.0


class SendOnlyRedisBackend(RedisBackend):
    """Celery's Redis result backend with its result consumer switched off.

    The shim sends slices but never joins a Celery result: one watcher
    thread wakes its lanes (worker.batch.watcher). Celery's backend does not know
    that. Every task a lane sends -- ``apply_async``, and each slice of a chord,
    whose result set registers as pending -- subscribes that task's channel
    on a pub/sub connection nobody reads. Celery unsubscribes when the result
    object is collected, but redis-py forgets a channel only once it reads
    the reply: every slice ever sent stayed in a dict, in each lane, for the
    life of the shim (the creep docs/design.md, "The shim's memory",
    measures), and Redis pushed every result to sixteen unread sockets.

    It is also one backend for all the lanes, where Celery would keep one per
    thread: each lane's first chord then opened a connection of its own (a
    TCP connect and ``HELLO`` on the batch's path, seen in W3's Redis
    timeline) and sixteen idle pools stayed open. Nothing left here is
    thread-bound: redis-py's connection pool is thread-safe, and the result
    consumer, which is not, is never used.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Celery reads this once it has built the backend: shared, not per thread.
        self.thread_safe = True

    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Subscribe to nothing: the watcher hears every result."""

    def add_pending_result(self, result: Any, weak: bool = False, start_drainer: bool = True) -> Any:
        """Keep nothing pending: nobody in the shim waits through Celery."""
        return result


def use_send_only_backend(celery_app: Celery, result_backend: str) -> None:
    """Make ``celery_app`` build :class:`SendOnlyRedisBackend` for ``result_backend``.

    Celery reads a ``class+url`` result backend as "this class, at this URL".
    """
    celery_app.backend_cls = f"{__name__}:{SendOnlyRedisBackend.__name__}+{result_backend}"


def build_shim(settings: Settings, registry: Registry | None = None) -> tuple[GearmanShim, ResultWatcher]:
    """Everything the shim needs, wired together (nothing started yet).

    ``registry`` comes from the script probe (worker.scripts.probe), which imports
    the scripts in a child process; the shim itself never imports them.
    """
    if not settings.result_backend.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"AMWORKER_RESULT_BACKEND={redact(settings.result_backend)!r}: the shim waits on "
            "Redis pub/sub, so the result backend must be Redis"
        )
    use_send_only_backend(app, settings.result_backend)
    if registry is None:
        registry = probe_registry(settings)
    # Timeouts: a Redis that stops answering (a half-open connection) must
    # turn into an error a lane handles ("broker lost" within its patience),
    # never a lane -- or an answer slot -- held forever.
    client = redis.Redis.from_url(
        settings.result_backend,
        health_check_interval=10,
        socket_connect_timeout=5,
        socket_timeout=30,
        socket_keepalive=True,
    )
    watcher = ResultWatcher(client, prefixes=keys.wake_prefixes(app.backend))
    metrics = ShimMetrics() if settings.metrics_port is not None else None
    runner = BatchRunner(settings=settings, registry=registry, app=app, client=client,
                         watcher=watcher, observer=metrics)
    shim = GearmanShim(
        servers=settings.gearman_servers,
        functions=sorted(registry),
        answer=runner.reply,
        concurrency=settings.shim_concurrency,
        on_state=metrics.gearman_state if metrics else None,
    )
    if metrics is not None and settings.metrics_port is not None:
        for server in settings.gearman_servers:
            metrics.gearman_state(server, False)
        try:
            metrics.serve(settings.metrics_address, settings.metrics_port)
        except OSError as exc:
            raise ConfigError(f"AMWORKER_METRICS_PORT={settings.metrics_port}: cannot listen on "
                              f"{settings.metrics_address}:{settings.metrics_port}: {exc}") from None
    return shim, watcher


#: Blocks this big or bigger get pages of their own, given back when freed.
MMAP_THRESHOLD_BYTES = 128 * 1024


def tune_malloc(arenas: int = 2) -> None:
    """Tune glibc's malloc for the shim's answers (no-op elsewhere).

    - Arenas: glibc gives busy threads arenas of their own, up to eight per
      core, and each keeps the memory freed into it. The shim's lanes all
      handle answers of similar size in turn, so a few shared arenas serve
      them as well.
    - Big blocks: glibc maps a block of 128 KiB or more on its own and
      unmaps it when freed, but on freeing one it raises the threshold to
      that block's size (up to 32 MiB). After the first answer of a
      megabyte, later answer-sized buffers came from the heap, and their
      freed pieces stayed resident between answers. Fixed at its default,
      the threshold keeps every buffer of 128 KiB or more (the Redis reply
      holding a slice's results, the JSON text decoded from it, the encoded
      answer) mapped on its own and given back when freed. Measured in
      bench/analysis.md, round twelve.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    # Option numbers from glibc's malloc.h. Setting the mmap threshold at all
    # is what stops glibc from moving it.
    m_arena_max, m_mmap_threshold = -8, -3
    libc.mallopt(m_arena_max, arenas)
    libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD_BYTES)


def run_shim(settings: Settings, *, ready: threading.Event | None = None,
             registry: Registry | None = None) -> int:
    """Run the shim until SIGTERM/SIGINT; return the process exit code."""
    tune_malloc()
    shim, watcher = build_shim(settings, registry)
    stop = threading.Event()
    install_signal_handlers(stop.set)
    watcher.start()
    shim.start()
    if ready is not None:
        ready.set()
    stop.wait()
    finished = shim.stop(STOP_GRACE_SECONDS)
    watcher.stop()
    if not finished:
        log.warning("stopped with batches still in flight; gearmand re-delivers them")
    return 0
