"""Assembling and running the shim process (``amworker shim``)."""

from __future__ import annotations

import ctypes
import logging
import threading

import redis

from worker.batches import BatchRunner
from worker.celery import app
from worker.config import Settings
from worker.errors import ConfigError
from worker.gearman_shim import GearmanShim, install_signal_handlers
from worker.metrics import ShimMetrics
from worker.probe import probe_registry
from worker.registry import Registry
from worker.watcher import ResultWatcher

log = logging.getLogger(__name__)

#: How long a stopping shim waits for batches in flight before leaving them
#: to gearmand for re-delivery (the next shim attaches to their work).
STOP_GRACE_SECONDS = 30.0


def build_shim(settings: Settings, registry: Registry | None = None) -> tuple[GearmanShim, ResultWatcher]:
    """Everything the shim needs, wired together (nothing started yet).

    ``registry`` comes from the script probe (worker.probe), which imports
    the scripts in a child process; the shim itself never imports them.
    """
    if not settings.result_backend.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"AMWORKER_RESULT_BACKEND={settings.result_backend!r}: the shim waits on "
            "Redis pub/sub, so the result backend must be Redis"
        )
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
    watcher = ResultWatcher(client)
    metrics = ShimMetrics() if settings.metrics_port is not None else None
    runner = BatchRunner(settings=settings, registry=registry, app=app, client=client,
                         watcher=watcher, observer=metrics)
    shim = GearmanShim(
        servers=settings.gearman_servers,
        functions=sorted(registry),
        answer=runner.answer,
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


def tune_malloc(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas for this process (no-op elsewhere).

    glibc gives busy threads arenas of their own, up to eight per core, and
    each keeps the memory freed into it. The shim's lanes all handle answers
    of similar size in turn, so a few shared arenas serve them as well and
    keep the peak resident size near what is really in use. (A fixed mmap
    threshold, tried too, raised the peak: answers then cost fresh pages.)
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_arena_max = -8  # from glibc's malloc.h
    libc.mallopt(m_arena_max, arenas)


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
