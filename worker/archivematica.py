"""Where an Archivematica install keeps what amworker needs, from one directory.

``AMWORKER_ARCHIVEMATICA_HOME`` names an Archivematica install; this module
finds the rest from it. Two layouts exist:

* a **package install**: ``/usr/lib/archivematica/MCPClient``,
  ``/usr/lib/archivematica/archivematicaCommon`` and
  ``/usr/share/archivematica/dashboard``;
* a **source checkout**: ``src/MCPClient/lib``, ``src/archivematicaCommon/lib``
  and ``src/dashboard/src``.

The home may be the MCPClient directory itself, its parent
(``/usr/lib/archivematica``), a checkout's ``src`` or the checkout. From the
MCPClient directory come the import paths (Archivematica's image puts the
MCPClient directory, its ``clientScripts``, archivematicaCommon and the
dashboard on ``PYTHONPATH``: scripts import their siblings by bare name), the
modules file, the client assets and the Django settings module. Nothing here
imports Archivematica's code.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.errors import ConfigError

#: Archivematica's MCPClient Django settings (what its image sets
#: ``DJANGO_SETTINGS_MODULE`` to); amworker's settings build on it.
BASE_SETTINGS = "settings.common"
#: The package Archivematica's client scripts live in, importable from the
#: MCPClient directory.
SCRIPTS_PACKAGE = "clientScripts"
MODULES_FILE = "archivematicaClientModules"


@dataclass(frozen=True)
class Layout:
    """The directories of one Archivematica install."""

    kind: str  # "package" or "source"
    mcpclient: Path
    common: Path
    dashboard: Path

    @property
    def import_paths(self) -> tuple[str, ...]:
        """What Archivematica's image has on ``PYTHONPATH``, in its order."""
        return tuple(str(p) for p in (self.mcpclient, self.mcpclient / SCRIPTS_PACKAGE,
                                      self.common, self.dashboard))

    @property
    def modules_file(self) -> str:
        return str(self.mcpclient / MODULES_FILE)

    @property
    def client_assets_directory(self) -> str:
        # Trailing slash: argument templates glue names onto it.
        return f"{self.mcpclient / 'assets'}/"


def derived_defaults(layout: Layout | None) -> dict[str, Any]:
    """The settings an install implies, by field of worker.config.Settings ({} without one).

    Each is only a default: the variable that sets the field (worker.config.table)
    wins over it.
    """
    if layout is None:
        return {}
    return {
        "import_paths": layout.import_paths,
        "django_settings": BASE_SETTINGS,
        "modules_file": layout.modules_file,
        "client_scripts_package": SCRIPTS_PACKAGE,
        "client_assets_directory": layout.client_assets_directory,
    }


def _mcpclient_candidates(home: Path) -> list[Path]:
    return [home, home / "MCPClient", home / "MCPClient" / "lib",
            home / "src" / "MCPClient" / "lib"]


def find_layout(home: str) -> Layout:
    """The layout of the install at ``home``; :class:`ConfigError` if it is none."""
    root = Path(home).expanduser().absolute()
    where = f"AMWORKER_ARCHIVEMATICA_HOME={home!r}"
    if not root.is_dir():
        raise ConfigError(f"{where}: no such directory")
    for candidate in _mcpclient_candidates(root):
        if (candidate / SCRIPTS_PACKAGE).is_dir() and (candidate / MODULES_FILE).is_file():
            mcpclient = candidate
            break
    else:
        raise ConfigError(
            f"{where}: no Archivematica MCPClient found (looked for {SCRIPTS_PACKAGE}/ and "
            f"{MODULES_FILE} in {', '.join(str(c) for c in _mcpclient_candidates(root))})")
    if mcpclient.name == "lib" and mcpclient.parent.name == "MCPClient":
        src = mcpclient.parent.parent
        layout = Layout("source", mcpclient, src / "archivematicaCommon" / "lib",
                        src / "dashboard" / "src")
    else:
        # /usr/lib/archivematica/MCPClient -> /usr/share/archivematica/dashboard
        base = mcpclient.parent
        layout = Layout("package", mcpclient, base / "archivematicaCommon",
                        base.parent.parent / "share" / base.name / "dashboard")
    for name, path in (("archivematicaCommon", layout.common), ("dashboard", layout.dashboard)):
        if not path.is_dir():
            raise ConfigError(f"{where}: this {layout.kind} layout has no {name} at {path} "
                              "(set AMWORKER_IMPORT_PATHS to list the directories yourself)")
    return layout


def install_import_paths(paths: Sequence[str]) -> None:
    """Put ``paths`` first on ``sys.path`` and ``PYTHONPATH`` (idempotent).

    First, as in Archivematica's image where they come from ``PYTHONPATH``:
    a same-named package installed in the virtual environment must not shadow
    Archivematica's. ``PYTHONPATH`` too, so that a script starting Python in
    a subprocess finds the same modules.
    """
    missing = [p for p in paths if p not in sys.path]
    sys.path[:0] = missing
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    wanted = [p for p in paths if p not in current]
    if wanted:
        os.environ["PYTHONPATH"] = os.pathsep.join([*wanted, *current])
