"""The optional TOML config file: per-function options and their defaults.

:meth:`worker.config.Settings.from_env` merges it when ``AMWORKER_CONFIG_FILE``
names one. Like the environment, it is read once at start-up and anything
unknown or malformed is a :class:`~worker.errors.ConfigError` naming the
file, the table and the option.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from worker.config import FunctionOptions, Settings, _parse_name, _positive_float, _positive_int
from worker.errors import ConfigError

_OPTION_TYPES: Mapping[str, Callable[[Any], Any]] = {
    "slices": lambda v: _positive_int(str(v)),
    "queue": lambda v: _parse_name(str(v)),
    "time_limit": lambda v: _positive_float(str(v)),
    "soft_time_limit": lambda v: _positive_float(str(v)),
    "max_output_bytes": lambda v: _positive_int(str(v)),
}


def apply_config_file(settings: Settings, path: Path) -> Settings:
    """Merge the TOML file's ``[defaults]`` and ``[functions."name"]`` tables."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"AMWORKER_CONFIG_FILE={str(path)!r} cannot be read: {exc}") from None
    unknown_tables = set(document) - {"defaults", "functions"}
    if unknown_tables:
        raise ConfigError(f"{path}: unknown table(s) {sorted(unknown_tables)}")
    defaults = _parse_options(document.get("defaults", {}), f"{path} [defaults]")
    tables = document.get("functions", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path} [functions]: expected a table of function tables")
    functions: dict[str, FunctionOptions] = {}
    for name, table in tables.items():
        # The controller lower-cases function names, so "Copy" and "copy" are one.
        if name.lower() in functions:
            raise ConfigError(f"{path}: function {name.lower()!r} is configured twice")
        functions[name.lower()] = FunctionOptions(
            **_parse_options(table, f'{path} [functions."{name}"]')
        )
    overrides: dict[str, Any] = {"functions": MappingProxyType(functions)}
    for key, value in defaults.items():
        target = "default_queue" if key == "queue" else key
        if target == "slices":
            raise ConfigError(f"{path} [defaults]: slices can only be set per function")
        overrides[target] = value
    return replace(settings, **overrides)


def _parse_options(table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    parsed: dict[str, Any] = {}
    for key, value in table.items():
        parse = _OPTION_TYPES.get(key)
        if parse is None:
            raise ConfigError(f"{where}: unknown option {key!r} (known: {sorted(_OPTION_TYPES)})")
        try:
            parsed[key] = parse(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {key} = {value!r} is not valid: {exc}") from None
    return parsed
