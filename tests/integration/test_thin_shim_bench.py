"""The thin-shim bench still runs (``python -m bench.thin_shim``), at a tiny size.

Benchmarks are not tests: nothing here asserts a memory ceiling, only that
the harness measured real values and every W5 output came back intact.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.services import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_the_thin_shim_bench_measures(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.thin_shim", "--size", "tiny",
                           "--functions", "10", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=170)

    assert done.returncode == 0, done.stderr[-4000:]
    raw = json.loads((tmp_path / "thin_shim.json").read_text())
    assert raw["functions"] == 11
    assert raw["shim_idle_mb"] > 0 and raw["shim_w5_peak_mb"] >= raw["shim_idle_mb"]
    assert raw["probe_peak_mb"] > 0
    assert raw["w5_errors"] == []
    assert "| shim idle RSS |" in (tmp_path / "thin_shim.md").read_text()
