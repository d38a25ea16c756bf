"""``python -m bench.ab`` still runs: this checkout against a copy of itself, W1 once each.

Nothing here asserts a time (benchmarks are not tests): it checks that both
sides ran their own checkout, produced numbers and no batch came back wrong.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.services import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_a_copy_of_this_checkout_is_measured_beside_it(tmp_path: Path) -> None:
    base = tmp_path / "base"
    for part in ("worker", "bench"):
        shutil.copytree(ROOT / part, base / part, ignore=shutil.ignore_patterns("__pycache__", "results"))
    done = subprocess.run([sys.executable, "-m", "bench.ab", str(base), "--workload", "w1",
                           "--rounds", "1"], cwd=ROOT, capture_output=True, text=True, timeout=230)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    (row,) = [line for line in done.stdout.splitlines() if line.startswith("| W1 latency")]
    numbers = [float(cell.replace(",", "")) for cell in row.split("|")[2:5]]
    assert len(numbers) == 3 and all(n > 0 for n in numbers), row


def test_a_directory_that_is_no_checkout_is_refused(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.ab", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "is not a checkout of amworker" in done.stderr
