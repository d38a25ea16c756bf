"""Per-script job metrics of the Celery pool processes.

A Celery worker runs jobs in prefork pool processes, so these collectors
use prometheus_client's multiprocess mode: each pool process writes its
values to files in a directory made per worker main process, and the main
process serves the sum (worker.pool.metrics connects the Celery signals).
:class:`JobMetrics` keeps the stock Archivematica worker's metric names and
``script_name`` label, so existing dashboards work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from worker.codec.records import TaskResult

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

#: Job execution buckets, in seconds. Archivematica's TASK_DURATION_BUCKETS
#: cover the same range; these are spelled out so nothing imports it.
JOB_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


class JobMetrics:
    """Per-script job metrics of one Celery pool process (multiprocess mode).

    Names and meanings follow Archivematica's MCPClient ``metrics.py``:
    ``mcpclient_job_total`` counts every job processed, failed or not, and
    ``mcpclient_job_error_total`` the failed ones (non-zero exit code).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        # In multiprocess mode values live in files, not in the registry, so
        # a private one keeps the process's default registry untouched.
        r = registry or CollectorRegistry()
        self.jobs = Counter("mcpclient_job_total", "Number of jobs processed, labeled by script",
                            ["script_name"], registry=r)
        self.errors = Counter("mcpclient_job_error_total",
                              "Number of failures processing jobs, labeled by script",
                              ["script_name"], registry=r)
        # "max" across processes: the most recent time any process saw one;
        # it survives the process that recorded it (pool processes recycle).
        self.success_at = Gauge("mcpclient_job_success_timestamp",
                                "Timestamp of most recent job processed, labeled by script",
                                ["script_name"], multiprocess_mode="max", registry=r)
        self.error_at = Gauge("mcpclient_job_error_timestamp",
                              "Timestamp of most recent job failure, labeled by script",
                              ["script_name"], multiprocess_mode="max", registry=r)
        self.seconds = Histogram("mcpclient_task_execution_time_seconds",
                                 "Histogram of worker task execution times in seconds, "
                                 "labeled by script", ["script_name"], buckets=JOB_BUCKETS,
                                 registry=r)

    def record(self, script: str, results: Sequence[TaskResult], *, started: datetime) -> None:
        """Count each job of a finished slice and observe how long it ran."""
        now = time.time()
        for result in results:
            self.jobs.labels(script).inc()
            if result.exit_code == 0:
                self.success_at.labels(script).set(now)
            else:
                self.errors.labels(script).inc()
                self.error_at.labels(script).set(now)
            elapsed = (result.finished_at - started).total_seconds()
            self.seconds.labels(script).observe(max(0.0, elapsed))
