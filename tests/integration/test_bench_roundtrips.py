"""The round-trip counter of the bench still runs and attributes work to the right process.

``python -m bench.roundtrips`` counts, per batch, the Redis round trips and
commands of the shim, the Celery main process and the pool processes. Here it
runs for two batches; the assertions check the attribution, not any number
a change could legitimately move: the shim publishes the slices (Redis is
the broker) and the pool processes store their results and announce them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.services import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_round_trips_are_counted_per_process(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.roundtrips", "--batches", "2",
                           "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-4000:]
    raw = json.loads((tmp_path / "roundtrips.json").read_text())
    trips = raw["round_trips_per_batch"]
    for role in ("shim", "celery main", "pool process"):
        assert trips.get(role, 0) > 0, trips
    names = raw["commands_by_name_per_batch"]
    assert names["shim"].get("LPUSH", 0) >= 1, names
    # A slice's results under their own key, and the note on their channel.
    assert names["pool process"].get("SET", 0) >= 1, names
    assert names["pool process"].get("PUBLISH", 0) >= 1, names
    assert "| shim |" in (tmp_path / "roundtrips.md").read_text()
