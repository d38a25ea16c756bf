"""Fixtures of the unit tests.

Django can be set up only once per process, so the one SQLite database the
bookkeeping tests write to is made here, for the whole session, and only when
a test asks for it: unit tests that never touch the database never set Django
up, whatever order they run in. When something else set Django up first, the
database is swapped in under it instead (see ``django_sqlite``).

A process reads its settings once (worker.config.current_settings), and a
pytest process runs many tests with many environments: every test starts and
ends with none read, so none sees the settings of the one before it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    """Django on a session-wide SQLite file with an empty ``Tasks`` table.

    Whatever ran before: if nothing set Django up, it is set up here on the
    file; if something did (a test that called ``database.setup()``, or a
    tool's own ``django.setup()``), its ``default`` database is pointed at the
    file for the session and pointed back afterwards. Either way the tests get
    the same database; none is skipped (tests/unit/test_test_order.py).
    """
    from django.apps import apps

    path = tmp_path_factory.mktemp("django") / "unit.sqlite3"
    url = f"sqlite:///{path}"
    if not apps.ready:
        with _steered_to(url):
            from worker import database

            # worker.settings reads the environment when imported: a test that
            # imported it earlier (to call its helpers) must not leave Django a
            # module built from another environment.
            sys.modules.pop("worker.settings", None)
            database.setup()
            database.ensure_schema()
        yield path
        from django.db import connection

        connection.close()
        return
    if not apps.is_installed("worker"):
        pytest.fail("Django was set up earlier in this process without amworker's app "
                    f"(INSTALLED_APPS lacks worker.apps.AmworkerConfig): {apps.app_configs.keys()}")
    with _default_database(url, path):
        yield path


@contextlib.contextmanager
def _steered_to(url: str) -> Iterator[None]:
    """The environment worker.settings reads: only ``url`` as the database; restored after."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(_STEERING_PREFIXES)}
    try:
        for key in saved:
            del os.environ[key]
        # worker.settings reads the environment once, at django.setup().
        os.environ["DJANGO_SETTINGS_MODULE"] = "worker.settings"
        os.environ["AMWORKER_DATABASE_URL"] = url
        reset_settings()  # read again, from the environment set just above
        yield
    finally:
        for key in [k for k in os.environ if k.startswith(_STEERING_PREFIXES)]:
            del os.environ[key]
        os.environ.update(saved)
        reset_settings()  # those were this fixture's settings, not the test's


@contextlib.contextmanager
def _default_database(url: str, path: Path) -> Iterator[None]:
    """Django, already set up, with its ``default`` database on ``url`` for the block."""
    from django.db import connections

    from worker import database

    with _steered_to(url):
        # Imported in the same environment a fresh set-up would read; only
        # its pure helper is used.
        from worker.settings import database_config

        config = database_config(url)
    earlier = connections.settings
    _drop_default(connections)
    connections.settings = connections.configure_settings({**earlier, "default": config})
    try:
        with _steered_to(url):
            database.ensure_schema()
        yield
    finally:
        _drop_default(connections)
        connections.settings = earlier


def _drop_default(connections: Any) -> None:
    """Close this thread's ``default`` connection and forget it, so the next use reconnects."""
    if hasattr(connections._connections, "default"):
        connections["default"].close()
        del connections["default"]
