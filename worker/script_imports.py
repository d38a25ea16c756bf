"""Let client scripts import the job API by the names older releases used.

Archivematica 1.x scripts do ``from client.job import Job`` and
``from custom_handlers import get_script_logger``; others use
``utils.custom_handlers``. amworker's real modules live under ``worker.``.
Shipping top-level ``client``/``custom_handlers``/``utils`` packages would
claim those names in every environment amworker is installed into, so instead
:func:`install` adds an import hook, in worker processes only, that resolves
each name in :data:`ALIASES` to the *same module object* as its target.

Precedence: the hook for top-level names is appended to the **end** of
``sys.meta_path``, so it is asked only after every regular finder failed. A
real top-level ``utils`` (or ``client``, ``custom_handlers``) importable from
``sys.path`` therefore wins, and scripts that import it keep getting it; we
would rather a script find an operator's module than have ours silently
replace it. When a real ``utils`` package wins, ``utils.custom_handlers`` is
not grafted onto it either.

Submodule aliases (``client.job``) need a second, narrow hook at the *front*
of ``sys.meta_path``: once ``client`` is our ``worker.client``, the regular
path finder would find ``worker/client/job.py`` through its ``__path__`` and
load that file a second time as a separate module. The front hook answers a
dotted alias only when its parent already resolved to our target, which is
exactly the case where no real module of that name can exist.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
from collections.abc import Mapping, Sequence
from importlib.machinery import ModuleSpec
from types import MappingProxyType, ModuleType

ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "client": "worker.client",
        "client.job": "worker.client.job",
        "custom_handlers": "worker.utils.custom_handlers",
        "utils": "worker.utils",
        "utils.custom_handlers": "worker.utils.custom_handlers",
    }
)
"""Import name a script may use -> the amworker module it means."""


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


def _alias_spec(fullname: str) -> ModuleSpec:
    module = importlib.import_module(ALIASES[fullname])
    return ModuleSpec(fullname, _AliasLoader(module), is_package=hasattr(module, "__path__"))


class _AliasFinderBase(importlib.abc.MetaPathFinder):
    """Answers an alias with the target's module; subclasses decide which names."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname not in ALIASES or not self._resolves(fullname):
            return None
        return _alias_spec(fullname)

    def _resolves(self, fullname: str) -> bool:
        """Whether this finder answers ``fullname``, already known to be an alias."""
        raise NotImplementedError


class AliasFinder(_AliasFinderBase):
    """Resolves the top-level names of :data:`ALIASES`; lives at the end of ``sys.meta_path``."""

    def _resolves(self, fullname: str) -> bool:
        return "." not in fullname


class SubmoduleAliasFinder(_AliasFinderBase):
    """Resolves dotted names of :data:`ALIASES` whose parent is already our alias.

    Lives at the front of ``sys.meta_path``; see the module docstring for why.
    """

    def _resolves(self, fullname: str) -> bool:
        parent, dot, _ = fullname.rpartition(".")
        if not dot or parent not in ALIASES:
            return False
        parent_module = sys.modules.get(parent)
        # If the parent is a real package, its submodules are its own.
        return parent_module is not None and parent_module is sys.modules.get(ALIASES[parent])


def _ours(finder: object) -> bool:
    return isinstance(finder, _AliasFinderBase)


def install() -> None:
    """Make the names in :data:`ALIASES` importable (idempotent)."""
    if any(_ours(f) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, SubmoduleAliasFinder())
    sys.meta_path.append(AliasFinder())


def uninstall() -> None:
    """Remove the hooks and forget modules imported through an alias."""
    sys.meta_path[:] = [f for f in sys.meta_path if not _ours(f)]
    for alias, target in ALIASES.items():
        module = sys.modules.get(alias)
        if module is not None and module is sys.modules.get(target):
            del sys.modules[alias]
