"""amworker's settings: one frozen object per process, read from the environment once.

* :mod:`~worker.config.settings`: the :class:`Settings` dataclass and ``from_env``;
* :mod:`~worker.config.table`: every variable, its field, parser, default and fallback;
* :mod:`~worker.config.parsers`: text to typed values;
* :mod:`~worker.config.environment`: reading a mapping, naming the culprit;
* :mod:`~worker.config.file`: the TOML config file;
* :mod:`~worker.config.defaults`: every default, documented;
* :mod:`~worker.config.current`: :func:`current_settings`, read once per process.

Nothing in this package reads ``os.environ`` at import time, and it imports
nothing of the processes that use it (the import contracts in pyproject.toml).
"""

from __future__ import annotations

from worker.config.current import current_settings, reset_settings
from worker.config.defaults import (
    BUNDLED_MODULES_FILE,
    DATABASE_EMBEDDED,
    DEFAULT_DATABASE_WAIT_SECONDS,
    DEFAULT_MAX_LOG_BYTES,
)
from worker.config.file import FunctionOptions
from worker.config.parsers import BROKER_SCHEMES, broker_kind
from worker.config.settings import Settings
from worker.config.table import KNOWN_VARIABLES, VARIABLES, Variable

__all__ = [
    "BROKER_SCHEMES",
    "BUNDLED_MODULES_FILE",
    "DATABASE_EMBEDDED",
    "DEFAULT_DATABASE_WAIT_SECONDS",
    "DEFAULT_MAX_LOG_BYTES",
    "KNOWN_VARIABLES",
    "VARIABLES",
    "FunctionOptions",
    "Settings",
    "Variable",
    "broker_kind",
    "current_settings",
    "reset_settings",
]
