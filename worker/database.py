"""Readying Django and the database: one call per process, and the schema.

``setup()`` is idempotent and cheap after the first call. ``ensure_schema()``
creates ``Tasks`` only when it is missing: a real Archivematica database
already has it, and amworker must never alter that.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import Any

from worker.archivematica import BASE_SETTINGS

#: PyMySQL stands in for mysqlclient, which needs a compiler and headers.
_MYSQL_SHIM_INSTALLED = False


def prepare() -> None:
    """What Django must find whoever sets it up: its settings module and a MySQL driver.

    Points Django at ``worker.settings`` (unless told otherwise) and installs
    PyMySQL as ``MySQLdb`` when mysqlclient is missing; imports no Django.
    Archivematica's own ``settings.common``, which the stock worker's
    environment names, counts as not told otherwise: worker.settings extends
    it (AMWORKER_DJANGO_SETTINGS) with amworker's app, which it lacks.

    Separate from :func:`setup` because Archivematica's scripts call
    ``django.setup()`` themselves when imported: a process that imports them
    before it needs Django (the shim's script probe) must have prepared this.
    """
    if os.environ.get("DJANGO_SETTINGS_MODULE", BASE_SETTINGS) == BASE_SETTINGS:
        os.environ["DJANGO_SETTINGS_MODULE"] = "worker.settings"
    _install_mysql_driver()


def setup() -> None:
    """:func:`prepare`, then set Django up (once)."""
    prepare()
    import django
    from django.apps import apps

    if not apps.ready:
        try:
            django.setup()
        except ImportError as exc:
            # Archivematica's settings name apps (tastypie, …) that must be
            # installed where amworker runs: say so, not just a traceback.
            from worker.errors import ConfigError

            raise ConfigError(
                f"Django cannot start with DJANGO_SETTINGS_MODULE="
                f"{os.environ['DJANGO_SETTINGS_MODULE']}: {type(exc).__name__}: {exc} "
                "(install the Python requirements of the settings' apps, e.g. Archivematica's "
                "requirements.txt, into amworker's environment)") from exc
        _tune_sqlite()


def _install_mysql_driver() -> None:
    global _MYSQL_SHIM_INSTALLED
    if _MYSQL_SHIM_INSTALLED:
        return
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        try:
            import pymysql
        except ImportError:
            return
        pymysql.install_as_MySQLdb()
    _MYSQL_SHIM_INSTALLED = True


def _tune_sqlite() -> None:
    """WAL and synchronous=NORMAL: one fsync per checkpoint, not per commit.

    The stock worker spends most of a batch in 128 fsyncs; WAL mode lets the
    readers (the controller, the dashboard) run beside a writing slice.
    """
    from django.db.backends.signals import connection_created

    def pragmas(sender: Any, connection: Any, **_: Any) -> None:
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")

    connection_created.connect(pragmas, weak=False, dispatch_uid="amworker-sqlite-pragmas")


@contextlib.contextmanager
def bounded_waits(seconds: float) -> Iterator[None]:
    """Cap how long the statements inside wait on a locked database at ``seconds``.

    Without this an attempt waits as long as the driver lets it (30 s of
    SQLite busy timeout, forever on a PostgreSQL row lock), whatever time
    the caller has left. Opening the connection here is part of the attempt:
    an unreachable server fails it (connect timeouts in worker.settings).
    The previous limit is put back afterwards, because client scripts share
    this connection and are not bounded by amworker's writes.
    """
    from django.db import DatabaseError, connection

    millis = max(1, math.ceil(seconds * 1000))
    vendor = connection.vendor
    with connection.cursor() as cursor:
        if vendor == "sqlite":
            cursor.execute(f"PRAGMA busy_timeout = {millis}")
        elif vendor == "postgresql":
            # Covers waiting on a row lock as well as a slow statement.
            cursor.execute(f"SET statement_timeout = {millis}")
        elif vendor == "mysql":
            cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {max(1, math.ceil(seconds))}")
    try:
        yield
    finally:
        # A broken connection is closed by the caller's retry anyway.
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            if vendor == "sqlite":
                # The sqlite3 module's ``timeout`` (worker.settings) is the busy timeout.
                configured = float(connection.settings_dict["OPTIONS"].get("timeout", 5))
                cursor.execute(f"PRAGMA busy_timeout = {round(configured * 1000)}")
            elif vendor == "postgresql":
                cursor.execute("RESET statement_timeout")
            elif vendor == "mysql":
                cursor.execute("SET SESSION innodb_lock_wait_timeout = DEFAULT")


def ensure_schema() -> bool:
    """Create the ``Tasks`` table if it does not exist; return True if created."""
    setup()
    from django.db import connection

    from worker.models import Task

    if connection.vendor == "sqlite":
        _ensure_sqlite_directory(connection.settings_dict["NAME"])
    if Task._meta.db_table in connection.introspection.table_names():
        return False
    with connection.schema_editor() as editor:
        editor.create_model(Task)
    return True


def _ensure_sqlite_directory(name: str) -> None:
    directory = os.path.dirname(str(name))
    if directory:
        os.makedirs(directory, exist_ok=True)


def prepare_bookkeeping() -> bool:
    """Ready the ``Tasks`` table for a worker process; False if rows can't be written.

    The embedded SQLite database gets its table created. Any other database
    must already have it (it is Archivematica's): if it does not, that is
    logged once and the worker runs without bookkeeping, because the results
    still reach the controller over Gearman.
    """
    import logging

    from django.db import DatabaseError, connection

    from worker.models import Task

    log = logging.getLogger(__name__)
    setup()
    try:
        if connection.vendor == "sqlite":
            ensure_schema()
            return True
        if Task._meta.db_table in connection.introspection.table_names():
            return True
        log.error("the database has no Tasks table: task rows will not be updated")
        return False
    except DatabaseError as exc:
        # Unreachable now is not missing: the per-slice writes retry.
        log.warning("cannot inspect the database at start (%s); writes will retry", exc)
        return True
    finally:
        connection.close()
