"""How big each workload is: the real run, and a tiny one for the smoke test."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """Every knob of a bench run's size."""

    #: W1: tasks in the batch, measured runs (the issue asks for >= 10; 40
    #: keep the median steady on a noisy host, at ~15 ms a run).
    w1_tasks: int = 128
    w1_runs: int = 40
    #: W2: batches all in flight at once, tasks per batch, rounds (median kept).
    #: A round lasts 0.1-0.3 s here, so one stall moves it; with a median of 5,
    #: the ratio to in-process ranged 0.33-0.47x over five runs of one code.
    w2_batches: int = 16
    w2_tasks: int = 128
    w2_rounds: int = 15
    #: W9: W2 rounds run under the memory sampler, apart from W2's timed ones.
    #: Reading every process's smaps_rollup every 50 ms slowed amworker's
    #: W2 (four processes to read) by about 7 % in a probe: 12 alternating
    #: pairs, 12,808 tasks/s unsampled against 11,933, unsampled faster in
    #: 10 of the 12.
    w9_rounds: int = 5
    #: W3/W4: CPU-bound tasks in the batch, MiB each hashes, runs (median kept).
    w3_tasks: int = 16
    w3_mebibytes: int = 32
    w3_runs: int = 5
    #: W3/W4 again with 8x the work per task: at 32 MiB a task hashes in ~20 ms
    #: here, so a few tens of ms of fixed cost per batch weigh on the speedup.
    w3_heavy_mebibytes: int = 256
    #: W5: batches in flight, tasks per batch, output bytes per task.
    w5_batches: int = 64
    w5_tasks: int = 16
    w5_output_bytes: int = 64 * 1024
    #: W6: job counts of the slices whose statements are counted.
    w6_jobs: tuple[int, ...] = (1, 16, 128)
    #: W8: no-op batch sizes, one batch at a time, runs of each (median kept).
    w8_tasks: tuple[int, ...] = (1, 16, 128, 1024, 10_000)
    w8_runs: int = 3
    #: W5 again on fresh shims, so each run's peak is its own (the issue asks for 5).
    w5_repeats: int = 5
    #: W7: files of the generated corpus (one task each), its seed, the largest
    #: ordinary file and the size of the few large ones, measured runs (median kept).
    w7_files: int = 256
    w7_seed: int = 7
    w7_max_bytes: int = 3 * 1024 * 1024
    w7_large_bytes: int = 64 * 1024 * 1024
    w7_runs: int = 7


#: What ``make bench`` runs.
FULL = Sizes()

#: Every workload once, at a size that only proves the harness still works.
TINY = Sizes(
    w1_tasks=4, w1_runs=1,
    w2_batches=2, w2_tasks=4, w2_rounds=1, w9_rounds=1,
    w3_tasks=2, w3_mebibytes=1, w3_runs=1, w3_heavy_mebibytes=2,
    w5_batches=2, w5_tasks=2, w5_output_bytes=1024,
    w6_jobs=(1, 4),
    w8_tasks=(1, 4, 16), w8_runs=1, w5_repeats=2,
    w7_files=8, w7_max_bytes=64 * 1024, w7_large_bytes=256 * 1024, w7_runs=1,
)

SIZES = {"full": FULL, "tiny": TINY}
