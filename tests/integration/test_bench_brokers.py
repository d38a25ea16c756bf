"""``python -m bench.brokers`` still runs: W1 and W2 once on each broker, at the tiny size.

Nothing here asserts a time (benchmarks are not tests): it checks that both
brokers produced real values and no batch came back wrong.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.services import ROOT, require_rabbitmq

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_w1_and_w2_run_on_both_brokers(tmp_path: Path) -> None:
    require_rabbitmq()
    out = tmp_path / "brokers.json"
    done = subprocess.run([sys.executable, "-m", "bench.brokers", "--size", "tiny",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=230)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    raw = json.loads(out.read_text())
    for broker in ("redis", "rabbitmq"):
        assert raw["errors"][broker] == []
        assert raw["w1"][broker] and all(v > 0 for v in raw["w1"][broker])
        assert raw["w2"][broker] and all(v > 0 for v in raw["w2"][broker])
        assert f"| {broker} | " in done.stdout
