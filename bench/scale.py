"""W8: latency against batch size, one no-op batch at a time, for 1 ... 10,000 tasks.

The target: the cost per task must not grow with the batch, and a
10,000-task batch is answered within a second. amworker refuses batches
above ``AMWORKER_MAX_BATCH_TASKS`` (4096 by default), so the bench raises
that cap to :data:`MAX_BATCH_TASKS` for its amworker processes.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench import payloads
from bench.sizes import Sizes
from bench.systems import NOOP
from bench.workloads import Measured, submit

#: The cap the bench's amworker runs with, so W8's largest batch is accepted.
MAX_BATCH_TASKS = 10_000


def w8_batch_sizes(server: str, sizes: Sizes, *, rows: bool) -> tuple[dict[str, list[float]],
                                                                          list[str]]:
    """Seconds per run for each batch size (keys are the sizes, as strings), and problems."""
    found: dict[str, list[float]] = {}
    errors: list[str] = []
    for tasks in sizes.w8_tasks:
        measured = Measured()
        for _ in range(sizes.w8_runs):
            batch = payloads.make_batch(NOOP, tasks, payloads.NOOP_ARGUMENTS)
            elapsed, problems = submit(server, [batch], rows=rows)
            measured.values.append(elapsed)
            measured.errors += problems[:5]
        found[str(tasks)] = measured.values
        errors += measured.errors
    return found, errors


def per_task_ms(curve: dict[str, list[float]]) -> dict[int, float]:
    """Median milliseconds per task at each batch size."""
    return {int(n): statistics.median(v) * 1000 / int(n) for n, v in curve.items()}


def verdict(curve: dict[str, list[float]], largest_limit_s: float = 1.0) -> tuple[bool, str]:
    """Whether cost per task does not grow with the batch, and the largest batch is in time.

    "Does not grow" is read from 128 tasks up (below that the fixed cost of a
    round trip dominates, so per-task cost falls steeply): the per-task cost at
    each larger size may not exceed the one at 128 by more than 25 % (noise).
    """
    cost = per_task_ms(curve)
    sizes = sorted(cost)
    largest = sizes[-1]
    base_size = 128 if 128 in cost else sizes[0]
    grows = [n for n in sizes if n > base_size and cost[n] > cost[base_size] * 1.25]
    largest_s = statistics.median(curve[str(largest)])
    ok = not grows and largest_s <= largest_limit_s
    reason = (f"{largest:,} tasks in {largest_s:.2f} s; per task "
              + " / ".join(f"{cost[n]:.3g}" for n in sizes) + " ms")
    if grows:
        reason += f"; grows at {', '.join(f'{n:,}' for n in grows)}"
    return ok, reason


def summary(raw_w8: dict[str, Any]) -> dict[str, str]:
    """Per system: the per-task cost line for the table."""
    return {system: verdict(curve)[1] for system, curve in raw_w8.items()}
