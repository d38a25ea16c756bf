"""Every default amworker's settings fall back on, each documented where it is defined.

A value here applies when neither the ``AMWORKER_*`` variable nor its
``ARCHIVEMATICA_MCPCLIENT_*`` fallback is set (worker.config.table says which
variable sets what). The decoded-size caps are defined next to the code that
enforces them (worker.codec.limits) and re-exported here, so this module
lists every default.
"""

from __future__ import annotations

from pathlib import Path

from worker.codec.limits import (
    DEFAULT_MAX_ARGUMENT_BYTES,
    DEFAULT_MAX_BATCH_ARGUMENT_BYTES,
    DEFAULT_MAX_BATCH_TASKS,
)

__all__ = [
    "BUNDLED_MODULES_FILE",
    "DATABASE_EMBEDDED",
    "DEFAULT_CLIENT_ASSETS_DIRECTORY",
    "DEFAULT_CLIENT_SCRIPTS_PACKAGE",
    "DEFAULT_DATABASE_URL",
    "DEFAULT_DATABASE_WAIT_SECONDS",
    "DEFAULT_DATA_DIRECTORY",
    "DEFAULT_GEARMAN_SERVER",
    "DEFAULT_GEARMAN_SERVERS",
    "DEFAULT_IMPORT_PATHS",
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_LOG_FORMAT",
    "DEFAULT_LOG_LEVEL",
    "DEFAULT_MAX_ARGUMENT_BYTES",
    "DEFAULT_MAX_BATCH_ARGUMENT_BYTES",
    "DEFAULT_MAX_BATCH_TASKS",
    "DEFAULT_MAX_LOG_BYTES",
    "DEFAULT_MAX_MEMORY_PER_CHILD_KIB",
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_MAX_TASKS_PER_CHILD",
    "DEFAULT_METRICS_ADDRESS",
    "DEFAULT_QUEUE",
    "DEFAULT_QUEUE_WAIT_SECONDS",
    "DEFAULT_REDELIVERY_GRACE_SECONDS",
    "DEFAULT_REDIS_URL",
    "DEFAULT_RESULT_EXPIRES_SECONDS",
    "DEFAULT_SHARED_DIRECTORY",
    "DEFAULT_SHIM_CONCURRENCY",
    "DEFAULT_TIME_LIMIT_SECONDS",
    "DEFAULT_VISIBILITY_TIMEOUT_SECONDS",
    "STOCK_DATABASE_ENGINE",
    "STOCK_DATABASE_HOST",
    "STOCK_DATABASE_NAME",
    "STOCK_DATABASE_PASSWORD",
    "STOCK_DATABASE_PORTS",
    "STOCK_DATABASE_USER",
]

#: The modules file shipped with the bundled client scripts.
BUNDLED_MODULES_FILE = str(Path(__file__).parent.parent / "clientScripts" / "archivematicaClientModules")
#: The package of the bundled client scripts.
DEFAULT_CLIENT_SCRIPTS_PACKAGE = "worker.clientScripts"

#: Gearman's registered port; Archivematica's default server.
DEFAULT_GEARMAN_SERVER = "127.0.0.1:4730"
#: The gearmand servers the shim serves: the default one alone.
DEFAULT_GEARMAN_SERVERS: tuple[str, ...] = (DEFAULT_GEARMAN_SERVER,)
#: No directories put first on ``sys.path`` unless an install implies them.
DEFAULT_IMPORT_PATHS: tuple[str, ...] = ()
#: The Redis every machine of this kind runs; also Celery's usual default.
#: The result backend defaults to the broker's URL when the broker is Redis.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: Archivematica's default shared directory, trailing slash included because
#: argument templates glue paths onto it (``%sharedPath%watchedDirectories/``).
DEFAULT_SHARED_DIRECTORY = "/var/archivematica/sharedDirectory/"
#: Archivematica's default client assets directory.
DEFAULT_CLIENT_ASSETS_DIRECTORY = "/usr/lib/archivematica/MCPClient/assets/"

#: Where the embedded SQLite database lives when no variable names a database
#: (``AMWORKER_DATA_DIRECTORY``, read by the dev tooling too). Relative to the
#: working directory; made absolute when the settings are read.
DEFAULT_DATA_DIRECTORY = "var"
#: ``Settings()`` built by hand (tests) uses this database; the one read from
#: the environment is absolute (see DEFAULT_DATA_DIRECTORY).
DEFAULT_DATABASE_URL = "sqlite:///var/amworker.sqlite3"
#: ``Settings.database_from`` when no variable names a database.
DATABASE_EMBEDDED = "embedded SQLite"

#: The stock worker's values for ``ARCHIVEMATICA_MCPCLIENT_CLIENT_*`` parts
#: that are not set, once any of them is: its database name, user, password
#: (Archivematica's development default) and host.
STOCK_DATABASE_NAME = "MCP"
STOCK_DATABASE_USER = "archivematica"
STOCK_DATABASE_PASSWORD = "demo"  # noqa: S105 - the stock worker's documented default
STOCK_DATABASE_HOST = "localhost"
#: The stock worker's engine when ``ARCHIVEMATICA_MCPCLIENT_CLIENT_ENGINE`` is
#: not set, as a database URL scheme.
STOCK_DATABASE_ENGINE = "mysql"
#: Each server database's usual port, by URL scheme.
STOCK_DATABASE_PORTS = {"mysql": 3306, "postgres": 5432}

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
#: normalising big video, short enough that nothing waits forever. There is
#: no default soft time limit (``None``): scripts are not interrupted early.
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
DEFAULT_MAX_TASKS_PER_CHILD: int | None = 500
#: ... or once its resident memory passes this many KiB (checked after each
#: slice, Celery's unit): 1 GiB is several times a pool process at rest.
DEFAULT_MAX_MEMORY_PER_CHILD_KIB: int | None = 1024 * 1024
#: The longest a slice waits on a locked or unreachable database for one of
#: its two row writes; past it the start write fails the tasks (the script
#: is not run) and the end write is given up and logged.
DEFAULT_DATABASE_WAIT_SECONDS = 30.0
#: Bytes of a slice's stray output (print(), sys.stdout/sys.stderr, fd 1/2,
#: its children's too) that reach the worker's log; the rest is counted.
DEFAULT_MAX_LOG_BYTES = 64 * 1024
#: The Celery queue slices go to unless their function names another. Celery
#: picks its pool size (the host's cores) when no concurrency is set (``None``).
DEFAULT_QUEUE = "amworker"
#: Both metrics endpoints listen on the loopback only unless told otherwise;
#: neither listens at all unless its port is set (``None`` by default).
DEFAULT_METRICS_ADDRESS = "127.0.0.1"
#: amworker's log level and format (``text`` or ``json``).
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_LOG_FORMAT = "text"
