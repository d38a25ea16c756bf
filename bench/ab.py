"""``python -m bench.ab BASE``: this checkout's amworker against another's, side by side.

A change to the hot path moves W1-W3 by a few per cent, and on a shared
host two ``make bench`` runs of the same code differ by more than that. So
both versions run at once, each on a gearmand, Redis and Celery worker of
its own, and the workload goes to them by turns (``bench.turns``): a slow
minute of the host falls on both. BASE is another checkout of amworker, for
instance ``git worktree add /tmp/base main``; both run in this interpreter's
environment, so a change of dependencies is not what this compares.

Workloads, as in ``make bench``: ``w1`` (one 128-task no-op batch at a time,
five a turn), ``w2`` (16 such batches in flight, one round a turn), ``w3``
(16 tasks hashing 32 MiB each, cut in two slices and in one, the speedup
being their ratio; three of each kind back to back a turn, the first not
kept), ``w4`` (W3's turn on two Celery workers of concurrency 1 each, W4's
stand-ins for two hosts: the one-slice batch runs on one of them) and
``w5`` (the shim's peak RSS through 64 batches of big outputs, a fresh shim
a turn). Results are printed; nothing is written.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench import payloads, systems, workloads
from bench.sizes import FULL, Sizes
from bench.turns import take_turns
from harness import services


@dataclass
class Side:
    """One version under test: its stack and what it measured."""

    name: str
    stack: services.Stack
    #: The side's shim (W5 replaces it with a fresh one each turn).
    shim: services.Proc | None = None
    measured: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def keep(self, numbers: dict[str, list[float]], errors: list[str]) -> None:
        for key, values in numbers.items():
            self.measured.setdefault(key, []).extend(values)
        self.errors += errors


#: What one turn of a workload adds to a side: numbers by measure, and errors.
Turn = tuple[dict[str, list[float]], list[str]]


def _w1(side: Side, sizes: Sizes) -> Turn:
    measured = workloads.w1_latency(side.stack.server, dataclasses.replace(sizes, w1_runs=5), rows=True)
    return {"W1 latency (ms)": [v * 1000 for v in measured.values]}, measured.errors


def _w2(side: Side, sizes: Sizes) -> Turn:
    measured = workloads.w2_throughput(side.stack.server, dataclasses.replace(sizes, w2_rounds=1),
                                       rows=True)
    return {"W2 throughput (tasks/s)": measured.values}, measured.errors


def _w3(side: Side, sizes: Sizes) -> Turn:
    # As in make bench, each kind's batches run back to back, so each pays
    # the tail of one of its own kind (the chord's bookkeeping runs on after
    # the answer, into the next batch): the first of a run pays the other
    # kind's tail, and is not kept.
    three = dataclasses.replace(sizes, w3_runs=3)
    server = side.stack.server
    split = workloads.w3_runs(server, systems.SHA256, three, sizes.w3_mebibytes)
    single = workloads.w3_runs(server, systems.SHA256_SINGLE, three, sizes.w3_mebibytes)
    return ({"W3 two slices (ms)": [v * 1000 for v in split.values[1:]],
             "W3 one slice (ms)": [v * 1000 for v in single.values[1:]]},
            split.errors + single.errors)


def _w5(side: Side, sizes: Sizes) -> Turn:
    # As in make bench: a fresh shim each turn, so its peak is this turn's.
    if side.shim is not None:
        systems.stop([side.shim])
    side.shim = side.stack.shim(functions=len(systems.FUNCTIONS))
    workloads.warm_up(side.stack.server, systems.NOOP, "x", batches=systems.cores() * 2, tasks=4)
    measured = workloads.w5_large_outputs(side.stack.server, sizes)
    return {"W5 shim peak RSS (MB)": [systems.peak_rss_mb(side.shim.pid)]}, measured.errors


WORKLOADS: dict[str, Callable[[Side, Sizes], Turn]] = {"w1": _w1, "w2": _w2, "w3": _w3, "w4": _w3,
                                                       "w5": _w5}
#: Each side's Celery workers for a workload: (workers, concurrency each).
WORKERS: dict[str, tuple[int, int]] = {"w4": (2, 1)}


@contextlib.contextmanager
def _side(name: str, root: Path, workdir: Path, database_url: str,
          workers: tuple[int, int]) -> Iterator[Side]:
    """A stack running checkout ``root``'s shim and Celery workers, as ``make bench`` runs them.

    ``workers``: how many Celery workers, and the concurrency of each.
    """
    workdir.mkdir()
    config = workdir / "amworker.toml"
    config.write_text(systems.CONFIG_TOML)
    env = {"AMWORKER_CONFIG_FILE": str(config), "AMWORKER_LEASE_SECONDS": "10",
           "AMWORKER_LOG_LEVEL": "INFO"}
    with services.stack(workdir, scripts=systems.SCRIPTS_PACKAGE, modules_file=systems.MODULES_FILE,
                        env=env, database_url=database_url) as stack:
        stack.use_checkout(root)
        shim = stack.shim(functions=len(systems.FUNCTIONS))
        count, concurrency = workers
        pools = [stack.celery_worker(f"bench-pool-{i}", concurrency=concurrency) for i in range(count)]
        for proc in (*pools, shim):
            # A process's working directory is the first place it imports from.
            if Path(f"/proc/{proc.pid}/cwd").resolve() != root:
                raise RuntimeError(f"{name}: {proc.name} does not run in {root}")
        workloads.warm_up(stack.server, systems.NOOP, "x", batches=systems.cores() * 2, tasks=4)
        for function in (systems.SHA256, systems.SHA256_SINGLE):
            workloads.warm_up(stack.server, function, "1", batches=1, tasks=FULL.w3_tasks)
        yield Side(name, stack, shim)


def compare(base: Path, workload: str, rounds: int) -> list[Side]:
    """Both sides measured ``rounds`` times by turns: [base, this checkout]."""
    run = WORKLOADS[workload]
    with tempfile.TemporaryDirectory(prefix="amworker-ab-") as tmp:
        # One database for both sides: this process inserts the Tasks rows
        # of every batch before it is sent, as the controller does.
        database_url = f"sqlite:///{tmp}/amworker.sqlite3"
        payloads.use_database(database_url)
        workers = WORKERS.get(workload, (1, systems.cores()))
        with (_side("base", base.resolve(), Path(tmp) / "base", database_url, workers) as before,
              _side("this", services.ROOT, Path(tmp) / "this", database_url, workers) as after):
            take_turns([before, after], rounds, lambda side: side.keep(*run(side, FULL)))
            return [before, after]


def report(sides: list[Side]) -> str:
    """A table: each number's median on each side, and this checkout's against the base's."""
    lines = ["| measure | base | this | this / base |", "|---|---|---|---|"]
    keys = dict.fromkeys(key for side in sides for key in side.measured)
    for key in keys:
        lines.append(_row(key, [_median(side.measured.get(key, [])) for side in sides], ",.1f"))
    if "W3 two slices (ms)" in keys:
        lines.append(_row("W3 speedup (×)", [_speedup(side) for side in sides], ".3f"))
    for side in sides:
        lines += [f"{side.name}: {error}" for error in side.errors[:10]]
    return "\n".join(lines)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _speedup(side: Side) -> float | None:
    one = _median(side.measured.get("W3 one slice (ms)", []))
    two = _median(side.measured.get("W3 two slices (ms)", []))
    return one / two if one is not None and two else None


def _row(name: str, values: list[float | None], spec: str) -> str:
    """One measure's row; "—" where a side measured nothing (its errors follow the table)."""
    before, after = values
    cells = ["—" if v is None else format(v, spec) for v in values]
    ratio = "—" if before is None or after is None or not before else f"{after / before:.3f}"
    return f"| {name} | {cells[0]} | {cells[1]} | {ratio} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", type=Path, help="another checkout of amworker")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="w1")
    parser.add_argument("--rounds", type=int, default=20, help="turns each side gets")
    args = parser.parse_args(argv)
    if not (args.base / "worker" / "gearman_shim.py").is_file():
        parser.error(f"{args.base} is not a checkout of amworker (no worker/gearman_shim.py)")
    sides = compare(args.base, args.workload, args.rounds)
    print(report(sides))
    return 1 if any(side.errors for side in sides) else 0


if __name__ == "__main__":
    sys.exit(main())
