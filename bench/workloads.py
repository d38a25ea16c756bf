"""W1-W5: submit the same batches to whichever system is registered, and measure.

Every submission goes through :class:`worker.cli.gearman_client.GearmanClient`,
the way the controller submits: one foreground job per batch, all of a
workload's batches in flight at once where the workload says so.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import payloads
from bench.payloads import BenchBatch
from bench.scripts.big_output import expected_output
from bench.sizes import Sizes
from bench.systems import BIG_OUTPUT, NOOP
from worker.cli.gearman_client import GearmanClient

#: Generous: a wedged system fails the bench instead of hanging it.
TIMEOUT_SECONDS = 300.0


@dataclass
class Measured:
    """Numbers of one workload on one system, and anything that went wrong."""

    values: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        """The median of the values."""
        return statistics.median(self.values)


def submit(server: str, batches: list[BenchBatch], *, rows: bool,
           expected: Callable[[str], str] | None = None) -> tuple[float, list[str]]:
    """Submit every batch at once; return the seconds until the last answer, and problems."""
    if rows:
        payloads.insert_rows(batches)
    with GearmanClient(server) as client:
        started = time.perf_counter()
        outcomes = client.submit_many([b.submission for b in batches], timeout=TIMEOUT_SECONDS)
        elapsed = time.perf_counter() - started
    errors = [e for b, o in zip(batches, outcomes, strict=True)
              for e in payloads.problems(b, o, expected)]
    return elapsed, errors


def warm_up(server: str, function: str, arguments: str, *, batches: int, tasks: int) -> None:
    """Run a few small batches first: imports, connections and pool processes get ready."""
    for _ in range(2):
        submit(server, [payloads.make_batch(function, tasks, arguments) for _ in range(batches)],
               rows=False)


def w1_latency(server: str, sizes: Sizes, *, rows: bool) -> Measured:
    """W1: one no-op batch at a time; submit -> result latency of each run, in seconds."""
    measured = Measured()
    for _ in range(sizes.w1_runs):
        batch = payloads.make_batch(NOOP, sizes.w1_tasks, payloads.NOOP_ARGUMENTS)
        elapsed, errors = submit(server, [batch], rows=rows)
        measured.values.append(elapsed)
        measured.errors += errors
    return measured


def w2_throughput(server: str, sizes: Sizes, *, rows: bool) -> Measured:
    """W2: all no-op batches in flight at once; tasks per second, end to end, per round."""
    measured = Measured()
    for _ in range(sizes.w2_rounds):
        batches = [payloads.make_batch(NOOP, sizes.w2_tasks, payloads.NOOP_ARGUMENTS)
                   for _ in range(sizes.w2_batches)]
        elapsed, errors = submit(server, batches, rows=rows)
        measured.values.append(sizes.w2_batches * sizes.w2_tasks / elapsed)
        measured.errors += errors
        if rows:
            written = payloads.rows_finished(batches)
            total = sizes.w2_batches * sizes.w2_tasks
            if written != total:
                measured.errors.append(f"W2: only {written} of {total} Tasks rows written")
    return measured


def w3_batch_seconds(server: str, function: str, sizes: Sizes, mebibytes: int) -> Measured:
    """W3/W4: seconds to answer one batch of CPU-bound tasks, per run.

    Two small batches of the same function (1 MiB per task) go first, on
    every system: a function's first batch pays one-time costs that W3 does not
    measure (a chord's Lua scripts loaded into Redis, the script imported in
    each process), and with a median of a few runs one such run shows.
    """
    warm_up(server, function, "1", batches=1, tasks=sizes.w3_tasks)
    return w3_runs(server, function, sizes, mebibytes)


def w3_runs(server: str, function: str, sizes: Sizes, mebibytes: int) -> Measured:
    """W3/W4's measured runs alone, on a system already warmed up for ``function``."""
    measured = Measured()
    for _ in range(sizes.w3_runs):
        batch = payloads.make_batch(function, sizes.w3_tasks, str(mebibytes))
        elapsed, errors = submit(server, [batch], rows=True)
        measured.values.append(elapsed)
        measured.errors += errors
    return measured


def w5_large_outputs(server: str, sizes: Sizes) -> Measured:
    """W5: all batches of big outputs in flight; every output must come back intact."""
    size = sizes.w5_output_bytes
    batches = [payloads.make_batch(BIG_OUTPUT, sizes.w5_tasks, str(size))
               for _ in range(sizes.w5_batches)]
    elapsed, errors = submit(server, batches, rows=True,
                             expected=lambda task_id: expected_output(task_id, size))
    return Measured(values=[elapsed], errors=errors)
