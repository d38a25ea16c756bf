"""``amworker check`` and the start-up checks of the shim and ``amworker run``.

Each check returns one line an operator can act on. ``require_healthy``
refuses to start on what cannot heal by itself (a broker or database that
cannot be reached, a modules file that cannot be read); an unreachable
gearmand is only a warning there, because the shim reconnects with backoff.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import redis

from worker.config import Settings
from worker.errors import AmworkerError, ConfigError
from worker.registry import ScriptEntry

log = logging.getLogger(__name__)


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


def _guard(name: str, probe: Callable[[], str], *, fatal: bool = True) -> Check:
    try:
        return Check(name, True, probe(), fatal)
    except Exception as exc:  # noqa: BLE001 - a check reports any failure as a line
        return Check(name, False, f"{type(exc).__name__}: {exc}", fatal)


def check_gearmand(server: str) -> Check:
    """Connect to one gearmand and ask for its version."""

    def probe() -> str:
        host, _, port = server.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=3) as sock:
            sock.sendall(b"version\n")
            sock.settimeout(3)
            answer = sock.recv(256).decode("ascii", "replace").strip()
        return f"reachable ({answer or 'no version'})"

    return _guard(f"gearmand {server}", probe, fatal=False)


def check_redis(name: str, url: str) -> Check:
    """PING a Redis URL."""

    def probe() -> str:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
            policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "?")
        finally:
            client.close()
        note = ""
        if policy not in ("noeviction", "?"):
            note = f" (WARNING: maxmemory-policy={policy}; a broker needs noeviction)"
        return f"reachable at {_redact(url)}{note}"

    return _guard(name, probe)


def check_broker(settings: Settings) -> Check:
    """PING a Redis broker; open (and close) a connection to a RabbitMQ one."""
    if not settings.broker_is_amqp:
        return check_redis("broker", settings.broker_url)

    def probe() -> str:
        from kombu.connection import Connection

        with Connection(settings.broker_url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
            server = connection.connection.server_properties
            product = f"{server.get('product', 'AMQP')} {server.get('version', '?')}"
        return f"reachable at {_redact(settings.broker_url)} ({product}, quorum queues)"

    return _guard("broker", probe)


def check_database() -> list[Check]:
    """Connect to the database; then look for a usable ``Tasks`` table."""
    from worker import database

    def connect() -> str:
        from django.db import connection

        database.setup()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return f"reachable ({connection.vendor}, {connection.settings_dict.get('NAME')})"

    reached = _guard("database", connect)
    if not reached.ok:
        return [reached]
    # Not fatal: without the table, workers run and answer the controller,
    # only the rows go unwritten (logged by each worker).
    return [reached, _guard("Tasks table", _tasks_table, fatal=False)]


def _tasks_table() -> str:
    from django.db import connection

    from worker.models import Task

    table = Task._meta.db_table
    if table not in connection.introspection.table_names():
        raise LookupError(f"table {table} does not exist (amworker init-db creates it)")
    return f"usable ({Task.objects.count()} rows)"


def check_scripts(settings: Settings) -> list[Check]:
    """Import every client script module; report what its concurrent_instances says."""
    from worker import database, script_imports
    from worker.registry import load_registry

    try:
        script_imports.install()
        registry = load_registry(settings, ready_django=database.setup)
    except AmworkerError as exc:
        return [Check("modules file", False, str(exc))]
    checks = [Check("modules file", True, f"{settings.modules_file} ({len(registry)} functions)")]
    for function in sorted(registry):
        entry = registry[function]
        module = f"{settings.client_scripts_package}.{entry.module_name}"
        if entry.importable:
            checks.append(Check(f"script {function}", True, f"{module} imports; {_slices(entry)}",
                                fatal=False))
        else:
            last = (entry.import_error or "").strip().splitlines()[-1]
            checks.append(Check(f"script {function}", False, f"{module}: {last}", fatal=False))
    return checks


def _slices(entry: ScriptEntry) -> str:
    """What the module's concurrent_instances says, and any override of it."""
    hook = getattr(entry.module, "concurrent_instances", None)
    try:
        said = "no concurrent_instances()" if hook is None else f"concurrent_instances() = {hook()}"
    except Exception as exc:  # noqa: BLE001 - a buggy hook is reported, as batches treat it
        said = f"concurrent_instances() raised {type(exc).__name__}: {exc}"
    if entry.options.slices:
        return f"{said}; slices {entry.options.slices} from the config file"
    return f"{said}; slices {entry.slices_wanted()}"


def check_shared_directory(path: str) -> Check:
    """The shared directory exists and this process can write to it."""

    def probe() -> str:
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{path} does not exist or is not a directory")
        with tempfile.NamedTemporaryFile(dir=path, prefix=".amworker-check-"):
            pass
        return f"{path} exists and is writable"

    return _guard("shared directory", probe, fatal=False)


def run_checks(settings: Settings, *, with_database: bool = True) -> list[Check]:
    """Every check, in the order an operator would fix them.

    ``with_database=False`` is for the shim, which never touches the
    database: it starts without Django, and its start-up does not wait on a
    database only the workers need.
    """
    checks = [check_gearmand(server) for server in settings.gearman_servers]
    checks.append(check_broker(settings))
    checks.append(check_redis("result backend", settings.result_backend))
    if with_database:
        from worker import database

        database.setup()
        checks.extend(check_database())
    checks.extend(check_scripts(settings))
    checks.append(check_shared_directory(settings.shared_directory))
    checks.append(check_timeouts(settings))
    return checks


def check_timeouts(settings: Settings) -> Check:
    """The queue wait must outlast the visibility timeout.

    A slice reserved by a worker that then died is handed to another worker
    only after the visibility timeout; a batch that gives up waiting sooner
    fails a slice that would still have run.
    """
    if settings.queue_wait > settings.visibility_timeout:
        return Check("timeouts", True,
                     f"queue wait {settings.queue_wait:.0f}s > visibility timeout "
                     f"{settings.visibility_timeout:.0f}s", fatal=False)
    return Check("timeouts", False,
                 f"AMWORKER_QUEUE_WAIT ({settings.queue_wait:.0f}s) should exceed "
                 f"AMWORKER_VISIBILITY_TIMEOUT ({settings.visibility_timeout:.0f}s), or a slice "
                 "reserved by a dead worker is given up before it can be restored", fatal=False)


def require_healthy(settings: Settings, *, with_database: bool = True) -> None:
    """Refuse to start (ConfigError) on fatal problems; log the rest."""
    failures = []
    for check in run_checks(settings, with_database=with_database):
        if check.ok:
            log.debug(check.line())
        elif check.fatal:
            failures.append(check.line())
        else:
            log.warning(check.line())
    if failures:
        raise ConfigError("refusing to start:\n  " + "\n  ".join(failures))


def _redact(url: str) -> str:
    """Hide a password in a URL before printing it."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
