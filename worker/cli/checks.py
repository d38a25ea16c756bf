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
from collections.abc import Sequence

import redis

from worker.config import DATABASE_EMBEDDED, Settings
from worker.config.display import redact
from worker.errors import AmworkerError, ConfigError
from worker.health import Check, check_database, guard
from worker.scripts.registry import Registry, ScriptEntry

log = logging.getLogger(__name__)


def check_gearmand(server: str) -> Check:
    """Connect to one gearmand and ask for its version."""

    def probe() -> str:
        host, _, port = server.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=3) as sock:
            sock.sendall(b"version\n")
            sock.settimeout(3)
            answer = sock.recv(256).decode("ascii", "replace").strip()
        return f"reachable ({answer or 'no version'})"

    return guard(f"gearmand {server}", probe, fatal=False)


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
        return f"reachable at {redact(url)}{note}"

    return guard(name, probe)


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
        return f"reachable at {redact(settings.broker_url)} ({product}, quorum queues)"

    return guard("broker", probe)


def check_scripts(settings: Settings, registry: Registry | None = None) -> list[Check]:
    """Every client script as the shim sees it: imported by the probe, in a child process."""
    from worker.scripts.probe import probe_registry

    try:
        registry = registry if registry is not None else probe_registry(settings)
    except AmworkerError as exc:
        return [Check("modules file", False, str(exc))]
    except Exception as exc:  # noqa: BLE001 - e.g. a script needs Django and the database URL is bad
        return [Check("modules file", False, f"cannot import the scripts: {type(exc).__name__}: {exc}")]
    checks = [Check("modules file", True, f"{settings.modules_file} ({len(registry)} functions)")]
    for function in sorted(registry):
        entry = registry[function]
        if entry.importable:
            checks.append(Check(f"script {function}", True, f"{entry.script} imports; {_slices(entry)}",
                                fatal=False))
        else:
            last = (entry.import_error or "").strip().splitlines()[-1]
            checks.append(Check(f"script {function}", False, f"{entry.script}: {last}", fatal=False))
    return checks


def _slices(entry: ScriptEntry) -> str:
    """What the module's concurrent_instances says, and any override of it."""
    said = ("no concurrent_instances()" if entry.probed_slices is None
            else f"concurrent_instances() = {entry.probed_slices}")
    if entry.options.slices:
        return f"{said}; slices {entry.options.slices} from the config file"
    return f"{said}; slices {entry.slices_wanted()}"


def check_archivematica(settings: Settings) -> Check | None:
    """What amworker derived from AMWORKER_ARCHIVEMATICA_HOME (``None`` without it)."""
    if not settings.archivematica_home:
        return None
    shown = (
        ("import paths", os.pathsep.join(settings.import_paths), "import_paths"),
        ("modules file", settings.modules_file, "modules_file"),
        ("scripts package", settings.client_scripts_package, "client_scripts_package"),
        ("client assets", settings.client_assets_directory, "client_assets_directory"),
        ("Django settings", f"{settings.django_settings or '-'} + amworker's app", "django_settings"),
    )
    words = [f"{name} {value}{'' if field in settings.derived else ' (set)'}"
             for name, value, field in shown]
    database = ("the Django settings" if settings.database_from == DATABASE_EMBEDDED
                else settings.database_from)
    return Check("Archivematica", True, f"{settings.archivematica_home}: {'; '.join(words)}; "
                 f"database from {database}", fatal=False)


def check_workers(settings: Settings, registry: Registry | None = None) -> list[Check]:
    """Whether every live worker maps each function to the module this modules file does.

    Workers advertise their mapping in Redis (worker.pool.advertise); one that
    disagrees would answer that function's tasks ``script mismatch``.
    """
    from worker.pool import advertise
    from worker.scripts.registry import load_registry

    def probe() -> list[Check]:
        ours = (registry if registry is not None
                else load_registry(settings, import_modules=False)).scripts()
        client = redis.Redis.from_url(settings.result_backend, socket_connect_timeout=3,
                                      socket_timeout=3)
        try:
            found = advertise.advertised(client)
        finally:
            client.close()
        if not found:
            return [Check("workers' scripts", True, "no Celery worker advertises its scripts "
                          "(none running, or older than this release)", fatal=False)]
        lines = []
        for node, value in sorted(found.items()):
            differ = advertise.differences(ours, value["scripts"])
            if differ:
                lines.append(Check(f"worker {node}", False,
                                   f"runs other scripts (modules file {value.get('modules_file')}): "
                                   f"{'; '.join(differ)}; its tasks of those functions fail with "
                                   "'script mismatch'", fatal=False))
            else:
                lines.append(Check(f"worker {node}", True, "same scripts as this modules file",
                                   fatal=False))
        return lines

    try:
        return probe()
    except Exception as exc:  # noqa: BLE001 - a check reports any failure as a line
        return [Check("workers' scripts", False, f"{type(exc).__name__}: {exc}", fatal=False)]


def check_shared_directory(path: str) -> Check:
    """The shared directory exists and this process can write to it."""

    def probe() -> str:
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{path} does not exist or is not a directory")
        with tempfile.NamedTemporaryFile(dir=path, prefix=".amworker-check-"):
            pass
        return f"{path} exists and is writable"

    return guard("shared directory", probe, fatal=False)


def run_checks(settings: Settings, *, with_database: bool = True,
               registry: Registry | None = None) -> list[Check]:
    """Every check, in the order an operator would fix them.

    ``with_database=False`` is for the shim, which never touches the
    database: it starts without Django, and its start-up does not wait on a
    database only the workers need.
    """
    home = check_archivematica(settings)
    checks = [] if home is None else [home]
    checks += [check_gearmand(server) for server in settings.gearman_servers]
    checks.append(check_broker(settings))
    checks.append(check_redis("result backend", settings.result_backend))
    if with_database:
        # Django is readied inside the database check's guard: a bad database
        # URL is one failed line, and every other check still runs.
        checks.extend(check_database(settings.database_url))
    checks.extend(check_scripts(settings, registry))
    checks.extend(check_workers(settings, registry))
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


def require_healthy(settings: Settings, *, with_database: bool = True,
                    registry: Registry | None = None, extra: Sequence[Check] = ()) -> None:
    """Refuse to start (ConfigError) on fatal problems; log the rest.

    ``extra`` are checks made elsewhere (the database, checked by the script
    probe for ``amworker run``).
    """
    failures = []
    for check in [*extra, *run_checks(settings, with_database=with_database, registry=registry)]:
        if check.ok:
            log.debug(check.line())
        elif check.fatal:
            failures.append(check.line())
        else:
            log.warning(check.line())
    if failures:
        raise ConfigError("refusing to start:\n  " + "\n  ".join(failures))

