"""Where W7's time goes, per process: CPU time of each, py-spy on those running the script.

``python -m bench.w7_profile [--runs N] [--size full|tiny]`` builds W7's
fixture and starts the three systems as ``make bench`` does. For each system
it reads the CPU time (``/proc/PID/stat``) of every process serving it (the
stock stand-in; amworker's shim, Celery main process and pool processes)
over ``N`` whole batches, and records the processes that run the script
with ``py-spy record --idle`` (idle samples too: a wait for SQLite's write
lock is a sleep). Each sample goes into one bucket by the frames on its
stack (:func:`bucket`); the table gives seconds per batch in each. Needs
py-spy (the ``bench`` extra) and the right to ptrace the processes (root,
or ``ptrace_scope`` 0). The recorders share the machine's cores, so
profiled batches are slower than measured ones: read the shares, not the sums.
``--phases`` times the script's phases in each process instead, with no
profiler running (:mod:`bench.w7_phases`).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from bench import memory, w7, w7_a3m
from bench.sizes import SIZES
from harness.procstat import cpu_seconds
from harness.services import ROOT, Stack

log = logging.getLogger("bench")

#: Samples per second per process: low, as the recorders share the 2 cores.
RATE = 100

#: (bucket, frames that put a sample in it): the first bucket whose frame is
#: on the stack wins, so the order matters (a lock wait is inside a write).
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("script: SHA-256 of the files", ("get_file_checksum",)),
    ("script: final transaction, in SQLite (incl. waiting for the write lock)",
     ("updateSizeAndChecksum",), ),
    ("script: per-task query and argument parsing", ("update_size_and_checksum.py",)),
    ("Tasks rows (start and end of the batch)", ("write_task_results_callback",
                                                 "set_start_times", "bookkeeping.py")),
    ("worker: decoding, jobs, results, Celery and Gearman I/O", ("execute_command",
                                                               "executor.py", "runner.py",
                                                               "tasks.py", "celery/app/trace.py",
                                                               "gearman_io.py", "batch/")),
)
#: Samples of no bucket: a process waiting for work, and every thread but the
#: one running the script (py-spy's --idle samples them all); not reported.
IDLE = "idle"


def bucket(stack: str) -> str:
    """The bucket of one collapsed stack (``frame;frame;...``)."""
    if "updateSizeAndChecksum" in stack:
        # The script's write loop: SQL executing (or waiting on the lock) vs the ORM's Python.
        # SQLite (and its busy handler's sleep) is C code: the leaf Python frame is
        # the cursor's execute.
        leaf = stack.rsplit(";", 1)[-1]
        in_sqlite = "execute" in leaf and "sqlite3/base.py" in leaf
        return ("script: final transaction, in SQLite (incl. waiting for the write lock)"
                if in_sqlite else "script: final transaction, Django ORM in Python")
    for name, frames in BUCKETS:
        if any(frame in stack for frame in frames):
            return name
    return IDLE


def record(pids: dict[str, int], out: Path) -> list[tuple[str, subprocess.Popen[bytes], Path]]:
    """Start one py-spy per process; stop them with :func:`collect`."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    started = []
    for role, pid in pids.items():
        path = out / f"{role}-{pid}.txt"
        proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", str(RATE), "--idle",
                                 "--format", "raw", "--output", str(path), "--nonblocking"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started.append((role, proc, path))
    return started


def collect(started: list[tuple[str, subprocess.Popen[bytes], Path]]) -> dict[str, Counter[str]]:
    """Stop the recorders; samples per bucket, per process role."""
    found: dict[str, Counter[str]] = {}
    for role, proc, path in started:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        counts: Counter[str] = Counter()
        if path.exists():
            for line in path.read_text().splitlines():
                stack, _, number = line.rpartition(" ")
                if number.isdigit():
                    counts[bucket(stack)] += int(number)
        else:
            log.warning("py-spy wrote nothing for %s: %s", role, err.decode()[-500:])
        found[role] = counts
    return found


def _pids(deployed: Stack, system: str) -> tuple[dict[str, int], dict[str, int]]:
    """The processes to record with py-spy (those running the script), and all of them."""
    procs = {p.name: p.pid for p in deployed.procs}
    if system == "stock":
        return {"stock": procs["w7-stock"]}, {"stock": procs["w7-stock"]}
    pool = procs["w7-pool"]
    children = {f"pool process {i + 1}": pid for i, pid in
                enumerate(sorted(p for p in memory.tree([pool]) if p != pool))}
    return children, {"shim": procs["shim"], "celery main": pool, **children}


def _names() -> list[str]:
    return ([BUCKETS[0][0], "script: final transaction, Django ORM in Python", BUCKETS[1][0]]
            + [name for name, _ in BUCKETS[2:]])


def table(results: dict[str, dict[str, Counter[str]]], cpu: dict[str, dict[str, float]],
          seconds: dict[str, list[float]], runs: int) -> str:
    """Markdown: per system and process, CPU seconds per batch, and py-spy's buckets
    (seconds per batch, wall clock) for the processes that run the script."""
    names = _names()
    lines = ["| system (median batch) | process | CPU s per batch | "
             + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for system, per_role in cpu.items():
        median = sorted(seconds[system])[len(seconds[system]) // 2]
        for role, used in per_role.items():
            counts = results[system].get(role)
            cells = ([f"{counts[n] / RATE / runs:.3f}" for n in names] if counts is not None
                     else ["—"] * len(names))
            lines.append(f"| {system} ({median:.2f} s) | {role} | {used / runs:.3f} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def phases(fixture: w7.Fixture, workdir: Path, runs: int, errors: list[str]) -> str:
    """Markdown: per run and process, the phases of each ``call(jobs)`` (seconds)."""
    import json

    log_path = workdir / "phases.jsonl"
    hook = Path(__file__).resolve().parent / "w7_phases"
    extra = {"PYTHONPATH": f"{hook}:{ROOT}", "W7_PHASES_LOG": str(log_path)}
    lines = ["| run | system | process | jobs | per-task loop (query, SHA-256) | asked → got the write lock "
             "| final transaction | call(jobs) | batch |", "|---|---|---|---|---|---|---|---|---|"]
    with w7.systems(fixture, extra) as deployed:
        w7.warm_up(deployed.server, fixture, errors)
        for run in range(1, runs + 1):
            for system in ("stock", "amworker_split"):
                log_path.unlink(missing_ok=True)
                elapsed = w7.run_once(deployed.server, fixture, system, run, errors)
                calls = [json.loads(line) for line in log_path.read_text().splitlines()]
                for call in sorted(calls, key=lambda c: c["start"]):
                    lines.append(
                        f"| {run} | {system} | {call['pid']} | {call['jobs']} | "
                        f"{call['loop_end'] - call['start']:.2f} | "
                        f"{call['update_got'] - call['update_asked']:.2f} | "
                        f"{call['end'] - call['update_asked']:.2f} | "
                        f"{call['end'] - call['start']:.2f} | {elapsed:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Profile each W7 system over ``--runs`` batches; print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.w7_profile")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--phases", action="store_true",
                        help="instead of py-spy, time the script's phases in each process "
                        "(bench/w7_phases) for the stock design and amworker's 2 slices")
    parser.add_argument("--keep", type=Path, default=None,
                        help="copy py-spy's raw (collapsed) stacks into this directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench: %(message)s",
                        stream=sys.stderr)
    sizes = SIZES[args.size]
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="amworker-w7-profile-") as tmp:
        workdir = Path(tmp)
        from dataclasses import replace

        fixture = w7.prepare(replace(sizes, w7_runs=args.runs), workdir / "w7")
        if args.phases:
            print(phases(fixture, workdir, args.runs, errors))
            return 1 if errors else 0
        results: dict[str, dict[str, Counter[str]]] = {}
        seconds: dict[str, list[float]] = defaultdict(list)
        cpu: dict[str, dict[str, float]] = {}
        with w7.systems(fixture) as deployed:
            w7.warm_up(deployed.server, fixture, errors)
            for system in w7_a3m.SYSTEMS:
                spied, every = _pids(deployed, system)
                started = record(spied, workdir)
                before = {role: cpu_seconds(pid) for role, pid in every.items()}
                for run in range(1, args.runs + 1):
                    seconds[system].append(w7.run_once(deployed.server, fixture, system, run,
                                                       errors))
                cpu[system] = {role: cpu_seconds(pid) - before[role] for role, pid in every.items()}
                results[system] = collect(started)
                if args.keep is not None:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    for _role, _proc, path in started:
                        if path.exists():
                            shutil.copy(path, args.keep / f"{system}-{path.name}")
    print(table(results, cpu, seconds, args.runs))
    if errors:
        print("\nerrors:\n" + "\n".join(errors[:20]))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
