"""W2's CPU by process: a real process tree's CPU, children that exited included; the table."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench import cpu

pytestmark = pytest.mark.timeout(60)

#: A child that burns this much CPU, then exits.
BURN_SECONDS = 0.3

#: Waits for a line, runs a child that burns CPU and waits for it (so the
#: child is gone, and reaped, before the next read), then says so.
PARENT = f"""
import subprocess, sys
sys.stdin.readline()
subprocess.run([sys.executable, "-c",
                "import time\\nwhile time.process_time() < {BURN_SECONDS}: pass"], check=True)
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def parent() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    yield proc
    proc.kill()
    proc.wait(10)


def test_a_child_that_exited_during_the_rounds_still_counts(parent: subprocess.Popen[str]) -> None:
    assert parent.stdin is not None and parent.stdout is not None
    meter = cpu.Meter({"probe-0": parent.pid})
    with meter.measuring(batches=4):
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.stdout.readline() == "done\n"

    result = meter.result()
    assert result["batches"] == 4
    # Clock ticks are 10 ms: the child's burn shows, less a tick or two.
    assert result["seconds"]["probe child"] >= BURN_SECONDS - 0.05
    # The parent only waited: its own CPU is nowhere near the child's.
    assert result["seconds"]["probe"] < BURN_SECONDS / 2


def test_a_process_gone_before_the_second_read_is_left_out(parent: subprocess.Popen[str]) -> None:
    meter = cpu.Meter({"gone": parent.pid})
    with meter.measuring(batches=1):
        parent.kill()
        parent.wait(10)
    assert meter.result() == {"batches": 1, "seconds": {}}


def test_a_baselines_numbered_workers_add_up_as_one_role() -> None:
    assert cpu.role("inprocess-1") == "inprocess"
    assert cpu.role("shim") == "shim"
    assert cpu.role("bench-pool") == "bench-pool"


RAW = {
    # Sorted by name, as Meter.result() stores them; the table puts the shim first.
    "amworker": {"batches": 100, "seconds": {"celery": 0.25, "celery child": 0.7, "shim": 0.6,
                                             "shim child": 0.0}},
    "inprocess": {"batches": 100, "seconds": {"inprocess": 0.62, "inprocess child": 0.0}},
    "floor": {"batches": 100, "seconds": {"floor": 0.1, "floor child": 0.0}},
}


def test_the_table_gives_each_system_per_batch_by_process_and_against_in_process() -> None:
    rows = cpu.table(RAW).splitlines()[2:]
    assert rows == [
        "| amworker | 15.50 ms | shim 6.00 ms, Celery main 2.50 ms, pool processes 7.00 ms | 2.50× |",
        "| in-process | 6.20 ms | workers 6.20 ms | — |",
        "| floor | 1.00 ms | workers 1.00 ms | 0.16× |",
    ]


def test_a_system_with_no_batches_measured_has_no_row() -> None:
    raw = {**RAW, "stock": {"batches": 0, "seconds": {"stock": 1.0}}}
    assert cpu.per_batch_ms(raw["stock"]) == {}
    assert "| stock |" not in cpu.table(raw)
    assert "| amworker | 15.50 ms |" in cpu.table(raw)
