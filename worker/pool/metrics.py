"""The Celery worker's ``/metrics`` endpoint, correct across prefork processes.

Jobs run in pool processes, each with its own memory, so prometheus_client's
multiprocess mode is used: every process writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` and the main process serves their sum. The
directory is made fresh per worker main process, before the pool forks, so
counters start at zero with the worker and two workers on one host never
add up each other's files.

Imported by worker.celery so that ``celery -A worker worker`` connects the
signals; nothing happens unless ``AMWORKER_WORKER_METRICS_PORT`` is set.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any

from celery.signals import worker_init, worker_process_shutdown, worker_shutdown

from worker.config import current_settings
from worker.errors import ConfigError

log = logging.getLogger(__name__)

#: prometheus_client reads this variable to choose multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Set by :func:`enable` to the directory this worker made (and removes). Not
#: an AMWORKER_ name: Settings refuses unknown ones, and this is no setting.
OWNED_ENV = "_AMWORKER_WORKER_METRICS_DIR"


def enabled() -> bool:
    """True in a worker process whose main process turned metrics on."""
    return bool(os.environ.get(OWNED_ENV))


def enable(address: str, port: int) -> str:
    """Make the multiprocess directory, switch modes, serve ``/metrics``; return the dir."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server, values

    directory = tempfile.mkdtemp(prefix="amworker-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    os.environ[OWNED_ENV] = directory
    # prometheus_client picks its value class when it is first imported,
    # which may have been before the variable was set: pick again, so every
    # collector made from now on (in this process and the forked pool) writes
    # to the files.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]  # unannotated upstream
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]  # unannotated
    try:
        start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise ConfigError(
            f"AMWORKER_WORKER_METRICS_PORT={port}: cannot listen on {address}:{port}: {exc}"
        ) from None
    log.info("worker metrics on http://%s:%d/metrics (files in %s)", address, port, directory)
    return directory


@worker_init.connect
def _on_worker_init(**_: Any) -> None:
    # worker_init runs in the main process before the pool forks.
    settings = current_settings()
    if settings.worker_metrics_port is not None:
        enable(settings.metrics_address, settings.worker_metrics_port)


@worker_process_shutdown.connect
def _on_process_shutdown(pid: int | None = None, **_: Any) -> None:
    # A pool process leaving: its "live" gauges must stop counting.
    # Counters and histograms stay, as a finished process's jobs still happened.
    if enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]  # unannotated


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    # Sent in the main process only, after the pool has stopped.
    directory = os.environ.get(OWNED_ENV)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
