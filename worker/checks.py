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


def check_database() -> Check:
    """Connect to the database and look for a usable ``Tasks`` table."""
    from worker.database import check_tasks_table

    return _guard("database", check_tasks_table)


def check_scripts(settings: Settings) -> list[Check]:
    """Import every client script module; report its slices."""
    from worker import script_imports
    from worker.registry import load_registry

    try:
        script_imports.install()
        registry = load_registry(settings)
    except AmworkerError as exc:
        return [Check("modules file", False, str(exc))]
    checks = [Check("modules file", True, f"{settings.modules_file} ({len(registry)} functions)")]
    for function in sorted(registry):
        entry = registry[function]
        if entry.importable:
            module = f"{settings.client_scripts_package}.{entry.module_name}"
            detail = f"{module} imports; slices {entry.slices_wanted()}"
            checks.append(Check(f"script {function}", True, detail, fatal=False))
        else:
            last = (entry.import_error or "").strip().splitlines()[-1]
            checks.append(Check(f"script {function}", False, last, fatal=False))
    return checks


def check_shared_directory(path: str) -> Check:
    """The shared directory exists and this process can write to it."""

    def probe() -> str:
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{path} does not exist or is not a directory")
        with tempfile.NamedTemporaryFile(dir=path, prefix=".amworker-check-"):
            pass
        return f"{path} exists and is writable"

    return _guard("shared directory", probe, fatal=False)


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order an operator would fix them."""
    from worker import database

    checks = [check_gearmand(server) for server in settings.gearman_servers]
    checks.append(check_redis("broker", settings.broker_url))
    if settings.result_backend != settings.broker_url:
        checks.append(check_redis("result backend", settings.result_backend))
    database.setup()
    checks.append(check_database())
    checks.extend(check_scripts(settings))
    checks.append(check_shared_directory(settings.shared_directory))
    return checks


def require_healthy(settings: Settings) -> None:
    """Refuse to start (ConfigError) on fatal problems; log the rest."""
    failures = []
    for check in run_checks(settings):
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
