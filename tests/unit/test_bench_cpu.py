"""W2's CPU by process: a real process tree's CPU, a child waited for mid-window once; the table."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench import cpu

pytestmark = pytest.mark.timeout(60)

#: CPU seconds the child burns before the measured window, and again inside it.
BURN_SECONDS = 0.2

CHILD = f"""
import sys, time
def burn():
    until = time.process_time() + {BURN_SECONDS}
    while time.process_time() < until:
        pass
burn()
print("burnt", flush=True)
sys.stdin.readline()
burn()
"""

#: Starts the child and lets it burn its first share; on "go" lets it burn
#: the second and exit, waits for it (so it is gone, and reaped, before the
#: window closes), and says so.
PARENT = f"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", {CHILD!r}], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
assert child.stdout.readline() == "burnt\\n"
print("ready", flush=True)
sys.stdin.readline()
child.stdin.write("go\\n")
child.stdin.flush()
child.wait()
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def parent() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    yield proc
    proc.kill()
    proc.wait(10)


def test_a_child_alive_before_and_reaped_inside_counts_once(parent: subprocess.Popen[str]) -> None:
    assert parent.stdin is not None and parent.stdout is not None
    meter = cpu.Meter({"probe-0": parent.pid})
    with meter.measuring(batches=4):
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.stdout.readline() == "done\n"

    result = meter.result()
    assert result["batches"] == 4
    # Only the share burnt inside the window: missed, the child's time would
    # come out negative; counted twice (alive and reaped), twice as much.
    # Clock ticks are 10 ms: a tick or two either way.
    assert BURN_SECONDS - 0.05 <= result["seconds"]["probe child"] <= BURN_SECONDS + 0.05
    # The parent only waited.
    assert result["seconds"]["probe"] < BURN_SECONDS / 2


def test_a_process_gone_before_the_second_read_is_left_out(parent: subprocess.Popen[str]) -> None:
    meter = cpu.Meter({"gone": parent.pid})
    with meter.measuring(batches=1):
        parent.kill()
        parent.wait(10)
    assert meter.result() == {"batches": 1, "seconds": {}}


def test_a_baselines_numbered_workers_add_up_as_one_role() -> None:
    assert cpu.role("inprocess-1") == "inprocess"
    assert cpu.role("inprocess-1 child") == "inprocess child"
    assert cpu.role("shim") == "shim"
    meter = cpu.Meter({})
    meter.seconds = {"inprocess-0": 1.0, "inprocess-1": 2.0, "inprocess-0 child": 0.5,
                     "inprocess-1 child": 0.0}
    assert meter.result()["seconds"] == {"inprocess": 3.0, "inprocess child": 0.5}


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
        "| amworker | 15.5 ms | shim 6.0 ms, Celery main 2.5 ms, pool processes 7.0 ms | 2.50× |",
        "| in-process | 6.2 ms | workers 6.2 ms | — |",
        "| floor | 1.0 ms | workers 1.0 ms | 0.16× |",
    ]


def test_a_system_with_no_batches_measured_has_no_row() -> None:
    raw = {**RAW, "stock": {"batches": 0, "seconds": {"stock": 1.0}}}
    assert cpu.per_batch_ms(raw["stock"]) == {}
    assert "| stock |" not in cpu.table(raw)
    assert "| amworker | 15.5 ms |" in cpu.table(raw)
