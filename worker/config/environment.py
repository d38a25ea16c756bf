"""Reading a process environment: typed values that name the culprit on error.

:class:`Environment` wraps the mapping given to ``Settings.from_env`` (the
process's ``os.environ`` unless a test passes its own); nothing here reads
``os.environ`` by itself. A value that does not parse is a
:class:`~worker.errors.ConfigError` naming the variable actually set (the
stock worker's fallback when that is the one), and every ``AMWORKER_*``
variable the table does not know is refused, all named at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from worker.config import defaults as d
from worker.config import parsers as p
from worker.config.table import KNOWN_VARIABLES, Variable
from worker.errors import ConfigError

T = TypeVar("T")

#: The stock worker's database settings, one variable per part; any one set
#: means "this database", with the stock defaults for the others.
STOCK_DATABASE_PARTS = tuple(
    f"ARCHIVEMATICA_MCPCLIENT_CLIENT_{part}"
    for part in ("HOST", "USER", "PASSWORD", "DATABASE", "PORT", "ENGINE")
)


class Environment:
    """Typed access to an environment mapping that names the culprit on error."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def read(self, variable: Variable[T], default: T) -> T:
        """The value of ``variable`` (or its fallback), else ``default``."""
        return self.get(variable.name, variable.parse, default, fallback=variable.fallback)

    def get(self, name: str, parse: Callable[[str], T], default: T, *,
            fallback: str | None = None) -> T:
        """The value of ``name`` (else of ``fallback``) parsed, else ``default``."""
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
        """Refuse every unknown AMWORKER_ variable: a misspelt one silently ignored is a bug report."""
        unknown = sorted(
            key for key in self._environ
            if key.startswith("AMWORKER_") and key not in KNOWN_VARIABLES
        )
        if unknown:
            raise ConfigError(
                f"unknown setting {', '.join(unknown)}; known settings are listed in "
                "docs/operations.md (amworker check shows the effective values)"
            )


def stock_database_url(env: Environment) -> str | None:
    """The URL of the stock worker's ``ARCHIVEMATICA_MCPCLIENT_CLIENT_*`` parts; ``None`` if none is set.

    Unlike Archivematica's own settings, which take an empty
    ``ARCHIVEMATICA_MCPCLIENT_CLIENT_PASSWORD`` for "unset" and fall back to
    ``demo``, an empty value here is the empty password.
    """
    if not env.has(STOCK_DATABASE_PARTS):
        return None
    part = "ARCHIVEMATICA_MCPCLIENT_CLIENT_"
    name = env.get(part + "DATABASE", p.text, d.STOCK_DATABASE_NAME)
    user = quote(env.get(part + "USER", p.text, d.STOCK_DATABASE_USER), safe="")
    password = quote(env.get(part + "PASSWORD", p.text, d.STOCK_DATABASE_PASSWORD), safe="")
    host = env.get(part + "HOST", p.text, d.STOCK_DATABASE_HOST)
    scheme = env.get(part + "ENGINE", p.engine_scheme, d.STOCK_DATABASE_ENGINE)
    port = env.get(part + "PORT", p.port, d.STOCK_DATABASE_PORTS[scheme])
    return f"{scheme}://{user}:{password}@{host}:{port}/{name}"


def embedded_database_url(data_directory: str) -> str:
    """The embedded SQLite database under ``data_directory``, as an absolute URL."""
    return f"sqlite:///{Path(data_directory).absolute() / 'amworker.sqlite3'}"
