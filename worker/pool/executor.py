"""Running ``call(jobs)`` for one slice, safely, inside a Celery pool process.

The executor owns the guards; the Celery task around it stays thin:

* an exception out of ``call()`` fails the slice's jobs with the traceback;
* ``sys.exit()`` is a bug in the script: its jobs fail, the process lives on;
* a soft time limit fails the jobs with the cause "time limit";
* output is bounded by the Job API, and sanitised before it leaves;
* output outside the Job API (print(), fd 1/2, children's) is bounded in the
  worker's log (worker.pool.stray_output);
* child processes the script leaves running are killed and reaped, and its
  jobs fail saying so (a leftover would outlive the slice, hold files open
  and pile up in a long-lived pool process).

Failures of the script are *results*; nothing here raises to Celery except
what must end the process (a hard time limit, a signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import traceback
from collections.abc import Sequence

from worker.client.job import Job
from worker.codec.records import TaskResult
from worker.config import DEFAULT_MAX_LOG_BYTES
from worker.contract.plan import JobSpec
from worker.contract.results import Clock, fail_jobs, utcnow
from worker.errors import Cause, reason
from worker.pool import stray_output
from worker.scripts.registry import ClientScript

log = logging.getLogger(__name__)

def build_jobs(
    function: str,
    specs: Sequence[JobSpec],
    *,
    max_output_bytes: int,
    log_every_record: bool = False,
) -> list[Job]:
    """The ``Job`` objects a script receives: ``job.args == [function] + argv``.

    ``log_every_record`` is ``AMWORKER_SCRIPT_LOGS_IN_OUTPUT``: what a
    ``JobContext`` logger adds to the job (worker.client.log_capture).
    """
    return [
        Job(
            function,
            spec.uuid,
            list(spec.argv),
            capture_output=spec.wants_output,
            max_output_bytes=max_output_bytes,
            log_every_record=log_every_record,
        )
        for spec in specs
    ]


def run_script(
    script: ClientScript,
    jobs: list[Job],
    *,
    clock: Clock = utcnow,
    soft_limit_errors: tuple[type[BaseException], ...] = (),
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
) -> None:
    """Call ``script.call(jobs)`` under the guards; never raises for script faults."""
    started = clock()
    for job in jobs:
        job.start_time = started
        job.passes_through = soft_limit_errors
    become_subreaper()
    before = child_pids()
    # Leftover children are killed inside the block: they hold the pipes.
    with stray_output.guard(max_log_bytes):
        _call(script, jobs, soft_limit_errors)
        leftovers = kill_leftovers(before)
    if leftovers:
        fail_jobs(jobs, f"amworker: script left processes: call(jobs) returned with "
                        f"{len(leftovers)} child process(es) still running (pids "
                        f"{', '.join(map(str, leftovers))}); they were killed")
    finished = clock()
    for job in jobs:
        if job.end_time is None:
            job.end_time = finished


def _call(script: ClientScript, jobs: list[Job],
          soft_limit_errors: tuple[type[BaseException], ...]) -> None:
    """``script.call(jobs)``; a fault of the script fails its jobs with the cause."""
    try:
        # A list of its own: a script that pops its jobs off the list (or
        # appends to it) must not change which results the worker reads back.
        script.call(list(jobs))
    except soft_limit_errors as exc:
        fail_jobs(jobs, reason(Cause.TIME_LIMIT, f"the slice exceeded its soft time limit ({exc!r})"))
    except SystemExit as exc:
        fail_jobs(
            jobs,
            f"the script called sys.exit({exc.code!r}); that is a bug in the script, "
            "so its jobs fail\n" + traceback.format_exc(),
        )
    except Exception:  # noqa: BLE001 - the one boundary where any script fault lands
        fail_jobs(jobs, "the script raised out of call(jobs):\n" + traceback.format_exc())


#: prctl(2) option: orphaned descendants are re-parented to this process.
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Make this (pool) process adopt orphaned descendants, Linux only, best effort.

    A script that daemonises (double fork) leaves a grandchild whose parent
    exits; as a subreaper the pool process adopts it, so :func:`kill_leftovers`
    sees it among its children instead of losing it to init.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def child_pids(pid: int | None = None) -> set[int]:
    """Direct children of ``pid`` (this process by default), from every thread's /proc entry."""
    pid = pid or os.getpid()
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError), \
                    open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as handle:
                found.update(int(p) for p in handle.read().split())
    return found


#: Passes over the children that appeared: a killed child's own children
#: come to this process (a subreaper) only once it dies, so each pass finds
#: the next generation. Bounded, for a script whose children fork on and on.
KILL_PASSES = 16


def kill_leftovers(before: set[int]) -> list[int]:
    """SIGKILL and reap children that appeared since ``before``; the pids that were running.

    Zombies (children that exited but were not waited for) are reaped too but
    not reported: they had finished. A child's children, adopted when it is
    killed, are killed in the next pass.
    """
    running: list[int] = []
    for _ in range(KILL_PASSES):
        new = sorted(child_pids() - before)
        if not new:
            break
        running += _kill_and_reap(new)
    if running:
        log.warning("script left %d child process(es) running; killed %s", len(running), running)
    return running


def _kill_and_reap(pids: list[int]) -> list[int]:
    """SIGKILL ``pids`` that still run, reap them all; the ones that were running."""
    running = [pid for pid in pids if _state(pid) not in ("Z", None)]
    for pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return running


def _state(pid: int) -> str | None:
    """The one-letter state of ``pid`` from /proc, or ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def job_results(jobs: Sequence[Job], *, clock: Clock = utcnow) -> list[TaskResult]:
    """The wire results of finished jobs (what their script made of them)."""
    now = clock()
    return [
        TaskResult(
            uuid=job.uuid,
            exit_code=int(job.get_exit_code()),
            finished_at=job.end_time or now,
            stdout=job.get_stdout(),
            stderr=job.get_stderr(),
            wants_output=bool(job.capture_output),
        )
        for job in jobs
    ]
