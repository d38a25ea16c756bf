"""What the client scripts say about themselves, learnt without importing them here.

The shim needs two facts from each script: whether it imports, and what its
``concurrent_instances()`` says (the slice count). Importing the scripts to
learn them would leave their code, and Django with Archivematica's settings,
in the shim for good (85 MB with Archivematica's 103 scripts). So the shim
starts this module as a short-lived child (``python -m worker.scripts.probe``) at
start-up: the child imports every script as a worker would, writes one JSON
report and exits, and its memory goes with it.

The report goes to the child's original stdout; anything a script prints
while being imported is sent to stderr instead, so it cannot corrupt the
report. A probe that dies or times out (a script that crashes the
interpreter or hangs at import) marks every function as failed to import
with the reason, so the shim still answers every task with that cause
instead of refusing to start.
"""

from __future__ import annotations

import importlib.abc
import json
import logging
import os
import subprocess
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

from worker.config import Settings, current_settings
from worker.errors import RegistryError
from worker.health import Check
from worker.scripts.registry import Registry, ScriptEntry, load_registry

log = logging.getLogger(__name__)

#: How long the scripts may take to import, all together, in the probe.
PROBE_TIMEOUT_SECONDS = 300.0


class _Refuse(importlib.abc.MetaPathFinder):
    """Refuses to import some top-level packages (and their submodules) in this process."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> None:
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} is not imported in the shim", name=fullname)
        return None


def keep_django_out() -> None:
    """Make this process (the shim) refuse to import Django at all.

    Nothing the shim does needs it, but libraries reach for it when it is
    installed (kombu's JSON encoder imports ``django.utils.functional`` to
    support lazy strings, which the shim never sends). Refusing it keeps
    the shim free of it whatever is installed, and makes a future import of
    it on the shim's path fail loudly in the tests instead of growing the shim.
    """
    if not any(isinstance(f, _Refuse) for f in sys.meta_path):
        sys.meta_path.insert(0, _Refuse(frozenset({"django"})))


def report(registry: Registry) -> dict[str, Any]:
    """The JSON-safe facts of every entry of a registry built with imports."""
    functions: dict[str, Any] = {}
    for function, entry in registry.items():
        facts: dict[str, Any] = {"script": entry.script, "error": entry.import_error,
                                 "slices": None}
        hook = getattr(entry.module, "concurrent_instances", None)
        if hook is not None:
            try:
                facts["slices"] = max(1, int(hook()))
            except Exception as exc:  # noqa: BLE001 - a buggy hook means 1 slice, as in batches
                facts["slices"] = 1
                facts["slices_error"] = f"concurrent_instances() raised {type(exc).__name__}: {exc}"
        functions[function] = facts
    return {"functions": functions}


def apply(registry: Registry, found: Mapping[str, Any]) -> Registry:
    """``registry`` (read without imports) with the probe's facts on each entry."""
    functions = found.get("functions", {})
    entries: dict[str, ScriptEntry] = {}
    for function, entry in registry.items():
        facts = functions.get(function)
        if not isinstance(facts, dict):
            facts = {"error": "the script probe did not report this function"}
        elif facts.get("script") != entry.script:
            facts = {"error": f"the script probe saw {facts.get('script')}, not {entry.script}"}
        slices = facts.get("slices")
        entries[function] = replace(entry, probed=True, import_error=facts.get("error"),
                                    probed_slices=slices if isinstance(slices, int) else None)
    return Registry(entries)


def _failed(registry: Registry, why: str) -> Registry:
    return Registry({f: replace(e, probed=True, import_error=why) for f, e in registry.items()})


def probe_registry(settings: Settings, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> Registry:
    """The registry, its scripts imported in a child process; never in this one."""
    return run_probe(settings, timeout=timeout)[0]


def run_probe(settings: Settings, *, database: bool = False,
              timeout: float = PROBE_TIMEOUT_SECONDS) -> tuple[Registry, list[Check]]:
    """The registry as :func:`probe_registry`; with ``database``, the child's database checks too.

    ``amworker run`` checks the database this way, so that the process that
    goes on to be the shim never loads Django.
    """
    registry = load_registry(settings, import_modules=False)
    command = [sys.executable, "-m", "worker.scripts.probe", *(["--database"] if database else [])]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, env=os.environ.copy(),
                              check=False)
    except subprocess.TimeoutExpired:
        why = f"the script probe did not finish importing the scripts within {timeout:g}s"
        log.error("%s; every function answers 'script import failed'", why)
        return _failed(registry, why), [Check("script probe", False, why)]
    stderr = done.stderr.decode("utf-8", "replace").strip()
    try:
        found = json.loads(done.stdout)
    except ValueError:
        found = None
    if done.returncode != 0 or not isinstance(found, dict):
        tail = "\n".join(stderr.splitlines()[-20:])
        why = f"the script probe exited with code {done.returncode}:\n{tail}"
        log.error("%s", why)
        return _failed(registry, why), [Check("script probe", False, why)]
    probed = apply(registry, found)
    for function, facts in found.get("functions", {}).items():
        if isinstance(facts, dict) and facts.get("slices_error"):
            log.warning("%s: %s; using 1 slice", function, facts["slices_error"])
    for entry in probed.failed():
        log.error("function %s is unusable: %s", entry.function,
                  (entry.import_error or "").strip().splitlines()[0])
    log.info("script probe: %d function(s), %d importable", len(probed),
             len(probed) - len(probed.failed()))
    checks = [Check(**c) for c in found.get("database", []) if isinstance(c, dict)]
    return probed, checks


def main(argv: Sequence[str] | None = None) -> int:
    """The child: import every script, write the report to the original stdout."""
    from worker import database, logs
    from worker.health import check_database
    from worker.scripts import imports as script_imports

    settings = current_settings()
    logs.configure(settings.log_level, settings.log_format)
    report_fd = os.dup(1)
    os.dup2(2, 1)  # what scripts print on import goes to stderr, not into the report
    try:
        script_imports.install()
        # Before any script: one that sets Django up itself on import, as
        # Archivematica's do, must find amworker's settings and MySQL driver.
        database.prepare()
        registry = load_registry(settings, ready_django=database.setup)
    except RegistryError as exc:
        print(f"amworker probe: {exc}", file=sys.stderr)
        return 2
    found = report(registry)
    if "--database" in (sys.argv[1:] if argv is None else argv):
        found["database"] = [asdict(check) for check in check_database(settings.database_url)]
    with os.fdopen(report_fd, "w", encoding="utf-8") as out:
        json.dump(found, out)
    return 0


if __name__ == "__main__":
    sys.stdout.flush()
    raise SystemExit(main())
