"""Each Celery worker says, in Redis, which script it runs for each function.

A worker started with another modules file (or scripts package) than the
shim would run a different script for the same function. Slices carry the
fingerprint of the entry the shim planned for (:attr:`ScriptEntry.script`)
and a worker refuses a slice whose fingerprint its own registry disagrees
with (``script mismatch``). That is caught per slice, when it is too late for
the batch; this advertisement lets ``amworker check`` and the shim's
start-up compare before any batch arrives.

The worker's main process (signals ``worker_ready``/``worker_shutdown``) keeps
one key, ``amworker:workers:<node name>``, refreshed every
:data:`REFRESH_SECONDS` with a TTL of three refreshes, so a worker that died
without saying goodbye drops out within :data:`TTL_SECONDS`. Reading the
modules file is enough: no script is imported for it.

Imported by worker.celery so that ``celery -A worker worker`` connects the
signals.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

import redis
from celery.signals import worker_ready, worker_shutdown

from worker.config import Settings, current_settings
from worker.contract.keys import PREFIX
from worker.errors import AmworkerError

log = logging.getLogger(__name__)

#: How often a worker rewrites its advertisement.
REFRESH_SECONDS = 30
#: How long an advertisement outlives its last refresh.
TTL_SECONDS = 3 * REFRESH_SECONDS
KEY_PREFIX = f"{PREFIX}:workers:"

_stop = threading.Event()
_threads: list[threading.Thread] = []


def key(node: str) -> str:
    """The Redis key of one worker's advertisement."""
    return f"{KEY_PREFIX}{node}"


def advertisement(settings: Settings) -> dict[str, Any]:
    """What a worker with ``settings`` runs: its modules file and ``{function: script}``."""
    from worker.scripts.registry import load_registry

    registry = load_registry(settings, import_modules=False)
    return {"modules_file": settings.modules_file, "scripts": registry.scripts()}


def advertised(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Every live worker's advertisement, by node name."""
    found: dict[str, dict[str, Any]] = {}
    for name in client.scan_iter(match=f"{KEY_PREFIX}*", count=100):
        raw = client.get(name)
        if raw is None:
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        node = (name.decode() if isinstance(name, bytes) else str(name))[len(KEY_PREFIX):]
        if isinstance(value, dict) and isinstance(value.get("scripts"), dict):
            found[node] = value
    return found


def differences(ours: Mapping[str, str], theirs: Mapping[str, str]) -> list[str]:
    """How a worker's ``{function: script}`` differs from ours, one phrase each."""
    found = []
    for function in sorted(set(ours) | set(theirs)):
        mine, other = ours.get(function), theirs.get(function)
        if mine == other:
            continue
        if other is None:
            found.append(f"{function} missing there")
        elif mine is None:
            found.append(f"{function} = {other} there, unknown here")
        else:
            found.append(f"{function} = {other} there, {mine} here")
    return found


@worker_ready.connect
def _start(sender: Any = None, **_: Any) -> None:
    try:
        settings = current_settings()
        value = json.dumps(advertisement(settings))
    except AmworkerError as exc:
        log.warning("not advertising this worker's scripts: %s", exc)
        return
    node = getattr(sender, "hostname", None) or "unknown"
    client = redis.Redis.from_url(settings.result_backend, socket_connect_timeout=5,
                                  socket_timeout=10)

    def refresh() -> None:
        while True:
            try:
                client.set(key(node), value, ex=TTL_SECONDS)
            except redis.RedisError as exc:
                log.warning("cannot advertise this worker's scripts: %s", exc)
            if _stop.wait(REFRESH_SECONDS):
                break
        try:
            client.delete(key(node))
        except redis.RedisError:
            pass  # it expires by itself

    _stop.clear()
    thread = threading.Thread(target=refresh, name="advertise scripts", daemon=True)
    thread.start()
    _threads.append(thread)


@worker_shutdown.connect
def _stop_advertising(**_: Any) -> None:
    _stop.set()
    for thread in _threads:
        thread.join(5)  # so the key is deleted, not left to expire
