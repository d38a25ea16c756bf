"""The one table of amworker's environment variables.

Each row says which ``AMWORKER_*`` variable sets which field of
:class:`~worker.config.settings.Settings`, how its text is parsed, its
default, and the ``ARCHIVEMATICA_MCPCLIENT_*`` variable of the stock worker
accepted in its place (see docs/migrating.md). ``Settings.from_env`` reads
the rows in order and :data:`KNOWN_VARIABLES` is their names: a variable
added here is read and accepted, one missing here is refused.

Three fields need more than their row (worker.config.settings says how): the
result backend follows a Redis broker, the database URL may be assembled
from the stock worker's ``ARCHIVEMATICA_MCPCLIENT_CLIENT_*`` parts, and the
fields an Archivematica install implies take their default from
``AMWORKER_ARCHIVEMATICA_HOME`` (worker.archivematica).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from worker.config import defaults as d
from worker.config import parsers as p

T = TypeVar("T")

#: The prefix of the stock worker's variables for its ``[MCPClient]`` settings.
STOCK = "ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_"


@dataclass(frozen=True)
class Variable(Generic[T]):
    """One environment variable: its name, the field it sets, parser, default, fallback."""

    name: str
    #: The Settings field it sets; ``None`` for a variable read only to build
    #: another value (AMWORKER_DATA_DIRECTORY places the embedded database).
    field: str | None
    parse: Callable[[str], T]
    default: T
    #: The stock worker's variable accepted when ``name`` is not set.
    fallback: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Every variable that sets this value, the one that wins first."""
        return (self.name,) if self.fallback is None else (self.name, self.fallback)


def _row(name: str, field: str | None, parse: Callable[[str], T], default: T,
         fallback: str | None = None) -> Variable[Any]:
    return Variable(name, field, parse, default, None if fallback is None else STOCK + fallback)


#: Every variable, in the order they are read (the first bad one is reported).
VARIABLES: tuple[Variable[Any], ...] = (
    # First: it decides the defaults of the fields an install implies.
    _row("AMWORKER_ARCHIVEMATICA_HOME", "archivematica_home", p.text, ""),
    _row("AMWORKER_GEARMAN_SERVERS", "gearman_servers", p.servers, d.DEFAULT_GEARMAN_SERVERS,
         "MCPARCHIVEMATICASERVER"),
    _row("AMWORKER_BROKER_URL", "broker_url", p.broker_url, d.DEFAULT_REDIS_URL),
    # None: the broker's URL when it is Redis, else a start-up error.
    _row("AMWORKER_RESULT_BACKEND", "result_backend", p.url, None),
    # None: the stock worker's database parts, else the embedded SQLite.
    _row("AMWORKER_DATABASE_URL", "database_url", p.url, None),
    # Read by the dev tooling (Makefile, test fixtures) too.
    _row("AMWORKER_DATA_DIRECTORY", None, p.text, d.DEFAULT_DATA_DIRECTORY),
    _row("AMWORKER_IMPORT_PATHS", "import_paths", p.paths, d.DEFAULT_IMPORT_PATHS),
    _row("AMWORKER_DJANGO_SETTINGS", "django_settings", p.dotted_or_empty, ""),
    _row("AMWORKER_MODULES_FILE", "modules_file", p.text, d.BUNDLED_MODULES_FILE,
         "ARCHIVEMATICACLIENTMODULES"),
    _row("AMWORKER_CLIENT_SCRIPTS_PACKAGE", "client_scripts_package", p.dotted,
         d.DEFAULT_CLIENT_SCRIPTS_PACKAGE),
    _row("AMWORKER_SHARED_DIRECTORY", "shared_directory", p.text, d.DEFAULT_SHARED_DIRECTORY,
         "SHAREDDIRECTORYMOUNTED"),
    _row("AMWORKER_CLIENT_ASSETS_DIRECTORY", "client_assets_directory", p.text,
         d.DEFAULT_CLIENT_ASSETS_DIRECTORY, "CLIENTASSETSDIRECTORY"),
    _row("AMWORKER_CLIENT_SCRIPTS_DIRECTORY", "client_scripts_directory", p.text, "",
         "CLIENTSCRIPTSDIRECTORY"),
    _row("AMWORKER_WATCH_DIRECTORY", "watch_directory", p.text, "", "WATCHDIRECTORYPATH"),
    _row("AMWORKER_REJECTED_DIRECTORY", "rejected_directory", p.text, "", "REJECTEDDIRECTORY"),
    _row("AMWORKER_CAPTURE_OUTPUT", "capture_output", p.boolean, True,
         "CAPTURE_CLIENT_SCRIPT_OUTPUT"),
    # Off: a JobContext logger adds to a task's output exactly what the stock
    # worker's does (see worker.client.log_capture). On: every INFO-and-up
    # record, one line each.
    _row("AMWORKER_SCRIPT_LOGS_IN_OUTPUT", "script_logs_in_output", p.boolean, False),
    _row("AMWORKER_SHIM_CONCURRENCY", "shim_concurrency", p.positive_int, d.DEFAULT_SHIM_CONCURRENCY),
    _row("AMWORKER_MAX_OUTPUT_BYTES", "max_output_bytes", p.positive_int, d.DEFAULT_MAX_OUTPUT_BYTES),
    _row("AMWORKER_MAX_PAYLOAD_BYTES", "max_payload_bytes", p.positive_int,
         d.DEFAULT_MAX_PAYLOAD_BYTES),
    _row("AMWORKER_MAX_BATCH_TASKS", "max_batch_tasks", p.positive_int, d.DEFAULT_MAX_BATCH_TASKS),
    _row("AMWORKER_MAX_ARGUMENT_BYTES", "max_argument_bytes", p.positive_int,
         d.DEFAULT_MAX_ARGUMENT_BYTES),
    _row("AMWORKER_MAX_BATCH_ARGUMENT_BYTES", "max_batch_argument_bytes", p.positive_int,
         d.DEFAULT_MAX_BATCH_ARGUMENT_BYTES),
    _row("AMWORKER_QUEUE_WAIT", "queue_wait", p.positive_float, d.DEFAULT_QUEUE_WAIT_SECONDS),
    _row("AMWORKER_TIME_LIMIT", "time_limit", p.positive_float, d.DEFAULT_TIME_LIMIT_SECONDS),
    _row("AMWORKER_SOFT_TIME_LIMIT", "soft_time_limit", p.positive_float, None),
    _row("AMWORKER_LEASE_SECONDS", "lease_seconds", p.positive_float, d.DEFAULT_LEASE_SECONDS),
    _row("AMWORKER_VISIBILITY_TIMEOUT", "visibility_timeout", p.positive_float,
         d.DEFAULT_VISIBILITY_TIMEOUT_SECONDS),
    _row("AMWORKER_RESULT_EXPIRES", "result_expires", p.positive_float,
         d.DEFAULT_RESULT_EXPIRES_SECONDS),
    _row("AMWORKER_REDELIVERY_GRACE", "redelivery_grace", p.positive_float,
         d.DEFAULT_REDELIVERY_GRACE_SECONDS),
    _row("AMWORKER_MAX_TASKS_PER_CHILD", "max_tasks_per_child", p.limit,
         d.DEFAULT_MAX_TASKS_PER_CHILD),
    _row("AMWORKER_MAX_MEMORY_PER_CHILD", "max_memory_per_child", p.limit,
         d.DEFAULT_MAX_MEMORY_PER_CHILD_KIB),
    _row("AMWORKER_DATABASE_WAIT", "database_wait", p.positive_float, d.DEFAULT_DATABASE_WAIT_SECONDS),
    _row("AMWORKER_MAX_LOG_BYTES", "max_log_bytes", p.positive_int, d.DEFAULT_MAX_LOG_BYTES),
    _row("AMWORKER_WORKER_CONCURRENCY", "worker_concurrency", p.positive_int, None),
    _row("AMWORKER_DEFAULT_QUEUE", "default_queue", p.queue_name, d.DEFAULT_QUEUE),
    _row("AMWORKER_METRICS_ADDRESS", "metrics_address", p.text, d.DEFAULT_METRICS_ADDRESS,
         "PROMETHEUS_BIND_ADDRESS"),
    _row("AMWORKER_METRICS_PORT", "metrics_port", p.port, None),
    # The stock worker's job metrics come from the Celery workers here, so its
    # port setting means the workers' endpoint.
    _row("AMWORKER_WORKER_METRICS_PORT", "worker_metrics_port", p.port, None,
         "PROMETHEUS_BIND_PORT"),
    _row("AMWORKER_LOG_LEVEL", "log_level", p.log_level, d.DEFAULT_LOG_LEVEL),
    _row("AMWORKER_LOG_FORMAT", "log_format", p.log_format, d.DEFAULT_LOG_FORMAT),
    _row("AMWORKER_CONFIG_FILE", "config_file", p.text, None),
)

#: Every AMWORKER_ variable a process accepts; anything else is refused.
KNOWN_VARIABLES = frozenset(row.name for row in VARIABLES)

#: The row of each Settings field a variable sets, by field.
BY_FIELD: Mapping[str, Variable[Any]] = MappingProxyType(
    {row.field: row for row in VARIABLES if row.field is not None}
)
