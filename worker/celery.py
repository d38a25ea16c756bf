"""The Celery application: the one module-level singleton amworker has.

``celery -A worker …`` finds it here (Celery looks for a ``celery`` submodule
of the package it is given), so Celery's own commands (``worker``,
``flower``, ``inspect``, ``events``…) work unchanged.

Configuration is read from the environment when the app is first configured
in a process (``on_configure``), not at import time.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.app.amqp import AMQP
from celery.signals import setup_logging

from worker import advertise, lifetimes, logs, worker_metrics  # noqa: F401 - advertise and worker_metrics connect signals
from worker.config import Settings


class ReadableSentEvents(AMQP):
    """Celery's AMQP helper, with the slice's readable name in its ``task-sent`` event.

    Celery names a task's ``task-sent`` event after the task (``amworker.run_slice``)
    even when the message carries a ``shadow`` name, and the worker's events use
    the shadow. The two come from different processes, so Flower may receive
    the sent event last, and then it overwrites the readable name. Giving both
    the same name makes the order irrelevant.
    """

    def as_task_v2(self, *args: Any, **kwargs: Any) -> Any:
        message = super().as_task_v2(*args, **kwargs)
        shadow = message.headers.get("shadow")
        if shadow and message.sent_event is not None:
            message.sent_event["name"] = shadow
        return message


app = Celery("amworker", include=["worker.tasks"], amqp=ReadableSentEvents)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for long, non-idempotent archival work. Each one says why."""
    transport = {
        # Redis re-delivers an unacknowledged message after this long, even
        # if a worker is still running it. Slices are acknowledged when they
        # start (task_acks_late=False below), so the only unacked messages are
        # ones a worker reserved and has not started: this bounds how long
        # such a message waits after its worker died before another takes it.
        "visibility_timeout": settings.visibility_timeout,
        # kombu only sweeps for such messages every interval x throttle
        # seconds (10 x 10 by default): with a short visibility timeout a
        # reserved slice of a dead worker would still wait ~100 s, measured
        # in tests/faults/test_worker_death.py. Sweep every few seconds
        # instead (one ZRANGEBYSCORE on the unacked index; cheap).
        "unacked_restore_interval": max(1, min(10, round(settings.visibility_timeout / 4))),
        "unacked_restore_throttle": 1,
        # Detect half-open broker connections instead of waiting forever.
        "socket_keepalive": True,
        "health_check_interval": 10,
    }
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"health_check_interval": 10},
        "broker_connection_retry_on_startup": True,
        # JSON only: a pickle on the broker is code execution for whoever can
        # write to Redis.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Client scripts move and delete files: a slice must never run twice.
        # Acknowledging when the slice starts means a started slice is never
        # re-delivered; if its process dies it is reported as lost (worker
        # lost -> failed with the cause), never replayed.
        "task_acks_late": False,
        "task_reject_on_worker_lost": False,
        # One slice per pool process at most: a slice can take hours, and a
        # prefetched message is stuck behind it while idle workers wait.
        # worker_disable_prefetch (Celery >= 5.6, Redis) fetches only when a
        # process is free, so "reserved but not started" barely exists.
        "worker_prefetch_multiplier": 1,
        "worker_disable_prefetch": True,
        # Flower shows queued -> started -> done, with readable names and args.
        # It reads them from the task events (the shadow name and kwargsrepr
        # set at dispatch), not from stored results.
        "task_track_started": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # So stored results hold no argv or kwargs: only status and the small
        # envelope a slice returns (its results have their own key).
        "result_extended": False,
        # Celery's envelopes live as long as the slowest function's slice can
        # matter (queue wait + time limit + grace, worker.lifetimes); the shim
        # deletes a batch's envelopes once it is answered.
        "result_expires": lifetimes.longest_key_ttl(settings),
        # Recycling is on by default: a script that leaks (5 MB a slice was
        # measured) would otherwise grow its pool process without bound. The
        # check runs after a slice, so a slice is never cut short by it.
        "worker_max_tasks_per_child": settings.max_tasks_per_child,
        "worker_max_memory_per_child": settings.max_memory_per_child,
        "worker_concurrency": settings.worker_concurrency,
        "task_default_queue": settings.default_queue,
        # Pool children get their own time limits per slice (set at dispatch);
        # this is the ceiling when a slice arrives without one.
        "task_time_limit": settings.time_limit,
        # Scripts log through their own loggers; keep Celery from replacing
        # the root logger's handlers that amworker installs.
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts_level": "INFO",
    }


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    sender.conf.update(celery_config(Settings.from_env()))


@setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    # Connecting this signal stops Celery from installing its own handlers:
    # worker processes log in amworker's one format (text or JSON), and pool
    # processes inherit it when they fork.
    settings = Settings.from_env()
    logs.configure(loglevel or settings.log_level, settings.log_format)
    # Handling this signal also skips Celery's redirection of stdout/stderr,
    # so do it here for output outside any slice (a script printing at
    # import), one line per record under "amworker.stdout" or
    # "amworker.stderr", never in a job's output. During a slice
    # worker.stray_output takes over fd 1/2 and bounds what reaches the log
    # (docs/scripts.md). Two proxies, not Celery's one for both:
    # Job.pyprint(file=sys.stderr) tells the streams apart by identity, as the
    # stock worker's does.
    app.log.redirect_stdouts_to_logger(
        logging.getLogger("amworker.stdout"), logging.INFO, stderr=False
    )
    app.log.redirect_stdouts_to_logger(
        logging.getLogger("amworker.stderr"), logging.WARNING, stdout=False
    )
