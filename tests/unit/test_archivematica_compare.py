"""The comparison behind ``make test-archivematica`` (tests/archivematica/compare.py)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
compare: dict[str, Any] = runpy.run_path(str(ROOT / "tests/archivematica/compare.py"))
OURS = {"client.job": "worker.client.job", "custom_handlers": "worker.utils.custom_handlers"}


def junit(path: Path, cases: dict[str, str]) -> str:
    body = {"passed": "", "failed": "<failure/>", "error": "<error/>", "skipped": "<skipped/>"}
    rows = "".join(
        f'<testcase classname="tests.MCPClient.m" name="{name}">{body[outcome]}</testcase>'
        for name, outcome in cases.items()
    )
    path.write_text(f"<testsuites><testsuite>{rows}</testsuite></testsuites>")
    return str(path)


def modules(path: Path, used: dict[str, str]) -> str:
    path.write_text(json.dumps(used))
    return str(path)


def test_same_outcomes_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {"a": "passed", "b": "failed", "c": "skipped"}
    code = compare["main"](junit(tmp_path / "s.xml", cases), junit(tmp_path / "o.xml", cases),
                           modules(tmp_path / "m.json", OURS))
    assert code == 0
    assert "stock: 1 passed of 3 collected" in capsys.readouterr().out


@pytest.mark.parametrize("outcome", ["failed", "error", "skipped"])
def test_a_test_passing_only_with_stock_fails_the_run(
    tmp_path: Path, outcome: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = compare["main"](junit(tmp_path / "s.xml", {"a": "passed"}),
                           junit(tmp_path / "o.xml", {"a": outcome}),
                           modules(tmp_path / "m.json", OURS))
    assert code == 1
    assert "REGRESSION" in capsys.readouterr().out


def test_a_stand_in_that_did_not_take_fails_the_run(tmp_path: Path) -> None:
    stock = {"client.job": "client.job", "custom_handlers": "custom_handlers"}
    code = compare["main"](junit(tmp_path / "s.xml", {"a": "passed"}),
                           junit(tmp_path / "o.xml", {"a": "passed"}),
                           modules(tmp_path / "m.json", stock))
    assert code == 1
