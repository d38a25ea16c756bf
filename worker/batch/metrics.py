"""Prometheus metrics of the shim.

* The shim (one process, many threads) keeps ordinary collectors in its own
  registry and serves them on ``AMWORKER_METRICS_ADDRESS:AMWORKER_METRICS_PORT``.
  :class:`ShimMetrics` is the observer :class:`worker.batch.runner.BatchRunner` and
  :class:`worker.gearman_shim.GearmanShim` report to.
* A Celery worker runs jobs in prefork pool processes, so its metrics use
  prometheus_client's multiprocess mode: each pool process writes its values
  to files in a directory made per worker main process, and the main process
  serves the sum on ``AMWORKER_WORKER_METRICS_PORT`` (see worker.pool.metrics
  for the Celery signals). :class:`JobMetrics` keeps the stock Archivematica
  worker's metric names and ``script_name`` label, so existing dashboards work.

Nothing here is a module-level singleton: collectors belong to the objects
that own them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

# prometheus_client is imported where collectors are made, not here: a shim
# with metrics off imports this module (for NullObserver) and stays ~2 MB
# smaller without it (its idle budget is 45 MB).

log = logging.getLogger(__name__)

#: Batch latency buckets, in seconds: a batch takes from milliseconds (a
#: database update) to hours (normalising video).
BATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200,
                 14400, 28800)


class BatchObserver(Protocol):
    """What the batch runner reports about each batch it answers."""

    def batch_received(self, function: str) -> None:
        """A batch arrived from gearmand."""

    def batch_answered(self, function: str, *, ok: bool, seconds: float) -> None:
        """A batch was answered; ``ok`` is False for WORK_FAIL or an amworker-made failure."""

    def payload_refused(self, function: str) -> None:
        """A payload could not be decoded."""

    def answer_joined(self, function: str) -> None:
        """A JSON answer was joined from its slices' stored parts, not encoded result by result."""


class NullObserver:
    """The observer when metrics are off: every report is dropped."""

    def batch_received(self, function: str) -> None:
        """Drop."""

    def batch_answered(self, function: str, *, ok: bool, seconds: float) -> None:
        """Drop."""

    def payload_refused(self, function: str) -> None:
        """Drop."""

    def answer_joined(self, function: str) -> None:
        """Drop."""


class ShimMetrics:
    """The shim's collectors, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter("amworker_batches_received", "Batches received from gearmand",
                                ["function"], registry=r)
        self.completed = Counter(
            "amworker_batches_completed",
            "Batches answered with every task's own result from its script",
            ["function"], registry=r)
        self.failed = Counter(
            "amworker_batches_failed",
            "Batches answered WORK_FAIL, or with a task failed by amworker (worker lost, "
            "time limit, broker lost, ...)", ["function"], registry=r)
        self.in_flight = Gauge("amworker_batches_in_flight", "Batches received and not yet answered",
                               registry=r)
        self.latency = Histogram("amworker_batch_latency_seconds",
                                 "Seconds from receiving a batch to answering it", ["function"],
                                 buckets=BATCH_BUCKETS, registry=r)
        self.decode_failures = Counter("amworker_payload_decode_failures",
                                       "Payloads that could not be decoded (answered WORK_FAIL)",
                                       ["function"], registry=r)
        self.joined = Counter(
            "amworker_answers_joined",
            "JSON answers joined from their slices' stored parts; the rest of the answered "
            "batches were encoded result by result (pickled requests, amworker failures, "
            "older workers)", ["function"], registry=r)
        self.gearman_up = Gauge("amworker_gearman_connected",
                                "1 while the shim holds a connection to this gearmand, else 0",
                                ["server"], registry=r)

    def batch_received(self, function: str) -> None:
        """Count the batch and hold it in flight."""
        self.received.labels(function).inc()
        self.in_flight.inc()

    def batch_answered(self, function: str, *, ok: bool, seconds: float) -> None:
        """Count the outcome, observe the latency, release it from flight."""
        (self.completed if ok else self.failed).labels(function).inc()
        self.latency.labels(function).observe(seconds)
        self.in_flight.dec()

    def payload_refused(self, function: str) -> None:
        """Count an undecodable payload."""
        self.decode_failures.labels(function).inc()

    def answer_joined(self, function: str) -> None:
        """Count an answer joined from its slices' parts."""
        self.joined.labels(function).inc()

    def gearman_state(self, server: str, up: bool) -> None:
        """Record whether the shim is connected to ``server``."""
        self.gearman_up.labels(server).set(1 if up else 0)

    def serve(self, address: str, port: int) -> None:
        """Serve ``/metrics`` from a daemon thread."""
        from prometheus_client import start_http_server

        start_http_server(port, addr=address, registry=self.registry)
        log.info("shim metrics on http://%s:%d/metrics", address, port)
