"""The one settings object: every knob amworker has, read and validated at start-up.

:meth:`Settings.from_env` reads the environment through the table
(worker.config.table), merges the TOML file the environment names
(worker.config.file) and returns a frozen :class:`Settings`. A missing or
malformed value raises :class:`~worker.errors.ConfigError` naming the
variable, so a typo stops the process at start-up instead of surprising it
mid-batch. A process calls it once, through
:func:`worker.config.current.current_settings`; nothing here reads
``os.environ`` at import time.

Where Archivematica's stock worker has a variable that means the same thing,
its ``ARCHIVEMATICA_MCPCLIENT_*`` name is accepted as a fallback, so an
existing deployment's environment keeps working (see docs/migrating.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from worker.archivematica import BASE_SETTINGS, derived_defaults, find_layout
from worker.config import defaults as d
from worker.config.environment import Environment, embedded_database_url, stock_database_url
from worker.config.file import ConfigFile, FunctionOptions, read_config_file
from worker.config.parsers import broker_kind, text
from worker.config.table import BY_FIELD, VARIABLES
from worker.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """Every setting of every amworker process. Build with :meth:`from_env`.

    The defaults are worker.config.defaults' (the table's); what each field
    means is in docs/operations.md, under its variable.
    """

    gearman_servers: tuple[str, ...] = d.DEFAULT_GEARMAN_SERVERS
    broker_url: str = d.DEFAULT_REDIS_URL
    result_backend: str = d.DEFAULT_REDIS_URL
    database_url: str = d.DEFAULT_DATABASE_URL
    modules_file: str = d.BUNDLED_MODULES_FILE
    client_scripts_package: str = d.DEFAULT_CLIENT_SCRIPTS_PACKAGE
    shared_directory: str = d.DEFAULT_SHARED_DIRECTORY
    client_assets_directory: str = d.DEFAULT_CLIENT_ASSETS_DIRECTORY
    client_scripts_directory: str = ""
    watch_directory: str = ""
    rejected_directory: str = ""
    capture_output: bool = True
    script_logs_in_output: bool = False
    shim_concurrency: int = d.DEFAULT_SHIM_CONCURRENCY
    max_output_bytes: int = d.DEFAULT_MAX_OUTPUT_BYTES
    max_payload_bytes: int = d.DEFAULT_MAX_PAYLOAD_BYTES
    max_batch_tasks: int = d.DEFAULT_MAX_BATCH_TASKS
    max_argument_bytes: int = d.DEFAULT_MAX_ARGUMENT_BYTES
    max_batch_argument_bytes: int = d.DEFAULT_MAX_BATCH_ARGUMENT_BYTES
    queue_wait: float = d.DEFAULT_QUEUE_WAIT_SECONDS
    time_limit: float = d.DEFAULT_TIME_LIMIT_SECONDS
    soft_time_limit: float | None = None
    lease_seconds: float = d.DEFAULT_LEASE_SECONDS
    visibility_timeout: float = d.DEFAULT_VISIBILITY_TIMEOUT_SECONDS
    result_expires: float = d.DEFAULT_RESULT_EXPIRES_SECONDS
    redelivery_grace: float | None = d.DEFAULT_REDELIVERY_GRACE_SECONDS
    max_tasks_per_child: int | None = d.DEFAULT_MAX_TASKS_PER_CHILD
    max_memory_per_child: int | None = d.DEFAULT_MAX_MEMORY_PER_CHILD_KIB
    database_wait: float = d.DEFAULT_DATABASE_WAIT_SECONDS
    max_log_bytes: int = d.DEFAULT_MAX_LOG_BYTES
    worker_concurrency: int | None = None
    default_queue: str = d.DEFAULT_QUEUE
    metrics_address: str = d.DEFAULT_METRICS_ADDRESS
    metrics_port: int | None = None
    worker_metrics_port: int | None = None
    log_level: str = d.DEFAULT_LOG_LEVEL
    log_format: str = d.DEFAULT_LOG_FORMAT
    config_file: str | None = None
    functions: Mapping[str, FunctionOptions] = field(
        default_factory=lambda: MappingProxyType({})
    )
    #: An Archivematica install (package or source layout) the values below
    #: are derived from (worker.archivematica); "" for none.
    archivematica_home: str = ""
    #: Directories put first on sys.path before any script is imported.
    import_paths: tuple[str, ...] = d.DEFAULT_IMPORT_PATHS
    #: A Django settings module amworker's settings extend ("" for none).
    django_settings: str = ""
    #: Where database_url came from: an AMWORKER_/ARCHIVEMATICA_ variable,
    #: or DATABASE_EMBEDDED when nothing named a database.
    database_from: str = ""
    #: The fields whose value was derived from archivematica_home.
    derived: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.max_argument_bytes > self.max_batch_argument_bytes:
            raise ConfigError(
                f"AMWORKER_MAX_ARGUMENT_BYTES={self.max_argument_bytes} is more than "
                f"AMWORKER_MAX_BATCH_ARGUMENT_BYTES={self.max_batch_argument_bytes}: "
                "one task's arguments could never fit in a batch"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from ``environ`` (default ``os.environ``), then the config file.

        Call it once per process: use :func:`worker.config.current_settings`,
        which does.
        """
        env = Environment(os.environ if environ is None else environ)
        fields = _read_fields(env)
        env.reject_unknown()
        settings = cls(**fields)
        if settings.config_file:
            settings = settings.with_file(read_config_file(Path(settings.config_file)))
        return settings

    def with_file(self, file: ConfigFile) -> Settings:
        """These settings with a config file's functions and ``[defaults]`` applied."""
        own = file.defaults
        return replace(
            self,
            functions=file.functions,
            default_queue=own.queue or self.default_queue,
            time_limit=own.time_limit or self.time_limit,
            soft_time_limit=own.soft_time_limit or self.soft_time_limit,
            max_output_bytes=own.max_output_bytes or self.max_output_bytes,
        )

    @property
    def broker_is_amqp(self) -> bool:
        """True when Celery's broker is RabbitMQ (``amqp://``), not Redis."""
        return broker_kind(self.broker_url) == "amqp"

    def options_for(self, function: str) -> FunctionOptions:
        """The effective options of ``function``: its overrides over the defaults."""
        own = self.functions.get(function, FunctionOptions())
        return FunctionOptions(
            slices=own.slices,
            queue=own.queue or self.default_queue,
            time_limit=own.time_limit or self.time_limit,
            soft_time_limit=own.soft_time_limit or self.soft_time_limit,
            max_output_bytes=own.max_output_bytes or self.max_output_bytes,
        )

    def queues(self) -> tuple[str, ...]:
        """Every Celery queue some function routes to, default first."""
        named = sorted({o.queue for o in self.functions.values() if o.queue} - {self.default_queue})
        return (self.default_queue, *named)


def _read_fields(env: Environment) -> dict[str, Any]:
    """Every Settings field from the environment: the table's rows, then the three composites."""
    home: str = env.read(BY_FIELD["archivematica_home"], "")
    from_home = derived_defaults(find_layout(home) if home else None)
    implied = {**_stock_implied(env), **from_home}
    read = {row.name: env.read(row, implied.get(row.field, row.default) if row.field else row.default)
            for row in VARIABLES}
    fields = {row.field: read[row.name] for row in VARIABLES if row.field is not None}
    fields["result_backend"] = _result_backend(fields["broker_url"], fields["result_backend"])
    fields["database_url"], fields["database_from"] = _database(
        env, fields["database_url"], read["AMWORKER_DATA_DIRECTORY"])
    # A derived value the operator overrode (by either name) is not "derived".
    fields["derived"] = frozenset(f for f in from_home if not env.has(BY_FIELD[f].names))
    return fields


def _stock_implied(env: Environment) -> dict[str, Any]:
    """Archivematica's Django settings, when the stock worker's environment names them."""
    named = env.get("DJANGO_SETTINGS_MODULE", text, "")
    return {"django_settings": BASE_SETTINGS} if named == BASE_SETTINGS else {}


def _result_backend(broker: str, backend: str | None) -> str:
    """AMWORKER_RESULT_BACKEND, else the broker's URL when the broker is Redis.

    Claims, leases, plans and answers live next to the results, and the shim
    waits on Redis pub/sub: with RabbitMQ as the broker there is no URL to
    fall back on, so a missing result backend stops the process at start-up.
    """
    if backend is not None:
        return backend
    if broker_kind(broker) == "redis":
        return broker
    raise ConfigError(
        f"AMWORKER_BROKER_URL is RabbitMQ ({broker.split('://', 1)[0]}://...): set "
        "AMWORKER_RESULT_BACKEND to a redis:// URL too (results, claims and leases live there)"
    )


def _database(env: Environment, url: str | None, data_directory: str) -> tuple[str, str]:
    """AMWORKER_DATABASE_URL, else Archivematica's CLIENT_* parts, else SQLite; and which."""
    if url:
        return url, "AMWORKER_DATABASE_URL"
    stock = stock_database_url(env)
    if stock is not None:
        return stock, "ARCHIVEMATICA_MCPCLIENT_CLIENT_*"
    return embedded_database_url(data_directory), d.DATABASE_EMBEDDED
