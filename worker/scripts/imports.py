"""Which modules a client script gets for the job API's old import names.

Archivematica 1.x scripts do ``from client.job import Job`` and
``from custom_handlers import get_script_logger``; others use
``utils.custom_handlers``. amworker's real modules live under ``worker.``.
Shipping top-level ``client``/``custom_handlers``/``utils`` packages would
claim those names in every environment amworker is installed into, so
:func:`install` adds import hooks, in worker processes only, that resolve
these names to the *same module objects* as amworker's.

The rule (reasons in docs/design.md, "Which job API a script gets"):

* **The job API is always amworker's.** ``client.job``, ``custom_handlers``
  and ``utils.custom_handlers`` (:data:`PINNED`) are answered by a hook at
  the *front* of ``sys.meta_path``, before the path finder, so they are
  amworker's even when Archivematica's ``MCPClient/lib`` and
  ``archivematicaCommon/lib`` are on the path. The runtime reads results
  from amworker's ``Job``; a script that built stock ``Job`` objects, or
  configured logging stock's way inside a worker, would report through an
  API amworker does not run.
* **The package names are amworker's only when nobody else has them.**
  ``client`` and ``utils`` are answered by a hook at the *end* of
  ``sys.meta_path``. Next to Archivematica, ``client`` is stock's package, so
  ``from client import metrics`` still gets stock's metrics module, while
  ``client.job`` in it is amworker's. Elsewhere ``client`` is
  ``worker.client``, and its submodules are answered as ``worker.client.*``
  so no file of amworker is ever loaded twice under two names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from importlib.machinery import ModuleSpec
from types import MappingProxyType, ModuleType

PINNED: Mapping[str, str] = MappingProxyType(
    {
        "client.job": "worker.client.job",
        "custom_handlers": "worker.utils.custom_handlers",
        "utils.custom_handlers": "worker.utils.custom_handlers",
    }
)
"""Job-API modules that are amworker's whatever else is importable."""

PACKAGES: Mapping[str, str] = MappingProxyType(
    {"client": "worker.client", "utils": "worker.utils"}
)
"""Package names that are amworker's only when no other package has them."""

ALIASES: Mapping[str, str] = MappingProxyType({**PACKAGES, **PINNED})
"""Every import name a script may use -> the amworker module it means."""


class _AliasLoader(importlib.abc.Loader):
    """Hands the import system an already-imported module instead of a new one."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module
        self._spec = module.__spec__

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return self._module

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped the alias spec onto the shared module;
        # put the real one back so reload(), pickling by name etc. still work.
        module.__spec__ = self._spec


def _alias_spec(fullname: str, target: str) -> ModuleSpec:
    module = importlib.import_module(target)
    return ModuleSpec(fullname, _AliasLoader(module), is_package=hasattr(module, "__path__"))


class _AliasFinderBase(importlib.abc.MetaPathFinder):
    """Answers an alias with its target's module; subclasses decide which names."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        module_name = self._target(fullname)
        if module_name is None:
            return None
        return _alias_spec(fullname, module_name)

    def _target(self, fullname: str) -> str | None:
        """The amworker module this finder answers ``fullname`` with, if any."""
        raise NotImplementedError


class PinnedFinder(_AliasFinderBase):
    """At the front of ``sys.meta_path``: the job API, and submodules of our packages."""

    def _target(self, fullname: str) -> str | None:
        if fullname in PINNED:
            return PINNED[fullname]
        parent, dot, rest = fullname.rpartition(".")
        if not dot or parent not in PACKAGES:
            return None
        if sys.modules.get(parent) is not sys.modules.get(PACKAGES[parent]):
            return None  # someone else's package: its submodules are its own
        candidate = f"{PACKAGES[parent]}.{rest}"
        return candidate if importlib.util.find_spec(candidate) is not None else None


class PackageFinder(_AliasFinderBase):
    """At the end of ``sys.meta_path``: ``client``/``utils`` when no other finder has them."""

    def _target(self, fullname: str) -> str | None:
        return PACKAGES.get(fullname)


def _ours(finder: object) -> bool:
    return isinstance(finder, _AliasFinderBase)


def install() -> None:
    """Put the hooks in place (idempotent); call before any script is imported."""
    if any(_ours(f) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, PinnedFinder())
    sys.meta_path.append(PackageFinder())


def resolved(name: str) -> str | None:
    """The real module name ``name`` is currently bound to, or ``None`` if not imported."""
    module = sys.modules.get(name)
    return None if module is None else getattr(module, "__name__", None)


def uninstall() -> None:
    """Remove the hooks and forget modules imported through an alias."""
    sys.meta_path[:] = [f for f in sys.meta_path if not _ours(f)]
    for alias in list(sys.modules):
        top = alias.partition(".")[0]
        if top not in PACKAGES and alias not in PINNED:
            continue
        module = sys.modules[alias]
        name = getattr(module, "__name__", "")
        if name != alias and name.startswith("worker."):
            del sys.modules[alias]
