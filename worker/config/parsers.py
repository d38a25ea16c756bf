"""Pure parsers from one variable's text to its typed value.

Each raises ``ValueError`` (or ``TypeError``) with a short reason; the caller
(worker.config.environment, worker.config.file) turns it into a
:class:`~worker.errors.ConfigError` that names the variable or the option.
Values arrive already stripped of surrounding whitespace.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
_LOG_FORMATS = frozenset({"text", "json"})

#: Broker URL schemes amworker supports, and the kind of broker each one means.
#: Celery has other transports; amworker's options and tests cover these two.
BROKER_SCHEMES: Mapping[str, str] = MappingProxyType({
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "amqp": "amqp",
    "amqps": "amqp",
    "pyamqp": "amqp",
})

#: Django's database backends the stock worker's ``ENGINE`` may name, as URL schemes.
_ENGINE_SCHEMES: Mapping[str, str] = MappingProxyType({
    "mysql": "mysql", "postgresql": "postgres", "postgresql_psycopg2": "postgres",
})


def text(raw: str) -> str:
    """Any text, as given."""
    return raw


def url(raw: str) -> str:
    """A URL: at least ``scheme://``."""
    if "://" not in raw:
        raise ValueError("expected a URL such as redis://127.0.0.1:6379/0")
    return raw


def broker_kind(value: str) -> str:
    """``"redis"`` or ``"amqp"``: which of the two supported brokers ``value`` names."""
    return BROKER_SCHEMES[value.split("://", 1)[0].lower()]


def broker_url(raw: str) -> str:
    """A Redis or RabbitMQ URL (one of :data:`BROKER_SCHEMES`)."""
    value = url(raw)
    if value.split("://", 1)[0].lower() not in BROKER_SCHEMES:
        raise ValueError("expected a Redis (redis://, rediss://) or RabbitMQ (amqp://, amqps://) URL")
    return value


def port(raw: str) -> int:
    """A TCP port number."""
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("must be a port number from 1 to 65535")
    return value


def servers(raw: str) -> tuple[str, ...]:
    """A comma-separated list of ``host:port``, empty items ignored."""
    found = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not found:
        raise ValueError("expected a comma-separated list of host:port")
    for server in found:
        host, _, number = server.rpartition(":")
        if not host or not number:
            raise ValueError(f"{server!r} is not host:port")
        port(number)
    return found


def boolean(raw: str) -> bool:
    """true/false, yes/no, on/off, 1/0 (any case); empty is false."""
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected one of true/false, yes/no, on/off, 1/0")


def positive_int(raw: str) -> int:
    """A whole number of at least 1."""
    value = int(raw)
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def limit(raw: str) -> int | None:
    """A whole number of at least 1, or 0 for "no limit" (``None``)."""
    value = int(raw)
    if value < 0:
        raise ValueError("must be a whole number, 0 for no limit")
    return value or None


def positive_float(raw: str) -> float:
    """A number of seconds above 0 (``nan`` is refused too)."""
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a number of seconds above 0")
    return value


def dotted(raw: str) -> str:
    """A dotted Python package or module name."""
    if not all(part.isidentifier() for part in raw.split(".")):
        raise ValueError("expected a dotted Python package name")
    return raw


def dotted_or_empty(raw: str) -> str:
    """A dotted name, or empty for "none"."""
    return dotted(raw) if raw else ""


def paths(raw: str) -> tuple[str, ...]:
    """Directories separated by ``os.pathsep``, empty items ignored."""
    return tuple(part for part in raw.split(os.pathsep) if part)


def queue_name(raw: str) -> str:
    """A Celery queue name: not empty, no whitespace."""
    if not raw or any(c.isspace() for c in raw):
        raise ValueError("expected a queue name without spaces")
    return raw


def log_level(raw: str) -> str:
    """A logging level name, upper-cased."""
    level = raw.upper()
    if level not in _LOG_LEVELS:
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def log_format(raw: str) -> str:
    """``text`` or ``json``."""
    if raw not in _LOG_FORMATS:
        raise ValueError("expected text or json")
    return raw


def engine_scheme(raw: str) -> str:
    """Django's ENGINE (``django.db.backends.mysql``) as a database URL scheme."""
    backend = raw.rsplit(".", 1)[-1]
    if backend not in _ENGINE_SCHEMES:
        raise ValueError(f"expected a MySQL or PostgreSQL engine, one of {sorted(_ENGINE_SCHEMES)}")
    return _ENGINE_SCHEMES[backend]
