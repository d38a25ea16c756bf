"""The database tests give the same outcome whatever ran before them in the process.

Django can be set up only once per process. The ``django_sqlite`` fixture
(tests/unit/conftest.py) used to skip every database test when something
else had set Django up first, so their outcome hung on test order. Here the
database modules run in a fresh pytest after a test that set Django up on
another database: every test of theirs must pass, none skipped. (Alone, or
with nothing before them that sets Django up, they run in every unit-suite
session.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.services import ROOT

pytestmark = pytest.mark.timeout(120)

#: The modules that use the ``django_sqlite`` fixture.
DATABASE_MODULES = ["tests/unit/test_bookkeeping.py", "tests/unit/test_job_rows.py"]

#: A test module that sets Django up (on a database of its own) before the others run.
SETS_DJANGO_UP = '''
import os

from django.apps import apps


def test_sets_django_up_first(tmp_path):
    os.environ["AMWORKER_DATABASE_URL"] = f"sqlite:///{tmp_path}/elsewhere.sqlite3"
    from worker import database

    database.setup()
    assert apps.ready
'''


def _outcomes(junit: Path) -> dict[str, str]:
    """Each test case of a JUnit XML report: ``passed``, ``skipped``, ``failure`` or ``error``."""
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in {"skipped", "failure", "error"}]
        outcomes[f"{case.get('classname')}::{case.get('name')}"] = kinds[0] if kinds else "passed"
    return outcomes


def _run(tmp_path: Path, name: str, *paths: str) -> dict[str, str]:
    """Run pytest on ``paths`` in a fresh process; each test's outcome."""
    junit = tmp_path / f"{name}.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMWORKER_", "DJANGO_"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={ROOT}",
         f"--junitxml={junit}", *paths],
        cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=100)
    assert junit.exists(), done.stdout + done.stderr
    return _outcomes(junit)


def test_the_database_tests_pass_after_django_was_set_up_elsewhere(tmp_path: Path) -> None:
    first = tmp_path / "test_first.py"
    first.write_text(SETS_DJANGO_UP)

    after = _run(tmp_path, "after", str(first), *DATABASE_MODULES)

    setting_up = [k for k in after if k.endswith("::test_sets_django_up_first")]
    assert [after.pop(k) for k in setting_up] == ["passed"], after
    for module in DATABASE_MODULES:
        name = module.removesuffix(".py").replace("/", ".")
        assert any(k.startswith(name + "::") for k in after), f"{module} did not run: {after}"
    assert set(after.values()) == {"passed"}, {k: v for k, v in after.items() if v != "passed"}
