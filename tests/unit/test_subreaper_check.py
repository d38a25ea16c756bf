"""The autouse check in tests/conftest.py fails a test that leaves the process a subreaper."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.inner_pytest import run_pytest

pytestmark = pytest.mark.timeout(60)

#: Two tests that make the process a subreaper, one handing it back; then one that only looks.
SUBREAPING = '''
from tests.conftest import _no_subreaper_left_behind, restores_subreaper  # noqa: F401
from tests.subreaper import is_subreaper, set_subreaper


def test_leaks_it():
    set_subreaper(True)


def test_hands_it_back(restores_subreaper):
    set_subreaper(True)


def test_runs_after_the_leak():
    assert not is_subreaper()
'''


def test_a_test_that_leaves_the_process_a_subreaper_fails(tmp_path: Path) -> None:
    module = tmp_path / "test_subreaping.py"
    module.write_text(SUBREAPING)

    found = {name.rsplit("::", 1)[1]: outcome
             for name, outcome in run_pytest(tmp_path, "subreaping", module).items()}

    assert found == {"test_leaks_it": "error", "test_hands_it_back": "passed",
                     "test_runs_after_the_leak": "passed"}
