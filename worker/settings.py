"""Django settings module (``DJANGO_SETTINGS_MODULE=worker.settings``).

Built from the process's :class:`worker.config.Settings` (``current_settings()``,
the object Celery and the CLI use too) when Django first reads it (at
``django.setup()``), never at amworker import time.

Alone, it holds amworker's ``Tasks`` mapping and the database of
``AMWORKER_DATABASE_URL``. With ``AMWORKER_DJANGO_SETTINGS`` (derived from
``AMWORKER_ARCHIVEMATICA_HOME`` as Archivematica's ``settings.common``) it is
that module's settings plus amworker's app, so Archivematica's scripts find
their models and settings, and no operator writes a settings file. Two things
of the base module are corrected on the way in:

* **logging**: Archivematica's settings run ``logging.config.dictConfig`` when
  imported, replacing the root logger's handlers and level. amworker's own
  handler (worker.logs) is already there, so every line came out twice, in
  two formats. The root logger's handlers and level are put back as they
  were; the base's named loggers keep their levels.
* **the database**: Archivematica's settings read an empty
  ``ARCHIVEMATICA_MCPCLIENT_CLIENT_PASSWORD`` as unset and use ``demo``. When
  a variable names the database (``AMWORKER_DATABASE_URL`` or any
  ``ARCHIVEMATICA_MCPCLIENT_CLIENT_*``), amworker's reading of it wins; when
  none does, the base's own (its config files and defaults) stays.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import dj_database_url

from worker.archivematica import install_import_paths
from worker.config import DATABASE_EMBEDDED, Settings, current_settings
from worker.errors import ConfigError

#: amworker's Django app (its label, ``amworker``, does not clash with Archivematica's ``main``).
APP = "worker.apps.AmworkerConfig"


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


def base_settings(name: str) -> dict[str, Any]:
    """The upper-case names of settings module ``name``, its logging left untouched."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        raise ConfigError(f"AMWORKER_DJANGO_SETTINGS={name!r} cannot be imported: "
                          f"{type(exc).__name__}: {exc}") from exc
    finally:
        # Undo a dictConfig (or fileConfig) the module ran: see the docstring.
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
    return {key: getattr(module, key) for key in dir(module) if key.isupper()}


def build(settings: Settings) -> dict[str, Any]:
    """Every Django setting of an amworker process."""
    own: dict[str, Any] = {
        "SECRET_KEY": "amworker-has-no-web-views",  # noqa: S105 - no sessions or signing
        "DEBUG": False,
        "USE_TZ": True,
        "TIME_ZONE": "UTC",
        "INSTALLED_APPS": [APP],
        "DATABASES": {"default": database_config(settings.database_url)},
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
        "LOGGING_CONFIG": None,  # amworker configures logging itself (worker.logs)
    }
    if not settings.django_settings:
        return own
    install_import_paths(settings.import_paths)
    merged = base_settings(settings.django_settings)
    apps = list(merged.get("INSTALLED_APPS", ()))
    merged["INSTALLED_APPS"] = [*apps, APP] if APP not in apps else apps
    merged["LOGGING_CONFIG"] = None
    merged.setdefault("DEFAULT_AUTO_FIELD", own["DEFAULT_AUTO_FIELD"])
    if settings.database_from != DATABASE_EMBEDDED:
        merged["DATABASES"] = {**merged.get("DATABASES", {}), "default": own["DATABASES"]["default"]}
    elif "DATABASES" not in merged:
        merged["DATABASES"] = own["DATABASES"]
    return merged


globals().update(build(current_settings()))
