"""What one Celery pool process needs to run slices, built once per process.

Settings, the script registry and a Redis client live here instead of in
module globals; :class:`worker.tasks.SliceTask` builds one lazily in each
process (after the fork, so no connection is shared between processes).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery.signals import worker_init, worker_shutdown

from worker import database, errors
from worker.codec.records import TaskResult
from worker.config import Settings, current_settings
from worker.contract import keys, lifetimes
from worker.contract.plan import JobSpec
from worker.contract.results import fail_tasks, utcnow
from worker.contract.slices import (
    OUTCOME_PART_CHARS,
    encode_ready_results,
    encode_result_parts,
    fit_one_part,
)
from worker.pool import bookkeeping
from worker.pool import metrics as worker_metrics
from worker.pool.bookkeeping import RetryPolicy
from worker.pool.executor import build_jobs, job_results, run_script
from worker.pool.job_metrics import JobMetrics
from worker.pool.leases import LeaseKeeper
from worker.scripts import imports as script_imports
from worker.scripts.registry import Registry, load_registry

log = logging.getLogger(__name__)


@dataclass
class WorkerRuntime:
    """Per-process state of a Celery worker running amworker slices."""

    settings: Settings
    registry: Registry
    redis: redis.Redis
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: False when the database has no Tasks table: rows are then not written
    #: (logged once at start) instead of every slice retrying a hopeless write.
    bookkeeping: bool = True
    #: Per-script job metrics, when the worker serves /metrics.
    metrics: JobMetrics | None = None

    @classmethod
    def build(cls, settings: Settings | None = None) -> WorkerRuntime:
        """Ready Django, the script aliases and the registry for this process."""
        settings = settings or current_settings()
        prepare_script_environment(settings)
        database.setup()
        script_imports.install()
        return cls(
            settings=settings,
            registry=load_registry(settings),
            # Timeouts: a lease or claim write must fail, not hang the slice.
            redis=redis.Redis.from_url(settings.result_backend, socket_connect_timeout=5,
                                       socket_timeout=30, socket_keepalive=True),
            retry=RetryPolicy(wait=settings.database_wait),
            bookkeeping=database.prepare_bookkeeping(),
            metrics=JobMetrics() if worker_metrics.enabled() else None,
        )

    def claim(self, task_id: str, worker: str, function: str) -> bool:
        """Record that ``task_id`` starts now; False if it already ran or was given up.

        This is what makes "a slice never runs twice" hold even if the broker
        delivers a message twice (visibility timeout, a re-dispatched batch).
        The claim lives as long as a copy of the slice's message could still
        start (see worker.contract.lifetimes), then expires.
        """
        value = json.dumps({"worker": worker, "pid": os.getpid(), "at": utcnow().isoformat()})
        pipe = self.redis.pipeline(transaction=True)
        # The lease goes first, in the same transaction: a waiting shim must
        # never see a claimed slice without a lease and call its worker lost.
        pipe.set(keys.lease_key(task_id), os.getpid(), ex=self._lease_ttl())
        pipe.set(keys.claim_key(task_id), value, nx=True, ex=self._key_ttl(function))
        _, claimed = pipe.execute()
        return bool(claimed)

    def store_outcome(self, task_id: str, function: str, results: Sequence[TaskResult], *,
                      answer_ready: bool = False,
                      resumed: bool = False,
                      sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic,
                      part_chars: int = OUTCOME_PART_CHARS) -> None:
        """Keep the slice's results under its own key, for the shim to fetch once.

        Celery stores no result for a slice that succeeded (its task has
        ``ignore_result``); it would be published on pub/sub too, where a
        large one (captured output) would overflow the shim's client output
        buffer and cut its connection.
        Results too big for one Redis value go in parts (``part_chars``
        characters at most, see :func:`encode_result_parts`).
        ``answer_ready`` (the shim asked, for a JSON request) stores them as
        the slice's part of the answer instead (:func:`encode_ready_results`),
        when they fit in one value. ``resumed``: an earlier call was cut
        short, perhaps after its final write reached Redis, so this one
        checks first, as a retry does.
        """
        first, *rest = _stored_form(results, part_chars, answer_ready)
        # The script has run: losing its results to a Redis blip would answer
        # a finished script "worker lost". Retried for one lease TTL, the time
        # a shim allows a lease to lapse while Redis is away (the lease is
        # still held here, so the slice is never seen as both unleased and
        # unfinished meanwhile).
        policy = RetryPolicy(wait=self._lease_ttl())
        deadline = clock() + policy.wait
        attempt = 1 if resumed else 0
        while True:
            attempt += 1
            try:
                if attempt > 1 and self.redis.exists(keys.outcome_key(task_id)):
                    # The last attempt's final write reached Redis and only
                    # its reply was lost. The first part goes last, so every
                    # part is there, and a lane may be reading them already:
                    # writing the parts again would empty their list under it.
                    return
                self._write_outcome(task_id, first, rest, self._key_ttl(function))
                return
            except redis.RedisError as exc:
                left = deadline - clock()
                if left <= 0:
                    log.error("slice %s: results of %d task(s) not stored after %d attempt(s) "
                              "in %gs; they are lost: %s", task_id, len(results), attempt,
                              policy.wait, exc)
                    raise
                pause = min(policy.delay(attempt), left)
                log.warning("slice %s: storing its results failed (attempt %d), retrying in "
                            "%.1fs: %s", task_id, attempt, pause, exc)
                sleep(pause)

    def _write_outcome(self, task_id: str, first: str | bytes, rest: Sequence[str | bytes],
                       ttl: int) -> None:
        if rest:
            # One command a part, never a transaction: Redis 7.4 and later
            # count the commands a MULTI queues against the client's input
            # limit (client-query-buffer-limit, 1 GB), and a slice's parts
            # can pass it. The first part, which names the others, goes last,
            # and a retry starts again from an empty list.
            more = keys.outcome_more_key(task_id)
            self.redis.delete(more)
            for part in rest:
                self.redis.rpush(more, part)
            self.redis.expire(more, ttl)
        # The note on the channel named like the key wakes the waiting lane:
        # stored results are all a lane needs (Celery stores none for a
        # slice that succeeded). One round trip for both.
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(keys.outcome_key(task_id), first, ex=ttl)
        pipe.publish(keys.outcome_key(task_id), keys.OUTCOME_STORED)
        pipe.execute()

    def _key_ttl(self, function: str) -> int:
        return lifetimes.key_ttl(self.settings, self.settings.options_for(function).time_limit)

    def _lease_ttl(self) -> int:
        return lifetimes.lease_ttl(self.settings)

    @contextlib.contextmanager
    def lease(self, task_id: str) -> Iterator[None]:
        """Keep a lease alive while the slice runs; it lapses if this process dies.

        The lease is left to expire afterwards, not deleted: the results were
        stored inside it, so a shim finds one or the other, and the shim's
        answer drops it. Deleting it here would be a round trip for nothing.
        """
        with self._leases.holding(keys.lease_key(task_id)):
            yield

    @functools.cached_property
    def _leases(self) -> LeaseKeeper:
        ttl = self._lease_ttl()

        def renew(key: str) -> None:
            self.redis.set(key, os.getpid(), ex=ttl)

        return LeaseKeeper(renew, self.settings.lease_seconds)

    def run_slice(self, function: str, specs: Sequence[JobSpec], *, client: str,
                  soft_limit_errors: tuple[type[BaseException], ...] = (),
                  script: str | None = None) -> list[TaskResult]:
        """Run one slice end to end: rows started, script called, rows finished.

        ``script`` is the entry the shim planned for; if this worker maps the
        function to another module, nothing runs and every task is answered
        ``script mismatch``.
        """
        from django.db import close_old_connections

        mismatch = self.registry.mismatch(function, script)
        if mismatch is not None:
            log.error("%s: refusing a slice: %s", function, mismatch)
            return _failed(specs, errors.reason(errors.Cause.SCRIPT_MISMATCH, mismatch))
        close_old_connections()
        entry = self.registry.get(function)
        if entry is None or entry.module is None:
            reason = entry.import_error if entry else f"unknown function {function!r}"
            return _failed(specs, errors.reason(errors.Cause.IMPORT_FAILED, str(reason)))
        uuids = [spec.uuid for spec in specs]
        if self.bookkeeping:
            try:
                bookkeeping.mark_started(uuids, when=utcnow(), client=client, policy=self.retry)
            except bookkeeping.DatabaseUnavailable as exc:
                # Not run: a database that cannot take one UPDATE in the wait
                # would not serve the script's own queries either, and the
                # controller must see a true exit code and why, not a result
                # whose row says the task never started.
                return _failed(specs, errors.reason(errors.Cause.DATABASE_UNAVAILABLE,
                                                    f"{exc}; the script was not run"))
        jobs = build_jobs(
            function, specs,
            max_output_bytes=entry.options.max_output_bytes or self.settings.max_output_bytes,
            log_every_record=self.settings.script_logs_in_output,
        )
        started = utcnow()
        run_script(entry.module, jobs, soft_limit_errors=soft_limit_errors,
                   max_log_bytes=self.settings.max_log_bytes)
        results = job_results(jobs)
        if self.metrics is not None:
            self.metrics.record(function, results, started=started)
        if self.bookkeeping:
            # The script ran: its result is the truth and goes to the
            # controller whatever happens to the row (with_retries logged it).
            with contextlib.suppress(bookkeeping.DatabaseUnavailable):
                despite_soft_limit(soft_limit_errors, lambda: bookkeeping.mark_finished(
                    results, capture_output=self.settings.capture_output, policy=self.retry
                ), "writing the Tasks rows")
        close_old_connections()
        return results


def despite_soft_limit(soft_limit_errors: tuple[type[BaseException], ...],
                       write: Callable[[], object], what: str, *,
                       again: Callable[[], object] | None = None) -> None:
    """``write()``, carried to its end even if the slice's soft time limit fires during it.

    The limit is raised once, at whatever line runs then (a signal). Once
    the script has returned, its results stand; the writes of them are
    where a slice can spend seconds after that (their retries pause while
    Redis or the database is away), and a limit firing there lost them: the
    rows said one thing and the controller, told "hard time limit",
    another. So the write is finished by ``again`` (``write`` itself if not
    given: it must be safe to repeat); the hard limit still bounds the slice.
    """
    try:
        write()
    except soft_limit_errors:
        log.warning("the slice's soft time limit fired while %s, after its script returned; "
                    "finishing that", what)
        (again or write)()


def _failed(specs: Sequence[JobSpec], reason: str) -> list[TaskResult]:
    """Every job of a slice that was not run, failed with ``reason``, in slice order."""
    return list(fail_tasks(specs, reason).values())


def node_name() -> str:
    """Fallback worker name when Celery gives none (the row's ``client`` column)."""
    return f"{socket.gethostname()}:{os.getpid()}"


# --- the process environment scripts expect (what the stock worker sets up) ---

#: Where the stock worker's client assets keep the XML catalog that maps
#: schema URLs to local copies, so validation works offline.
CATALOG_PATH = Path("catalog") / "catalog.xml"
#: prometheus_client's multiprocess directory variable.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The directory :func:`ensure_multiproc_dir` made for this worker (removed at shutdown).
_made_multiproc_dir: str | None = None


def prepare_script_environment(settings: Settings) -> None:
    """Set up what the stock worker sets up before any script runs.

    * ``XML_CATALOG_FILES`` = ``<client assets>/catalog/catalog.xml``, as the
      stock worker's entry point sets it: always, so schema imports resolve
      to Archivematica's local copies (libxml2 ignores a missing catalog).
    * A Prometheus multiprocess directory (:func:`ensure_multiproc_dir`).
    * ``django.setup()``: :meth:`WorkerRuntime.build` calls ``database.setup``
      right after this.
    """
    os.environ["XML_CATALOG_FILES"] = str(Path(settings.client_assets_directory) / CATALOG_PATH)
    ensure_multiproc_dir()


def ensure_multiproc_dir() -> str:
    """Make sure ``PROMETHEUS_MULTIPROC_DIR`` names an existing directory; return it.

    Like the stock worker: an operator's directory is created if missing,
    and without one a temporary directory is made (and removed when the
    worker shuts down). Stock scripts' own counters (``client.metrics``)
    then write to files, as they do under the stock worker.
    """
    global _made_multiproc_dir
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        os.makedirs(directory, mode=0o770, exist_ok=True)
        return directory
    directory = _made_multiproc_dir = tempfile.mkdtemp(prefix="amworker-prometheus-")
    os.environ[MULTIPROC_ENV] = directory
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        # prometheus_client picks its value class when first imported; pick
        # again so collectors made from now on use the directory.
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]
    return directory


def preload_shared() -> bool:
    """Set Django up in the main worker process, before the pool forks; True if it was.

    Every pool process needs Django, its settings and its apps' models;
    set up once here, their pages are shared by every pool process instead
    of copied into each (W9: the worker's tree, main and 2 pool processes,
    115 -> 100 MB PSS). ``gc.freeze()`` then keeps them shared: a
    collection in a pool process would otherwise write to every tracked
    object's header and so copy the pages it sits on.

    Client scripts are deliberately not imported here: a script that
    crashes the interpreter at import must take one pool process with it
    (its slices fail, "worker lost"), never the process that forks the pool.
    Django's setup opens no database connection, so none is inherited.
    """
    try:
        database.setup()
    except Exception as exc:  # noqa: BLE001 - each pool process tries again and reports it
        log.warning("Django was not set up before the pool forked (each pool process "
                    "sets it up itself): %s", exc)
        return False
    gc.collect()
    gc.freeze()
    return True


@worker_init.connect
def _prepare_worker(**_: Any) -> None:
    # The main worker process, before the pool forks: libxml2 and
    # prometheus_client read these variables once, so every pool process must
    # inherit them rather than set them after something already read them.
    prepare_script_environment(current_settings())
    preload_shared()


@worker_shutdown.connect
def _remove_multiproc_dir(**_: Any) -> None:
    if _made_multiproc_dir:
        shutil.rmtree(_made_multiproc_dir, ignore_errors=True)


def _stored_form(results: Sequence[TaskResult], part_chars: int,
                 answer_ready: bool) -> Sequence[str | bytes]:
    """The values a slice's results are stored as: answer-ready if asked and they fit, else parts."""
    if answer_ready and fit_one_part(results, part_chars):
        ready = encode_ready_results(results)
        if ready is not None and len(ready) <= part_chars:
            return [ready]
    return encode_result_parts(results, part_chars)
