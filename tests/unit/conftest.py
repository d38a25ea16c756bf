"""Fixtures of the unit tests.

Django can be set up only once per process, so the one SQLite database the
bookkeeping tests write to is made here, for the whole session, and only when
a test asks for it: unit tests that never touch the database never set Django
up, whatever order they run in.

A process reads its settings once (worker.config.current_settings), and a
pytest process runs many tests with many environments: every test starts and
ends with none read, so none sees the settings of the one before it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.config import reset_settings

#: Variables that would steer worker.settings; hidden while Django reads it.
_STEERING_PREFIXES = ("AMWORKER_", "ARCHIVEMATICA_", "DJANGO_SETTINGS_MODULE")


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """No settings read when the test starts, nor left behind when it ends."""
    reset_settings()
    yield
    reset_settings()


@pytest.fixture(scope="session")
def django_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Django set up on a session-wide SQLite file with an empty ``Tasks`` table."""
    from django.apps import apps

    path = tmp_path_factory.mktemp("django") / "unit.sqlite3"
    if apps.ready:
        pytest.skip("Django was already set up by something else in this process")
    saved = {k: v for k, v in os.environ.items() if k.startswith(_STEERING_PREFIXES)}
    try:
        for key in saved:
            del os.environ[key]
        # worker.settings reads the environment once, at django.setup().
        os.environ["DJANGO_SETTINGS_MODULE"] = "worker.settings"
        os.environ["AMWORKER_DATABASE_URL"] = f"sqlite:///{path}"
        from worker import database

        # worker.settings reads the environment when imported: a test that
        # imported it earlier (to call its helpers) must not leave Django a
        # module built from another environment.
        sys.modules.pop("worker.settings", None)
        reset_settings()  # read again, from the environment set just above
        database.setup()
        database.ensure_schema()
    finally:
        for key in [k for k in os.environ if k.startswith(_STEERING_PREFIXES)]:
            del os.environ[key]
        os.environ.update(saved)
        reset_settings()  # those were this fixture's settings, not the test's
    yield path
    from django.db import connection

    connection.close()
