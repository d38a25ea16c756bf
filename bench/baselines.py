"""The two baselines amworker is measured against, as Gearman workers.

* ``floor``: answers every batch with a canned valid result (exit code 0,
  one line of output per task) after decoding it. Gearman plus the codec and
  nothing else: no worker can answer faster.
* ``inprocess``: runs ``call(jobs)`` in its own process with amworker's job
  API (:mod:`worker.pool.executor`) and row writes (:mod:`worker.pool.bookkeeping`).
  The stock worker's design (one batch, one process) with no Celery hop.

The harness starts one process per core of either:
``python -m bench.baselines floor|inprocess``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from gearman import GearmanWorker
from gearman.job import GearmanJob

from worker.batch.gearman_io import FastGearmanConnection
from worker.codec.records import TaskResult
from worker.codec.wire import decode_request, encode_result
from worker.contract.results import utcnow

log = logging.getLogger("bench.baselines")

Answer = Callable[[str, bytes], bytes]


class _Worker(GearmanWorker):
    connection_class = FastGearmanConnection


def floor_answer(_function: str, payload: bytes) -> bytes:
    """Decode the batch and answer every task with exit code 0, without running anything."""
    batch = decode_request(payload)
    now = utcnow()
    return encode_result(
        [TaskResult(uuid=t.uuid, exit_code=0, finished_at=now, stdout="ok\n",
                    wants_output=t.wants_output) for t in batch.tasks],
        batch.encoding,
    )


def inprocess_answerer() -> Answer:
    """Build what the in-process worker needs once, and return its answer function."""
    from worker import database
    from worker.codec.argv import Paths, prepare_argv
    from worker.config import current_settings
    from worker.contract.plan import JobSpec
    from worker.contract.results import failed_results
    from worker.pool import bookkeeping
    from worker.pool.executor import build_jobs, job_results, run_script
    from worker.scripts import imports as script_imports
    from worker.scripts.registry import load_registry

    settings = current_settings()
    database.setup()
    script_imports.install()
    registry = load_registry(settings)
    writes_rows = database.prepare_bookkeeping()
    policy = bookkeeping.RetryPolicy()
    paths = Paths(shared_directory=settings.shared_directory,
                  client_assets_directory=settings.client_assets_directory,
                  client_scripts_directory=settings.client_scripts_directory,
                  watch_directory=settings.watch_directory,
                  rejected_directory=settings.rejected_directory)

    def answer(function: str, payload: bytes) -> bytes:
        batch = decode_request(payload)
        entry = registry[function]
        now = utcnow()
        specs = [JobSpec(uuid=t.uuid, wants_output=t.wants_output,
                         argv=tuple(prepare_argv(t.arguments, task_uuid=t.uuid,
                                                 created_date=t.created_date, paths=paths,
                                                 now=now)))
                 for t in batch.tasks]
        if entry.module is None:
            return encode_result(failed_results([s.uuid for s in specs], str(entry.import_error)),
                                 batch.encoding)
        if writes_rows:
            bookkeeping.mark_started([s.uuid for s in specs], when=now, client="in-process",
                                     policy=policy)
        jobs = build_jobs(function, specs, max_output_bytes=entry.options.max_output_bytes or 0)
        run_script(entry.module, jobs)
        results = job_results(jobs)
        if writes_rows:
            bookkeeping.mark_finished(results, capture_output=settings.capture_output,
                                      policy=policy)
        return encode_result(results, batch.encoding)

    return answer


def serve(servers: list[str], functions: list[str], answer: Answer) -> None:
    """Answer batches of ``functions`` forever (until the harness stops the process)."""
    worker = _Worker(host_list=servers)

    def callback(_worker: GearmanWorker, job: GearmanJob) -> bytes:
        function = job.task.decode() if isinstance(job.task, bytes) else job.task
        return answer(function, bytes(job.data))

    for function in functions:
        # gearman3 matches JOB_ASSIGN's function name (bytes) against these keys.
        worker.register_task(function.encode(), callback)
    worker.work(poll_timeout=1.0)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.baselines KIND --server HOST:PORT --function F ...``."""
    parser = argparse.ArgumentParser(prog="python -m bench.baselines")
    parser.add_argument("kind", choices=["floor", "inprocess"])
    parser.add_argument("--server", required=True)
    parser.add_argument("--function", action="append", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    answer = floor_answer if args.kind == "floor" else inprocess_answerer()
    serve([args.server], args.function, answer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
