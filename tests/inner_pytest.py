"""Running pytest in a fresh process, for tests about the test suite itself.

Some properties hold only across a whole session (what an earlier test left
behind in the process): those are checked by running a chosen sequence of
test files in a new interpreter and reading each test's outcome back from
its JUnit report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.services import ROOT


def outcomes(junit: Path) -> dict[str, str]:
    """Each test case of a JUnit XML report: ``passed``, ``skipped``, ``failure`` or ``error``.

    A test that passed but whose teardown failed appears twice in the report's
    cases; the worse outcome wins.
    """
    found: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in {"skipped", "failure", "error"}]
        key = f"{case.get('classname')}::{case.get('name')}"
        if kinds or key not in found:
            found[key] = kinds[0] if kinds else "passed"
    return found


def run_pytest(tmp_path: Path, name: str, *paths: str | Path, timeout: float = 100) -> dict[str, str]:
    """Run pytest on ``paths`` (in order) in a new process from the repository root; each outcome."""
    junit = tmp_path / f"{name}.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMWORKER_", "DJANGO_"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={ROOT}",
         f"--junitxml={junit}", *map(str, paths)],
        cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=timeout)
    assert junit.exists(), done.stdout + done.stderr
    return outcomes(junit)
