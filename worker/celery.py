"""The Celery application: the one module-level singleton amworker has.

``celery -A worker …`` finds it here (Celery looks for a ``celery`` submodule
of the package it is given), so Celery's own commands (``worker``,
``flower``, ``inspect``, ``events``…) work unchanged.

Configuration is the process's one settings object (worker.config.current),
taken when the app is first configured in a process (``on_configure``), not
at import time; the logging signal takes the same object.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.app.amqp import AMQP
from celery.signals import setup_logging

from worker import broker_transport, logs
from worker.config import Settings, current_settings
from worker.contract import lifetimes


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


# Before any broker connection exists (install() also forgets an earlier resolution).
broker_transport.install()

# No fix-ups: Celery's Django fix-up, which it turns on whenever DJANGO_SETTINGS_MODULE
# is in the environment, sets Django up itself as the worker starts, before amworker
# has put Archivematica's import paths in place, chosen its settings module
# (worker.database.setup) or installed PyMySQL as MySQLdb. With the stock worker's
# DJANGO_SETTINGS_MODULE=settings.common the worker died ("No module named
# 'settings'"); with a MySQL URL and no mysqlclient, on "Error loading MySQLdb".
# What it would do besides, amworker does: Django is set up before the pool forks
# (worker.pool.runtime) and stale connections are closed around every slice.
app = Celery("amworker", include=["worker.tasks"], amqp=ReadableSentEvents, fixups=[])


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for long, non-idempotent archival work. Each one says why."""
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        **broker_options(settings),
        "result_backend_transport_options": {"health_check_interval": 10},
        "broker_connection_retry_on_startup": True,
        # JSON only: a pickle on the broker is code execution for whoever can
        # write to Redis.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Flower shows queued -> started -> done, with readable names and args.
        # It reads them from the task events (the shadow name and kwargsrepr
        # set at dispatch), not from stored results. So no STARTED result is
        # stored either: nobody reads it (the shim waits on leases and final
        # results), and writing it cost every slice a GET and a SETEX +
        # PUBLISH before its script could start (bench/results/roundtrips.md).
        "task_track_started": False,
        "worker_send_task_events": True,
        # Published a few at a time on a short timer (worker.pool.events), not
        # one broker round trip per event.
        "worker_consumer": "worker.pool.events:BatchingEventsConsumer",
        "task_send_sent_event": True,
        # So stored results hold no argv or kwargs: only a status with the
        # callback's small envelope or a failure (a slice that succeeded
        # stores none; its results have their own key).
        "result_extended": False,
        # Celery's results live as long as the slowest function's slice can
        # matter (queue wait + time limit + grace, worker.contract.lifetimes); the shim
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


def broker_options(settings: Settings) -> dict[str, Any]:
    """The settings that depend on the broker: acknowledgement, prefetch, transport.

    Client scripts move and delete files, so on either broker a slice must
    never run twice and a started slice must never be re-delivered to run
    again; the claim each slice takes in Redis (worker/pool/runtime.py) is the
    guarantee, these settings keep re-deliveries rare and cheap. Why the two
    brokers differ is in docs/design.md, "A slice never runs twice".
    """
    if settings.broker_is_amqp:
        return _amqp_options()
    return _redis_options(settings)


def _redis_options(settings: Settings) -> dict[str, Any]:
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
        "broker_transport_options": transport,
        # Acknowledging when the slice starts means a started slice is never
        # re-delivered (with acks_late, the visibility timeout would hand a
        # still-running slice to a second worker); if its process dies it is
        # reported as lost (worker lost -> failed with the cause), never replayed.
        "task_acks_late": False,
        "task_reject_on_worker_lost": False,
        # One slice per pool process at most: a slice can take hours, and a
        # prefetched message is stuck behind it while idle workers wait.
        # worker_disable_prefetch (Celery >= 5.6, Redis only) fetches only
        # when a process is free, so "reserved but not started" barely exists.
        "worker_prefetch_multiplier": 1,
        "worker_disable_prefetch": True,
    }


def _amqp_options() -> dict[str, Any]:
    return {
        # Publisher confirms: the shim's send returns only once RabbitMQ has
        # the slice (written to its quorum log), so a publish lost in a broker
        # crash is an immediate "broker lost", not an hour of queue wait.
        "broker_transport_options": {"confirm_publish": True},
        # Quorum queues: durable, replicated when RabbitMQ is a cluster (the
        # only replicated kind left in RabbitMQ 4), and a queued slice survives
        # a broker restart. Queues named only by a function's config or by
        # -Q are declared as quorum too, or the shim and a worker would
        # declare one queue with two types and RabbitMQ would refuse the second.
        "task_default_queue_type": "quorum",
        "task_create_missing_queue_type": "quorum",
        # Quorum queues have no global QoS: Celery must detect them and use
        # per-consumer prefetch (so a worker consuming N queues may hold N x
        # concurrency messages; give each worker one queue).
        "worker_detect_quorum_queues": True,
        # amworker sends no ETA or countdown; Celery still declares its native
        # delayed-delivery queues once it sees quorum queues: classic ones are
        # the cheapest for a feature that stays unused.
        "broker_native_delayed_delivery_queue_type": "classic",
        # Acknowledge when the slice ends. RabbitMQ has no visibility timeout:
        # an unacked message comes back only when its consumer's connection
        # (or channel) closes, so a running slice is never handed to a second
        # worker while its worker is alive. Acking late is what keeps
        # prefetch honest here: acking on start would open the prefetch
        # window and a busy worker would reserve slices other workers could
        # run (worker_disable_prefetch is Redis-only). When a connection does
        # drop mid-slice, the copy RabbitMQ re-delivers finds the slice's
        # claim and is ignored, and the run in progress carries on.
        "task_acks_late": True,
        # A pool process that dies mid-slice is acknowledged (reported as
        # worker lost), not re-queued: the script may have done half its work.
        "task_reject_on_worker_lost": False,
        # Nor is a running script killed when the broker connection drops
        # (Celery 6 may default to cancelling): its re-delivered copy is ignored.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_prefetch_multiplier": 1,
        "worker_disable_prefetch": False,
    }


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    sender.conf.update(celery_config(current_settings()))


@setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    # Connecting this signal stops Celery from installing its own handlers:
    # worker processes log in amworker's one format (text or JSON), and pool
    # processes inherit it when they fork.
    settings = current_settings()
    logs.configure(loglevel or settings.log_level, settings.log_format)
    # Handling this signal also skips Celery's redirection of stdout/stderr,
    # so do it here for output outside any slice (a script printing at
    # import), one line per record under "amworker.stdout" or
    # "amworker.stderr", never in a job's output. During a slice
    # worker.pool.stray_output takes over fd 1/2 and bounds what reaches the log
    # (docs/scripts.md). Two proxies, not Celery's one for both:
    # Job.pyprint(file=sys.stderr) tells the streams apart by identity, as the
    # stock worker's does.
    app.log.redirect_stdouts_to_logger(
        logging.getLogger("amworker.stdout"), logging.INFO, stderr=False
    )
    app.log.redirect_stdouts_to_logger(
        logging.getLogger("amworker.stderr"), logging.WARNING, stdout=False
    )
