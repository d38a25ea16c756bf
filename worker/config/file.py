"""The optional TOML config file: per-function options and their defaults.

``AMWORKER_CONFIG_FILE`` names it; ``Settings.from_env`` reads it once, after
the environment, and its ``[defaults]`` win over the environment's values.
Anything unknown or malformed is a :class:`~worker.errors.ConfigError`
naming the file, the table and the option. This module knows nothing of
``Settings``: it returns what the file says and the settings apply it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from worker.config import parsers as p
from worker.errors import ConfigError


@dataclass(frozen=True)
class FunctionOptions:
    """Per-function overrides from the config file; ``None`` means "default"."""

    slices: int | None = None
    queue: str | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    max_output_bytes: int | None = None


@dataclass(frozen=True)
class ConfigFile:
    """What a config file says: defaults for every function, and each function's own."""

    #: ``[defaults]``: ``slices`` is never set here (it is per function only).
    defaults: FunctionOptions = FunctionOptions()
    #: ``[functions."name"]`` by lower-cased function name.
    functions: Mapping[str, FunctionOptions] = field(default_factory=lambda: MappingProxyType({}))


#: Each option a table may set, and its parser (TOML values arrive typed:
#: ``str()`` first, so ``true`` or ``2.5`` for a whole number is refused).
_OPTIONS: Mapping[str, Callable[[Any], Any]] = MappingProxyType({
    "slices": lambda v: p.positive_int(str(v)),
    "queue": lambda v: p.queue_name(str(v)),
    "time_limit": lambda v: p.positive_float(str(v)),
    "soft_time_limit": lambda v: p.positive_float(str(v)),
    "max_output_bytes": lambda v: p.positive_int(str(v)),
})


def read_config_file(path: Path) -> ConfigFile:
    """Parse the file at ``path``: its ``[defaults]`` and ``[functions."name"]`` tables."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"AMWORKER_CONFIG_FILE={str(path)!r} cannot be read: {exc}") from None
    unknown_tables = set(document) - {"defaults", "functions"}
    if unknown_tables:
        raise ConfigError(f"{path}: unknown table(s) {sorted(unknown_tables)}")
    defaults = _options(document.get("defaults", {}), f"{path} [defaults]")
    if defaults.slices is not None:
        raise ConfigError(f"{path} [defaults]: slices can only be set per function")
    return ConfigFile(defaults=defaults, functions=_functions(document.get("functions", {}), path))


def _functions(tables: Any, path: Path) -> Mapping[str, FunctionOptions]:
    if not isinstance(tables, dict):
        raise ConfigError(f"{path} [functions]: expected a table of function tables")
    functions: dict[str, FunctionOptions] = {}
    for name, table in tables.items():
        # The controller lower-cases function names, so "Copy" and "copy" are one.
        if name.lower() in functions:
            raise ConfigError(f"{path}: function {name.lower()!r} is configured twice")
        functions[name.lower()] = _options(table, f'{path} [functions."{name}"]')
    return MappingProxyType(functions)


def _options(table: Any, where: str) -> FunctionOptions:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    parsed: dict[str, Any] = {}
    for key, value in table.items():
        parse = _OPTIONS.get(key)
        if parse is None:
            raise ConfigError(f"{where}: unknown option {key!r} (known: {sorted(_OPTIONS)})")
        try:
            parsed[key] = parse(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {key} = {value!r} is not valid: {exc}") from None
    return FunctionOptions(**parsed)
