"""Starting the systems under test on one private gearmand: baselines and amworker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from harness import procstat
from harness.services import Proc, Stack, gearman_status, spawn, wait_until

BENCH_DIR = Path(__file__).resolve().parent
#: The bench scripts' modules file, and the package their modules live in.
MODULES_FILE = BENCH_DIR / "scripts" / "modules.ini"
SCRIPTS_PACKAGE = "bench.scripts"

NOOP = "noop_v0.0"
SHA256 = "sha256_v0.0"
#: The same module as SHA256, forced to one slice by :data:`CONFIG_TOML`.
SHA256_SINGLE = "sha256single_v0.0"
BIG_OUTPUT = "bigoutput_v0.0"
FUNCTIONS = (NOOP, SHA256, SHA256_SINGLE, BIG_OUTPUT)

#: AMWORKER_CONFIG_FILE of every amworker process in the bench.
CONFIG_TOML = f'[functions."{SHA256_SINGLE}"]\nslices = 1\n'


def cores() -> int:
    """Cores of this machine: one baseline process and one Celery pool process each."""
    return os.cpu_count() or 1


def start_baseline(stack: Stack, kind: str, processes: int, *,
                   gearman_port: int | None = None) -> list[Proc]:
    """``processes`` baseline workers (``floor`` or ``inprocess``), registered and waiting.

    On the stack's gearmand, or on the one at ``gearman_port``: a system of
    its own lets the bench take turns between systems batch by batch.
    """
    port = gearman_port or stack.gearman_port
    argv = [sys.executable, "-m", "bench.baselines", kind, "--server", f"127.0.0.1:{port}"]
    for function in FUNCTIONS:
        argv += ["--function", function]
    procs = [spawn(f"{kind}-{i}", argv, env=stack.env, workdir=stack.workdir)
             for i in range(processes)]
    stack.procs.extend(procs)

    def registered() -> bool:
        dead = [p for p in procs if not p.alive()]
        if dead:
            raise RuntimeError(f"{dead[0].name} died:\n{dead[0].output()}")
        status = gearman_status(port)
        return all(status.get(f, (0, 0, 0))[2] >= processes for f in FUNCTIONS)

    wait_until(registered, timeout=60, what=f"{processes} {kind} worker(s)", interval=0.1)
    return procs


def stop(procs: list[Proc]) -> None:
    """Stop processes the bench started, and wait until they are gone."""
    for proc in procs:
        proc.stop()


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a process (``VmHWM``), in MiB."""
    return procstat.peak_rss_kib(pid) / 1024
