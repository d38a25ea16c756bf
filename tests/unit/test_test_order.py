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

from pathlib import Path

import pytest

from tests.inner_pytest import run_pytest

pytestmark = pytest.mark.timeout(120)

#: The modules that use the ``django_sqlite`` fixture.
DATABASE_MODULES = ["tests/unit/test_bookkeeping.py", "tests/unit/test_job_rows.py"]

#: A test module that sets Django up (on a database of its own) before the others run.
SETS_DJANGO_UP = '''
from django.apps import apps


def test_sets_django_up_first(monkeypatch):
    monkeypatch.setenv("AMWORKER_DATABASE_URL", "sqlite:///{elsewhere}")
    from worker import database

    database.setup()
    assert apps.ready
'''

#: A test module run after the others: they wrote to their own database, not that one.
LEFT_ELSEWHERE_ALONE = '''
import sqlite3


def test_the_earlier_database_was_left_alone():
    with sqlite3.connect("{elsewhere}") as db:
        tables = {{row[0] for row in db.execute("SELECT name FROM sqlite_master")}}
    assert "Tasks" not in tables
'''


def test_the_database_tests_pass_after_django_was_set_up_elsewhere(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.sqlite3"
    first, last = tmp_path / "test_first.py", tmp_path / "test_last.py"
    first.write_text(SETS_DJANGO_UP.format(elsewhere=elsewhere))
    last.write_text(LEFT_ELSEWHERE_ALONE.format(elsewhere=elsewhere))

    after = run_pytest(tmp_path, "after", first, *DATABASE_MODULES, last)

    probes = [k for k in after if k.endswith(("::test_sets_django_up_first",
                                              "::test_the_earlier_database_was_left_alone"))]
    assert [after.pop(k) for k in probes] == ["passed", "passed"], after
    for module in DATABASE_MODULES:
        name = module.removesuffix(".py").replace("/", ".")
        assert any(k.startswith(name + "::") for k in after), f"{module} did not run: {after}"
    assert set(after.values()) == {"passed"}, {k: v for k, v in after.items() if v != "passed"}
