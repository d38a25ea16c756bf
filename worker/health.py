"""Health lines: one fact an operator can act on, ok or not.

``amworker check``, the start-up checks and the script probe's child all
report in :class:`Check` lines; the database check lives here because both
the CLI and the probe's child (which already has Django loaded) run it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from worker.errors import ConfigError


@dataclass(frozen=True)
class Check:
    """One line of ``amworker check``."""

    name: str
    ok: bool
    detail: str
    fatal: bool = True

    def line(self) -> str:
        """``[ ok ] name: detail`` or ``[FAIL] name: detail``."""
        return f"[{' ok ' if self.ok else 'FAIL'}] {self.name}: {self.detail}"


def guard(name: str, probe: Callable[[], str], *, fatal: bool = True) -> Check:
    try:
        return Check(name, True, probe(), fatal)
    except ConfigError as exc:  # amworker's own errors are already worded for the operator
        return Check(name, False, str(exc), fatal)
    except Exception as exc:  # noqa: BLE001 - a check reports any failure as a line
        return Check(name, False, f"{type(exc).__name__}: {exc}", fatal)


def check_database(url: str) -> list[Check]:
    """Connect to the database; then look for a usable ``Tasks`` table."""
    from worker import database

    def connect() -> str:
        from django.db import connection

        _check_database_url(url)
        database.setup()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return f"reachable ({connection.vendor}, {connection.settings_dict.get('NAME')})"

    reached = guard("database", connect)
    if not reached.ok:
        return [reached]
    # Not fatal: without the table, workers run and answer the controller,
    # only the rows go unwritten (logged by each worker).
    return [reached, guard("Tasks table", _tasks_table, fatal=False)]


def _check_database_url(url: str) -> None:
    """Name the setting when its scheme is unknown, instead of dj-database-url's error."""
    import dj_database_url

    try:
        dj_database_url.parse(url)
    except ValueError as exc:
        scheme = url.split("://", 1)[0]
        raise ConfigError(f"AMWORKER_DATABASE_URL: cannot use a {scheme}:// URL "
                          "(use sqlite://, postgres:// or mysql://)") from exc


def _tasks_table() -> str:
    from django.db import connection

    from worker.models import Task

    table = Task._meta.db_table
    if table not in connection.introspection.table_names():
        raise LookupError(f"table {table} does not exist (amworker init-db creates it)")
    return f"usable ({Task.objects.count()} rows)"
