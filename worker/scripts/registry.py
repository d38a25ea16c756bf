"""The script registry: which Gearman function runs which client-script module.

The modules file is Archivematica's INI format: a ``[supportedBatchCommands]``
section of ``function_name = module_name`` lines. configparser lower-cases the
keys, which is exactly what the controller does to a link's ``execute`` value,
so the two always meet.

A module that fails to import is *reported*, not fatal: its entry keeps the
error text, every task sent to it is answered with exit code 1 and that text,
and every other function is still served.
"""

from __future__ import annotations

import configparser
import importlib
import logging
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from worker.archivematica import install_import_paths
from worker.config import FunctionOptions, Settings
from worker.errors import RegistryError

log = logging.getLogger(__name__)

#: The section Archivematica's modules file keeps its functions in.
SECTION = "supportedBatchCommands"


@runtime_checkable
class ClientScript(Protocol):
    """What a client script is: anything with ``call(jobs)``."""

    def call(self, jobs: Any) -> None: ...


@dataclass(frozen=True)
class ScriptEntry:
    """One function of the modules file, its module and effective options."""

    function: str
    module_name: str
    options: FunctionOptions
    module: ModuleType | None = None
    import_error: str | None = None
    #: The package module_name is imported from (what the modules file means).
    package: str = ""
    #: Set for an entry whose module was imported in another process (the
    #: shim's probe, worker.scripts.probe): whether it imported, and what its
    #: ``concurrent_instances()`` said there (``None``: it has none).
    probed: bool = False
    probed_slices: int | None = None

    @property
    def importable(self) -> bool:
        """True when the module imported (here or in the probe) and has a callable ``call``."""
        return self.module is not None or (self.probed and self.import_error is None)

    @property
    def script(self) -> str:
        """The module this function runs, package-qualified: the entry's fingerprint.

        Slices carry it, and a worker whose modules file maps the function to
        another module refuses them (``script mismatch``) instead of running
        a different script than the shim planned for.
        """
        return f"{self.package}.{self.module_name}" if self.package else self.module_name

    def slices_wanted(self) -> int:
        """Operator override, else the module's ``concurrent_instances()``, else 1."""
        if self.options.slices:
            return self.options.slices
        if self.module is None and self.probed_slices is not None:
            return max(1, self.probed_slices)
        wanted = getattr(self.module, "concurrent_instances", None)
        if wanted is None:
            return 1
        try:
            value = int(wanted())
        except Exception:  # noqa: BLE001 - a buggy hook must not stop the batch
            log.exception("%s: concurrent_instances() failed; using 1 slice", self.function)
            return 1
        return max(1, value)


class Registry(Mapping[str, ScriptEntry]):
    """Read-only mapping of function name to :class:`ScriptEntry`."""

    def __init__(self, entries: Mapping[str, ScriptEntry]) -> None:
        self._entries = dict(entries)

    def __getitem__(self, function: str) -> ScriptEntry:
        return self._entries[function]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def failed(self) -> list[ScriptEntry]:
        """The entries whose module could not be imported."""
        return [entry for entry in self._entries.values() if not entry.importable]

    def scripts(self) -> dict[str, str]:
        """``{function: script}``: every entry's fingerprint (see :attr:`ScriptEntry.script`)."""
        return {function: entry.script for function, entry in self._entries.items()}

    def mismatch(self, function: str, script: str | None) -> str | None:
        """Why a slice planned for ``script`` must not run here, or ``None`` if it may.

        ``None`` for ``script`` is a slice from a shim that sends no
        fingerprint (an older release): it runs, as before.
        """
        entry = self._entries.get(function)
        if script is None or (entry is not None and entry.script == script):
            return None
        here = f"maps it to {entry.script}" if entry is not None else "does not name it"
        return (f"the shim planned {function} as {script}, but this worker's modules file "
                f"{here}: shim and workers must use the same modules file and scripts package")


def read_modules_file(path: str) -> dict[str, str]:
    """Parse the modules file into ``{function: module_name}`` (keys lower-cased)."""
    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"), interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise RegistryError(f"modules file {path!r} cannot be read: {exc}") from None
    if not parser.has_section(SECTION):
        raise RegistryError(f"modules file {path!r} has no [{SECTION}] section")
    return {key.lower(): value.strip() for key, value in parser.items(SECTION)}


def import_script(
    package: str, module_name: str, *, ready_django: Callable[[], None] | None = None
) -> tuple[ModuleType | None, str | None]:
    """Import ``package.module_name``; return the module or the error text.

    With ``ready_django``, a module that fails because Django is not set up
    yet (Archivematica's scripts import its models at import time) gets
    Django readied and one more try; processes whose scripts never need it
    (the shim with the bundled scripts) never load Django at all.
    """
    name = f"{package}.{module_name}"
    try:
        module = importlib.import_module(name)
    except BaseException as exc:  # noqa: BLE001 - SystemExit at import is a bug to report too
        if isinstance(exc, KeyboardInterrupt):
            raise
        if ready_django is None or not _needs_django(exc):
            return None, f"cannot import {name}:\n{traceback.format_exc()}"
        try:
            ready_django()
        except Exception:  # noqa: BLE001 - this script's import failed; the others still load
            # A script that set Django up itself and failed half-way leaves
            # Django unable to start again ("populate() isn't reentrant"):
            # report it on this script, never end the whole probe.
            return None, (f"cannot import {name}: Django could not be set up for it:\n"
                          f"{traceback.format_exc()}")
        return import_script(package, module_name)
    if not callable(getattr(module, "call", None)):
        return None, f"{name} has no call(jobs) function"
    return module, None


def _needs_django(exc: BaseException) -> bool:
    """True for the errors Django raises when used before ``django.setup()``."""
    return type(exc).__module__ == "django.core.exceptions" and type(exc).__name__ in {
        "AppRegistryNotReady",
        "ImproperlyConfigured",
    }


def load_registry(
    settings: Settings,
    *,
    import_modules: bool = True,
    ready_django: Callable[[], None] | None = None,
) -> Registry:
    """Build the registry from the settings; import every module unless told not to."""
    entries: dict[str, ScriptEntry] = {}
    if import_modules:
        install_import_paths(settings.import_paths)
    for function, module_name in read_modules_file(settings.modules_file).items():
        module, error = (None, None)
        if import_modules:
            module, error = import_script(settings.client_scripts_package, module_name,
                                          ready_django=ready_django)
            if error:
                log.error("function %s is unusable: %s", function, error.splitlines()[0])
        entries[function] = ScriptEntry(
            function=function,
            module_name=module_name,
            options=settings.options_for(function),
            module=module,
            import_error=error,
            package=settings.client_scripts_package,
        )
    if not entries:
        raise RegistryError(f"modules file {settings.modules_file!r} names no function")
    return Registry(entries)
