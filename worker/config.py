"""The one settings object: every knob amworker has, read and validated once.

:func:`Settings.from_env` is called when a process starts (shim, Celery worker,
CLI). A missing or malformed value raises :class:`~worker.errors.ConfigError`
naming the variable, so a typo stops the process at start-up instead of
surprising it mid-batch. Nothing here reads ``os.environ`` at import time.

Where Archivematica's stock worker has a variable that means the same thing,
its ``ARCHIVEMATICA_MCPCLIENT_*`` name is accepted as a fallback, so an
existing deployment's environment keeps working (see docs/migrating.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar
from urllib.parse import quote

from worker.archivematica import BASE_SETTINGS, OVERRIDES, derived_defaults, find_layout
from worker.codec.limits import (
    DEFAULT_MAX_ARGUMENT_BYTES,
    DEFAULT_MAX_BATCH_ARGUMENT_BYTES,
    DEFAULT_MAX_BATCH_TASKS,
)
from worker.errors import ConfigError

T = TypeVar("T")

#: The modules file shipped with the bundled client scripts.
BUNDLED_MODULES_FILE = str(Path(__file__).parent / "clientScripts" / "archivematicaClientModules")

#: Gearman's registered port; Archivematica's default server.
DEFAULT_GEARMAN_SERVER = "127.0.0.1:4730"
#: The Redis every machine of this kind runs; also Celery's usual default.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: Archivematica's default shared directory, trailing slash included because
#: argument templates glue paths onto it (``%sharedPath%watchedDirectories/``).
DEFAULT_SHARED_DIRECTORY = "/var/archivematica/sharedDirectory/"
#: Archivematica's default client assets directory.
DEFAULT_CLIENT_ASSETS_DIRECTORY = "/usr/lib/archivematica/MCPClient/assets/"
#: The controller sends many batches at once; 16 keeps a 2-host cluster busy
#: behind one slow batch (all held on one Gearman connection per server).
DEFAULT_SHIM_CONCURRENCY = 16
#: Per job and per stream (stdout, stderr). The controller writes output to
#: files and the DB; a script gone wild must not fill the broker.
DEFAULT_MAX_OUTPUT_BYTES = 8 * 1024 * 1024
#: The largest request accepted; the controller's batches are a few hundred KB.
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
#: How long a slice may wait in a Celery queue before its batch gives up on it.
DEFAULT_QUEUE_WAIT_SECONDS = 3600.0
#: Hard time limit of one slice when a function sets none: long enough for
#: normalising big video, short enough that nothing waits forever.
DEFAULT_TIME_LIMIT_SECONDS = 6 * 3600.0
#: A running slice refreshes its lease this often; a lease left to expire
#: (three missed beats) means the Celery worker running it died.
DEFAULT_LEASE_SECONDS = 10.0
#: Redis re-delivers an unacknowledged message after this long. Slices are
#: acknowledged when they start, so this only bounds how long a message
#: reserved by a worker that then died waits before another worker takes it.
DEFAULT_VISIBILITY_TIMEOUT_SECONDS = 300.0
#: A ceiling on every Redis key's lifetime; the lifetimes themselves are
#: derived from the deadlines (queue wait + time limit + grace, worker.contract.lifetimes).
DEFAULT_RESULT_EXPIRES_SECONDS = 7 * 24 * 3600.0
#: How long an answered batch keeps its slices' results for a re-delivery;
#: ``None`` means ``queue_wait``. A job gearmand hands back (the shim died
#: before gearmand read WORK_COMPLETE) waits in gearmand's queue like any
#: other, so the results must outlive a queue wait or the re-delivery is
#: answered "answered before" instead of with the script's real results.
DEFAULT_REDELIVERY_GRACE_SECONDS: float | None = None
#: A pool process is replaced after this many slices: whatever a script
#: leaks (memory, file handles, module state) is bounded by the recycling.
DEFAULT_MAX_TASKS_PER_CHILD = 500
#: ... or once its resident memory passes this many KiB (checked after each
#: slice, Celery's unit): 1 GiB is several times a pool process at rest.
DEFAULT_MAX_MEMORY_PER_CHILD_KIB = 1024 * 1024
#: The longest a slice waits on a locked or unreachable database for one of
#: its two row writes; past it the start write fails the tasks (the script
#: is not run) and the end write is given up and logged.
DEFAULT_DATABASE_WAIT_SECONDS = 30.0
#: Bytes of a slice's stray output (print(), sys.stdout/sys.stderr, fd 1/2,
#: its children's too) that reach the worker's log; the rest is counted.
DEFAULT_MAX_LOG_BYTES = 64 * 1024
#: The Celery queue slices go to unless their function names another.
DEFAULT_QUEUE = "amworker"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class FunctionOptions:
    """Per-function overrides from the config file; ``None`` means "default"."""

    slices: int | None = None
    queue: str | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    max_output_bytes: int | None = None


@dataclass(frozen=True)
class Settings:
    """Every setting of every amworker process. Build with :meth:`from_env`."""

    gearman_servers: tuple[str, ...] = (DEFAULT_GEARMAN_SERVER,)
    broker_url: str = DEFAULT_REDIS_URL
    result_backend: str = DEFAULT_REDIS_URL
    database_url: str = "sqlite:///var/amworker.sqlite3"
    modules_file: str = BUNDLED_MODULES_FILE
    client_scripts_package: str = "worker.clientScripts"
    shared_directory: str = DEFAULT_SHARED_DIRECTORY
    client_assets_directory: str = DEFAULT_CLIENT_ASSETS_DIRECTORY
    client_scripts_directory: str = ""
    watch_directory: str = ""
    rejected_directory: str = ""
    capture_output: bool = True
    script_logs_in_output: bool = False
    shim_concurrency: int = DEFAULT_SHIM_CONCURRENCY
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_batch_tasks: int = DEFAULT_MAX_BATCH_TASKS
    max_argument_bytes: int = DEFAULT_MAX_ARGUMENT_BYTES
    max_batch_argument_bytes: int = DEFAULT_MAX_BATCH_ARGUMENT_BYTES
    queue_wait: float = DEFAULT_QUEUE_WAIT_SECONDS
    time_limit: float = DEFAULT_TIME_LIMIT_SECONDS
    soft_time_limit: float | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT_SECONDS
    result_expires: float = DEFAULT_RESULT_EXPIRES_SECONDS
    redelivery_grace: float | None = DEFAULT_REDELIVERY_GRACE_SECONDS
    max_tasks_per_child: int | None = DEFAULT_MAX_TASKS_PER_CHILD
    max_memory_per_child: int | None = DEFAULT_MAX_MEMORY_PER_CHILD_KIB
    database_wait: float = DEFAULT_DATABASE_WAIT_SECONDS
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES
    worker_concurrency: int | None = None
    default_queue: str = DEFAULT_QUEUE
    metrics_address: str = "127.0.0.1"
    metrics_port: int | None = None
    worker_metrics_port: int | None = None
    log_level: str = "INFO"
    log_format: str = "text"
    config_file: str | None = None
    functions: Mapping[str, FunctionOptions] = field(
        default_factory=lambda: MappingProxyType({})
    )
    #: An Archivematica install (package or source layout) the values below
    #: are derived from (worker.archivematica); "" for none.
    archivematica_home: str = ""
    #: Directories put first on sys.path before any script is imported.
    import_paths: tuple[str, ...] = ()
    #: A Django settings module amworker's settings extend ("" for none).
    django_settings: str = ""
    #: Where database_url came from: an AMWORKER_/ARCHIVEMATICA_ variable,
    #: or DATABASE_EMBEDDED when nothing named a database.
    database_from: str = ""
    #: The fields whose value was derived from archivematica_home.
    derived: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from ``environ`` (default ``os.environ``)."""
        env = _Env(os.environ if environ is None else environ)
        home = env.get("AMWORKER_ARCHIVEMATICA_HOME", str, "")
        layout = find_layout(home) if home else None
        derived = derived_defaults(layout)
        database_url, database_from = _database_url(env)
        settings = cls(
            gearman_servers=env.get(
                "AMWORKER_GEARMAN_SERVERS",
                _parse_servers,
                (DEFAULT_GEARMAN_SERVER,),
                fallback="ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_MCPARCHIVEMATICASERVER",
            ),
            broker_url=env.get("AMWORKER_BROKER_URL", _parse_broker_url, DEFAULT_REDIS_URL),
            result_backend=_result_backend(env),
            database_url=database_url,
            database_from=database_from,
            archivematica_home=home,
            import_paths=env.get("AMWORKER_IMPORT_PATHS", _parse_paths,
                                 derived.get("import_paths", ())),
            django_settings=env.get("AMWORKER_DJANGO_SETTINGS", _parse_dotted_or_empty,
                                    derived.get("django_settings", _stock_django(env))),
            derived=frozenset(name for name in derived if not env.has(OVERRIDES[name])),
            modules_file=env.get(
                "AMWORKER_MODULES_FILE",
                str,
                derived.get("modules_file", BUNDLED_MODULES_FILE),
                fallback="ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_ARCHIVEMATICACLIENTMODULES",
            ),
            client_scripts_package=env.get(
                "AMWORKER_CLIENT_SCRIPTS_PACKAGE", _parse_dotted,
                derived.get("client_scripts_package", "worker.clientScripts"),
            ),
            shared_directory=env.get(
                "AMWORKER_SHARED_DIRECTORY",
                str,
                DEFAULT_SHARED_DIRECTORY,
                fallback="ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_SHAREDDIRECTORYMOUNTED",
            ),
            client_assets_directory=env.get(
                "AMWORKER_CLIENT_ASSETS_DIRECTORY",
                str,
                derived.get("client_assets_directory", DEFAULT_CLIENT_ASSETS_DIRECTORY),
                fallback="ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_CLIENTASSETSDIRECTORY",
            ),
            client_scripts_directory=env.get(
                "AMWORKER_CLIENT_SCRIPTS_DIRECTORY",
                str,
                "",
                fallback="ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_CLIENTSCRIPTSDIRECTORY",
            ),
            watch_directory=env.get(
                "AMWORKER_WATCH_DIRECTORY",
                str,
                "",
                fallback="ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_WATCHDIRECTORYPATH",
            ),
            rejected_directory=env.get(
                "AMWORKER_REJECTED_DIRECTORY",
                str,
                "",
                fallback="ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_REJECTEDDIRECTORY",
            ),
            capture_output=env.get(
                "AMWORKER_CAPTURE_OUTPUT",
                _parse_bool,
                True,
                fallback="ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_CAPTURE_CLIENT_SCRIPT_OUTPUT",
            ),
            # Off: a JobContext logger adds to a task's output exactly what the
            # stock worker's does (see worker.client.log_capture). On: every
            # INFO-and-up record, one line each.
            script_logs_in_output=env.get(
                "AMWORKER_SCRIPT_LOGS_IN_OUTPUT", _parse_bool, False
            ),
            shim_concurrency=env.get(
                "AMWORKER_SHIM_CONCURRENCY", _positive_int, DEFAULT_SHIM_CONCURRENCY
            ),
            max_output_bytes=env.get(
                "AMWORKER_MAX_OUTPUT_BYTES", _positive_int, DEFAULT_MAX_OUTPUT_BYTES
            ),
            max_payload_bytes=env.get(
                "AMWORKER_MAX_PAYLOAD_BYTES", _positive_int, DEFAULT_MAX_PAYLOAD_BYTES
            ),
            max_batch_tasks=env.get(
                "AMWORKER_MAX_BATCH_TASKS", _positive_int, DEFAULT_MAX_BATCH_TASKS
            ),
            max_argument_bytes=env.get(
                "AMWORKER_MAX_ARGUMENT_BYTES", _positive_int, DEFAULT_MAX_ARGUMENT_BYTES
            ),
            max_batch_argument_bytes=env.get(
                "AMWORKER_MAX_BATCH_ARGUMENT_BYTES",
                _positive_int,
                DEFAULT_MAX_BATCH_ARGUMENT_BYTES,
            ),
            queue_wait=env.get(
                "AMWORKER_QUEUE_WAIT", _positive_float, DEFAULT_QUEUE_WAIT_SECONDS
            ),
            time_limit=env.get(
                "AMWORKER_TIME_LIMIT", _positive_float, DEFAULT_TIME_LIMIT_SECONDS
            ),
            soft_time_limit=env.get("AMWORKER_SOFT_TIME_LIMIT", _positive_float, None),
            lease_seconds=env.get(
                "AMWORKER_LEASE_SECONDS", _positive_float, DEFAULT_LEASE_SECONDS
            ),
            visibility_timeout=env.get(
                "AMWORKER_VISIBILITY_TIMEOUT",
                _positive_float,
                DEFAULT_VISIBILITY_TIMEOUT_SECONDS,
            ),
            result_expires=env.get(
                "AMWORKER_RESULT_EXPIRES", _positive_float, DEFAULT_RESULT_EXPIRES_SECONDS
            ),
            redelivery_grace=env.get(
                "AMWORKER_REDELIVERY_GRACE", _positive_float, DEFAULT_REDELIVERY_GRACE_SECONDS
            ),
            max_tasks_per_child=env.get(
                "AMWORKER_MAX_TASKS_PER_CHILD", _limit, _some(DEFAULT_MAX_TASKS_PER_CHILD)
            ),
            max_memory_per_child=env.get(
                "AMWORKER_MAX_MEMORY_PER_CHILD", _limit, _some(DEFAULT_MAX_MEMORY_PER_CHILD_KIB)
            ),
            database_wait=env.get(
                "AMWORKER_DATABASE_WAIT", _positive_float, DEFAULT_DATABASE_WAIT_SECONDS
            ),
            max_log_bytes=env.get("AMWORKER_MAX_LOG_BYTES", _positive_int, DEFAULT_MAX_LOG_BYTES),
            worker_concurrency=env.get("AMWORKER_WORKER_CONCURRENCY", _positive_int, None),
            default_queue=env.get("AMWORKER_DEFAULT_QUEUE", _parse_name, DEFAULT_QUEUE),
            metrics_address=env.get(
                "AMWORKER_METRICS_ADDRESS",
                str,
                "127.0.0.1",
                fallback="ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_PROMETHEUS_BIND_ADDRESS",
            ),
            metrics_port=env.get("AMWORKER_METRICS_PORT", _parse_port, None),
            # The stock worker's job metrics come from the Celery workers here,
            # so its port setting means the workers' endpoint.
            worker_metrics_port=env.get(
                "AMWORKER_WORKER_METRICS_PORT",
                _parse_port,
                None,
                fallback="ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_PROMETHEUS_BIND_PORT",
            ),
            log_level=env.get("AMWORKER_LOG_LEVEL", _parse_log_level, "INFO"),
            log_format=env.get("AMWORKER_LOG_FORMAT", _parse_log_format, "text"),
            config_file=env.get("AMWORKER_CONFIG_FILE", str, None),
        )
        env.reject_unknown()
        if settings.max_argument_bytes > settings.max_batch_argument_bytes:
            raise ConfigError(
                f"AMWORKER_MAX_ARGUMENT_BYTES={settings.max_argument_bytes} is more than "
                f"AMWORKER_MAX_BATCH_ARGUMENT_BYTES={settings.max_batch_argument_bytes}: "
                "one task's arguments could never fit in a batch"
            )
        if settings.config_file:
            # Imported here: worker.config_file builds on this module's types.
            from worker.config_file import apply_config_file

            settings = apply_config_file(settings, Path(settings.config_file))
        return settings

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


class _Env:
    """Typed access to an environment mapping that names the culprit on error."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(
        self,
        name: str,
        parse: Callable[[str], T],
        default: T,
        *,
        fallback: str | None = None,
    ) -> T:
        key = name if name in self._environ else fallback
        if key is None or key not in self._environ:
            return default
        raw = self._environ[key].strip()
        try:
            return parse(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{key}={raw!r} is not valid: {exc}") from None

    def has(self, names: tuple[str, ...]) -> bool:
        """True if any of ``names`` is set (the value then wins over a derived one)."""
        return any(name in self._environ for name in names)

    def reject_unknown(self) -> None:
        """A misspelt AMWORKER_ variable silently ignored is a bug report waiting."""
        unknown = sorted(
            key
            for key in self._environ
            if key.startswith("AMWORKER_") and key not in KNOWN_VARIABLES
        )
        if unknown:
            raise ConfigError(
                f"unknown setting {', '.join(unknown)}; known settings are listed in "
                "docs/operations.md (amworker check shows the effective values)"
            )


#: Every AMWORKER_ variable a process accepts; anything else is refused.
KNOWN_VARIABLES = frozenset(
    {
        "AMWORKER_GEARMAN_SERVERS",
        "AMWORKER_BROKER_URL",
        "AMWORKER_RESULT_BACKEND",
        "AMWORKER_DATABASE_URL",
        "AMWORKER_MODULES_FILE",
        "AMWORKER_CLIENT_SCRIPTS_PACKAGE",
        "AMWORKER_SHARED_DIRECTORY",
        "AMWORKER_CLIENT_ASSETS_DIRECTORY",
        "AMWORKER_CLIENT_SCRIPTS_DIRECTORY",
        "AMWORKER_WATCH_DIRECTORY",
        "AMWORKER_REJECTED_DIRECTORY",
        "AMWORKER_CAPTURE_OUTPUT",
        "AMWORKER_SCRIPT_LOGS_IN_OUTPUT",
        "AMWORKER_SHIM_CONCURRENCY",
        "AMWORKER_MAX_OUTPUT_BYTES",
        "AMWORKER_MAX_PAYLOAD_BYTES",
        "AMWORKER_MAX_BATCH_TASKS",
        "AMWORKER_MAX_ARGUMENT_BYTES",
        "AMWORKER_MAX_BATCH_ARGUMENT_BYTES",
        "AMWORKER_QUEUE_WAIT",
        "AMWORKER_TIME_LIMIT",
        "AMWORKER_SOFT_TIME_LIMIT",
        "AMWORKER_LEASE_SECONDS",
        "AMWORKER_VISIBILITY_TIMEOUT",
        "AMWORKER_RESULT_EXPIRES",
        "AMWORKER_REDELIVERY_GRACE",
        "AMWORKER_MAX_TASKS_PER_CHILD",
        "AMWORKER_MAX_MEMORY_PER_CHILD",
        "AMWORKER_DATABASE_WAIT",
        "AMWORKER_MAX_LOG_BYTES",
        "AMWORKER_WORKER_CONCURRENCY",
        "AMWORKER_DEFAULT_QUEUE",
        "AMWORKER_METRICS_ADDRESS",
        "AMWORKER_METRICS_PORT",
        "AMWORKER_WORKER_METRICS_PORT",
        "AMWORKER_LOG_LEVEL",
        "AMWORKER_LOG_FORMAT",
        "AMWORKER_CONFIG_FILE",
        "AMWORKER_ARCHIVEMATICA_HOME",
        "AMWORKER_IMPORT_PATHS",
        "AMWORKER_DJANGO_SETTINGS",
        # Read by the dev tooling (Makefile, test fixtures), not by processes.
        "AMWORKER_DATA_DIRECTORY",
    }
)


def _parse_servers(raw: str) -> tuple[str, ...]:
    servers = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not servers:
        raise ValueError("expected a comma-separated list of host:port")
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port:
            raise ValueError(f"{server!r} is not host:port")
        _parse_port(port)
    return servers


def _parse_url(raw: str) -> str:
    if "://" not in raw:
        raise ValueError("expected a URL such as redis://127.0.0.1:6379/0")
    return raw


#: Broker URL schemes amworker supports, and the kind of broker each one means.
BROKER_SCHEMES = {
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "amqp": "amqp",
    "amqps": "amqp",
    "pyamqp": "amqp",
}


def broker_kind(url: str) -> str:
    """``"redis"`` or ``"amqp"``: which of the two supported brokers ``url`` names."""
    return BROKER_SCHEMES[url.split("://", 1)[0].lower()]


def _parse_broker_url(raw: str) -> str:
    url = _parse_url(raw)
    if url.split("://", 1)[0].lower() not in BROKER_SCHEMES:
        # Celery has other transports; amworker's options and tests cover these two.
        raise ValueError("expected a Redis (redis://, rediss://) or RabbitMQ (amqp://, amqps://) URL")
    return url


def _result_backend(env: _Env) -> str:
    """AMWORKER_RESULT_BACKEND, else the broker's URL when the broker is Redis.

    Claims, leases, plans and answers live next to the results, and the shim
    waits on Redis pub/sub: with RabbitMQ as the broker there is no URL to
    fall back on, so a missing result backend stops the process at start-up.
    """
    broker = env.get("AMWORKER_BROKER_URL", _parse_broker_url, DEFAULT_REDIS_URL)
    if broker_kind(broker) == "redis":
        return env.get("AMWORKER_RESULT_BACKEND", _parse_url, broker)
    backend = env.get("AMWORKER_RESULT_BACKEND", _parse_url, None)
    if backend is None:
        raise ConfigError(
            f"AMWORKER_BROKER_URL is RabbitMQ ({broker.split('://', 1)[0]}://...): set "
            "AMWORKER_RESULT_BACKEND to a redis:// URL too (results, claims and leases live there)"
        )
    return backend


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected one of true/false, yes/no, on/off, 1/0")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def _some(value: int) -> int | None:
    """A default typed as a limit that may be off (what :func:`_limit` returns)."""
    return value


def _limit(raw: str) -> int | None:
    """A whole number of at least 1, or 0 for "no limit"."""
    value = int(raw)
    if value < 0:
        raise ValueError("must be a whole number, 0 for no limit")
    return value or None


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a number of seconds above 0")
    return value


def _parse_port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("must be a port number from 1 to 65535")
    return value


def _parse_dotted(raw: str) -> str:
    if not all(part.isidentifier() for part in raw.split(".")):
        raise ValueError("expected a dotted Python package name")
    return raw


def _stock_django(env: _Env) -> str:
    """Archivematica's settings when the stock worker's environment names them."""
    named = env.get("DJANGO_SETTINGS_MODULE", str, "")
    return named if named == BASE_SETTINGS else ""


def _parse_dotted_or_empty(raw: str) -> str:
    return _parse_dotted(raw) if raw else ""


def _parse_paths(raw: str) -> tuple[str, ...]:
    return tuple(part for part in raw.split(os.pathsep) if part)


def _parse_name(raw: str) -> str:
    if not raw or any(c.isspace() for c in raw):
        raise ValueError("expected a queue name without spaces")
    return raw


def _parse_log_level(raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _parse_log_format(raw: str) -> str:
    if raw not in {"text", "json"}:
        raise ValueError("expected text or json")
    return raw


#: database_from when no variable names a database.
DATABASE_EMBEDDED = "embedded SQLite"
_STOCK_DATABASE_PARTS = tuple(
    f"ARCHIVEMATICA_MCPCLIENT_CLIENT_{part}"
    for part in ("HOST", "USER", "PASSWORD", "DATABASE", "PORT", "ENGINE")
)


def _database_url(env: _Env) -> tuple[str, str]:
    """AMWORKER_DATABASE_URL, else Archivematica's CLIENT_* parts, else SQLite; and which.

    Unlike Archivematica's own settings, which take an empty
    ``ARCHIVEMATICA_MCPCLIENT_CLIENT_PASSWORD`` for "unset" and fall back to
    ``demo``, an empty value here is the empty password.
    """
    url = env.get("AMWORKER_DATABASE_URL", _parse_url, None)
    if url:
        return url, "AMWORKER_DATABASE_URL"
    if not env.has(_STOCK_DATABASE_PARTS):
        data = env.get("AMWORKER_DATA_DIRECTORY", str, "var")
        return f"sqlite:///{Path(data).absolute() / 'amworker.sqlite3'}", DATABASE_EMBEDDED
    # The stock worker's defaults for whatever part is not set.
    name = env.get("ARCHIVEMATICA_MCPCLIENT_CLIENT_DATABASE", str, "MCP")
    user = quote(env.get("ARCHIVEMATICA_MCPCLIENT_CLIENT_USER", str, "archivematica"), safe="")
    password = quote(env.get("ARCHIVEMATICA_MCPCLIENT_CLIENT_PASSWORD", str, "demo"), safe="")
    host = env.get("ARCHIVEMATICA_MCPCLIENT_CLIENT_HOST", str, "localhost")
    scheme = env.get("ARCHIVEMATICA_MCPCLIENT_CLIENT_ENGINE", _engine_scheme, "mysql")
    default_port = 5432 if scheme == "postgres" else 3306
    port = env.get("ARCHIVEMATICA_MCPCLIENT_CLIENT_PORT", _parse_port, default_port)
    return (f"{scheme}://{user}:{password}@{host}:{port}/{name}",
            "ARCHIVEMATICA_MCPCLIENT_CLIENT_*")


def _engine_scheme(raw: str) -> str:
    """Django's ENGINE (``django.db.backends.mysql``) as a database URL scheme."""
    schemes = {"mysql": "mysql", "postgresql": "postgres", "postgresql_psycopg2": "postgres"}
    backend = raw.rsplit(".", 1)[-1]
    if backend not in schemes:
        raise ValueError(f"expected a MySQL or PostgreSQL engine, one of {sorted(schemes)}")
    return schemes[backend]
