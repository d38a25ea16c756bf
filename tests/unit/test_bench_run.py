"""A bench run keeps what it measured when its broker comparison fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import brokers, run
from bench.sizes import TINY

pytestmark = pytest.mark.timeout(30)


def test_a_failing_broker_comparison_is_recorded_and_the_run_goes_on(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refused(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("rabbitmqctl add_vhost failed (69): unable to connect")

    monkeypatch.setattr(brokers, "measure", refused)
    raw: dict[str, Any] = {"errors": {}, "w1": {"amworker": [0.02]}}

    section = run._brokers(TINY, tmp_path, "sqlite:///unused", {}, raw)

    assert section == {"reason": "failed: rabbitmqctl add_vhost failed (69): unable to connect"}
    assert raw["errors"]["brokers"] == [
        "not measured: rabbitmqctl add_vhost failed (69): unable to connect"]
    assert raw["w1"] == {"amworker": [0.02]}  # what was measured before is kept
    assert brokers.table(section).startswith("Not measured in this run: failed: rabbitmqctl")
