"""W3's ceiling: the same SHA-256 work in bare processes, with no worker at all.

W3 asks how much faster a batch runs in one slice per core than in one
slice. No design can beat what the host itself gives two processes hashing
side by side: on a VM whose cores are shared, that is less than 2. This
measures it in the same run, next to W3, with W3's own work (the loop of
``bench/scripts/sha256_burn.py``): the whole batch in one process against
the batch shared out, one share per process, as slices are; all processes
started beforehand, one measurement after the other, by turns.
"""

from __future__ import annotations

import multiprocessing
import time

from bench.scripts import sha256_burn


def burn(mebibytes: int, jobs: int) -> float:
    """``jobs`` of W3's jobs of ``mebibytes`` MiB each, with its script's own code; seconds taken."""
    started = time.perf_counter()
    for job in range(jobs):
        sha256_burn.burn(str(job), mebibytes)
    return time.perf_counter() - started


def shares(jobs: int, processes: int) -> list[int]:
    """How many of ``jobs`` each process takes: as even as can be, as slices are cut."""
    base, extra = divmod(jobs, processes)
    return [base + (1 if i < extra else 0) for i in range(processes) if base or i < extra]


def measure(*, jobs: int, mebibytes: int, runs: int, processes: int) -> dict[str, list[float]]:
    """Seconds for the batch in one process (``one``) and shared out (``split``), ``runs`` each."""
    result: dict[str, list[float]] = {"one": [], "split": []}
    split = shares(jobs, processes)
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        # The pool forked every process already; a first call takes the
        # pool's own start-up (its task queue, its first result) out of the runs.
        pool.starmap(burn, [(1, 1)] * processes, chunksize=1)
        for _ in range(runs):
            started = time.perf_counter()
            pool.apply(burn, (mebibytes, jobs))
            result["one"].append(time.perf_counter() - started)
            started = time.perf_counter()
            pool.starmap(burn, [(mebibytes, share) for share in split], chunksize=1)
            result["split"].append(time.perf_counter() - started)
    return result
