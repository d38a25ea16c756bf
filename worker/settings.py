"""Django settings module (``DJANGO_SETTINGS_MODULE=worker.settings``).

Built from :class:`worker.config.Settings` when Django first reads it (at
``django.setup()``), never at amworker import time. Only the database matters:
amworker uses Django for the shared ``Tasks`` table and nothing else.
"""

from __future__ import annotations

from typing import Any

import dj_database_url

from worker.config import Settings


def database_config(url: str) -> dict[str, Any]:
    """Django's DATABASES entry for a database URL."""
    config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=600))
    engine = config["ENGINE"]
    options = dict(config.get("OPTIONS", {}))
    if engine.endswith("sqlite3"):
        # Several pool processes write one file: wait for the lock instead of
        # failing with "database is locked".
        options.setdefault("timeout", 30)
    elif engine.endswith("postgresql"):
        # libpq waits forever on an unreachable host by default; a slice's
        # row write must fail within AMWORKER_DATABASE_WAIT instead.
        options.setdefault("connect_timeout", 10)
    elif engine.endswith("mysql"):
        options.setdefault("charset", "utf8mb4")
        # Archivematica runs MySQL with these; UPDATEs behave the same here.
        options.setdefault("init_command", "SET SESSION sql_mode='STRICT_TRANS_TABLES'")
    config["OPTIONS"] = options
    # A health check before reuse turns "MySQL server has gone away" into a
    # fresh connection instead of a failed write.
    config["CONN_HEALTH_CHECKS"] = True
    return config


_settings = Settings.from_env()

SECRET_KEY = "amworker-has-no-web-views"  # noqa: S105 - no sessions or signing
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["worker.apps.AmworkerConfig"]
DATABASES = {"default": database_config(_settings.database_url)}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGGING_CONFIG = None  # amworker configures logging itself (worker.logs)
