"""The benchmarks and the harness stand alone: neither imports the test suite.

``bench/`` is run on its own (``make bench``), possibly from an installed tree
without ``tests/``; what it shares with the tests lives in ``harness/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    """Every module a Python file imports, at any depth (absolute imports)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("folder", ["bench", "harness"])
def test_no_imports_from_tests(folder: str) -> None:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"{folder}/ has no Python files"
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path)
                                            if m == "tests" or m.startswith("tests."))
        for path in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_scanner_sees_a_tests_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from tests.services import Stack\n    import tests\n")
    assert imported_modules(sample) == {"tests.services", "tests"}
