"""One setting against an Archivematica-like install, end to end; and a thin shim.

The shim and a Celery worker run with nothing but AMWORKER_ARCHIVEMATICA_HOME
pointing at tests/am_tree.py's install (no modules file, package, assets or
settings module named): scripts that import their siblings run, a script that
needs Django models runs, a broken one is answered ``script import failed``,
and ``concurrent_instances()`` still decides the slices. Meanwhile the shim
process itself never imports a client script or Django: Python's own import
log (``PYTHONVERBOSE``) of the real shim process says so.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.services import ROOT, Proc, Stack, stack, wait_until
from tests import am_tree
from tests.integration.databases import mariadb_database
from tests.integration.ops import run_batch

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DERIVED = ("AMWORKER_MODULES_FILE", "AMWORKER_CLIENT_SCRIPTS_PACKAGE",
           "AMWORKER_CLIENT_ASSETS_DIRECTORY")


#: Beside the two layouts, the source layout with DJANGO_SETTINGS_MODULE set:
#: "stock-env" names Archivematica's settings, as the stock worker's environment
#: does (Celery's Django fix-up once set Django up with it before amworker could,
#: and the worker died at start); "mysql" names amworker's own, on a MariaDB
#: database and PyMySQL alone (a script setting Django up itself on import once
#: found no MySQL driver in the shim's script probe: "script import failed").
@pytest.fixture(scope="module", params=["package", "source", "stock-env", "mysql"])
def deployed(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Proc, Proc]]:
    workdir = tmp_path_factory.mktemp(f"home-{request.param}")
    layout = "package" if request.param == "package" else "source"
    home, _ = am_tree.build(workdir / "install", layout)
    env = {"AMWORKER_ARCHIVEMATICA_HOME": str(home)}
    with contextlib.ExitStack() as cleanup:
        if request.param == "stock-env":
            env["DJANGO_SETTINGS_MODULE"] = "settings.common"
        elif request.param == "mysql":
            url, _, _ = cleanup.enter_context(mariadb_database())
            env.update({"DJANGO_SETTINGS_MODULE": "worker.settings", "AMWORKER_DATABASE_URL": url})
        yield from _deployed(workdir, env)


def _deployed(workdir: Path, env: dict[str, str]) -> Iterator[tuple[Stack, Proc, Proc]]:
    with stack(workdir, env=env) as running:
        for name in DERIVED:
            running.env.pop(name)
        done = subprocess.run([sys.executable, "-m", "worker.cli", "init-db"], env=running.env,
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        worker = running.celery_worker("home", concurrency=2)
        shim = running.shim("home-shim", extra={"PYTHONVERBOSE": "1"}, functions=4)
        yield running, shim, worker


def test_scripts_importing_their_siblings_run_with_the_slices_they_ask_for(
    deployed: tuple[Stack, Proc, Proc],
) -> None:
    running, _, _ = deployed

    results = run_batch(running.server, "greet_v0.0", "--name x", tasks=6)

    assert [r.exit_code for r in results] == [0] * 6, [r.stderr for r in results]
    # concurrent_instances() says 3: six tasks, three slices of two.
    assert all("hello from a sibling jobs_in_slice=2" in r.stdout for r in results), results


def test_scripts_importing_django_models_run(deployed: tuple[Stack, Proc, Proc]) -> None:
    running, _, _ = deployed

    results = run_batch(running.server, "models_v0.0", tasks=2)

    assert [(r.exit_code, r.stdout.strip()) for r in results] == [(0, "Group")] * 2


def test_a_script_that_sets_django_up_itself_on_import_runs(deployed: tuple[Stack, Proc, Proc]) -> None:
    running, _, _ = deployed

    results = run_batch(running.server, "setsup_v0.0", tasks=2)

    assert [(r.exit_code, r.stdout.strip()) for r in results] == [
        (0, "Group after its own django.setup()")] * 2, [r.stderr for r in results]


def test_a_script_that_fails_to_import_is_answered_with_the_cause(deployed: tuple[Stack, Proc, Proc]) -> None:
    running, _, _ = deployed

    results = run_batch(running.server, "broken_v0.0", tasks=2)

    for result in results:
        assert result.exit_code == 1
        assert result.stderr.startswith("amworker: script import failed: ")
        assert "amworker_no_such_dependency" in result.stderr


def _succeeded(log: str) -> list[str]:
    """Celery's "Task greet_v0.0 slice ... succeeded" lines."""
    return [line for line in log.splitlines() if "Task greet_v0.0 slice" in line and "succeeded" in line]


def test_the_workers_log_once_in_amworkers_format(deployed: tuple[Stack, Proc, Proc]) -> None:
    running, _, worker = deployed
    before = len(_succeeded(worker.output()))
    run_batch(running.server, "greet_v0.0")
    # The pool process logs "succeeded" after it stored the result the shim
    # answers from: the answer can come first.
    wait_until(lambda: len(_succeeded(worker.output())) > before, timeout=30,
               what="Celery's task-succeeded line in the worker's log")

    log = worker.output()
    # The stand-in settings' dictConfig would add a root handler of this format.
    assert "STAND-IN" not in log
    done = _succeeded(log)
    assert done and all(" INFO    [ForkPoolWorker-" in line for line in done), log[-3000:]
    # Once each: a second root handler would repeat every line.
    slices = [line.split("[greet_v0.0:", 1)[1].split("]", 1)[0] for line in done]
    assert len(slices) == len(set(slices)), done


def test_check_reports_what_it_derived(deployed: tuple[Stack, Proc, Proc], tmp_path: Path) -> None:
    running, _, _ = deployed

    done = subprocess.run([sys.executable, "-m", "worker.cli", "check"], env=running.env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)

    line = next(x for x in done.stdout.splitlines() if x.startswith("[ ok ] Archivematica: "))
    assert "modules file " in line and "archivematicaClientModules;" in line
    assert "scripts package clientScripts;" in line and "(set)" not in line
    assert "script greet_v0.0: clientScripts.greet imports; concurrent_instances() = 3" in done.stdout
    assert "[FAIL] script broken_v0.0: clientScripts.broken: ModuleNotFoundError" in done.stdout


# Last: it stops the shim.
def imported_modules(log: str) -> set[str]:
    """Modules loaded, from ``PYTHONVERBOSE`` lines (``import 'name' # <loader>``).

    Python writes such a line only once a module has loaded; an import that
    failed (or was refused) writes none.
    """
    names = set()
    for line in log.splitlines():
        if line.startswith("import '") and "' # " in line:
            names.add(line[len("import '"):line.index("' # ")])
    return names


def test_the_shim_holds_no_script_and_no_django(deployed: tuple[Stack, Proc, Proc]) -> None:
    running, shim, _ = deployed
    # Every function answered once, so anything imported lazily is in too.
    for function in ("greet_v0.0", "models_v0.0", "broken_v0.0"):
        run_batch(running.server, function)
    shim.stop()

    names = imported_modules(shim.output())

    assert {"worker.batch.runner", "worker.gearman_shim", "redis"} <= names, "no import log"
    assert not {n for n in names if n == "django" or n.startswith("django.")}
    # Metrics are off here: their library is not loaded either.
    assert "prometheus_client" not in names
    assert not {n for n in names if n.split(".")[0] in {"clientScripts", "sibling_helper",
                                                         "settings", "common_helper", "main"}}
    assert "script probe: 4 function(s), 3 importable" in shim.output()


AM_SRC = os.environ.get("AM_SRC", "")
#: A Python with Archivematica's requirements and amworker installed.
AM_PYTHON = os.environ.get("AM_PYTHON", "")


def probe_counts(env: dict[str, str], cwd: Path) -> tuple[int, int, str]:
    done = subprocess.run([AM_PYTHON, "-m", "worker.cli", "scripts"], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    found = re.search(r"script probe: (\d+) function\(s\), (\d+) importable", done.stderr)
    assert found, done.stderr[-3000:]
    return int(found.group(1)), int(found.group(2)), done.stdout


@pytest.mark.timeout(900)
@pytest.mark.skipif(not (AM_SRC and AM_PYTHON),
                    reason="AM_SRC (a checkout) and AM_PYTHON (with its requirements) not given")
def test_every_function_of_a_real_checkout_imports_with_the_one_setting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMWORKER_", "ARCHIVEMATICA_"))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("PYTHONPATH", None)
    env.update({"AMWORKER_ARCHIVEMATICA_HOME": AM_SRC,
                "AMWORKER_DATABASE_URL": f"sqlite:///{tmp_path}/am.sqlite3"})

    functions, importable, table = probe_counts(env, tmp_path)

    assert functions > 100 and importable == functions, table
    # Found 1 of issue 9: without clientScripts on the path, the scripts that
    # import their siblings fail.
    src = Path(AM_SRC).absolute() / "src"
    paths = [src / "MCPClient/lib", src / "archivematicaCommon/lib", src / "dashboard/src"]
    without = {**env, "AMWORKER_IMPORT_PATHS": os.pathsep.join(map(str, paths))}
    _, fewer, table = probe_counts(without, tmp_path)
    missing = set(re.findall(r"IMPORT FAILED: ModuleNotFoundError: No module named '(\w+)'", table))
    assert importable - fewer == table.count("IMPORT FAILED")
    assert missing and all((src / "MCPClient/lib/clientScripts" / name).exists()
                           or (src / "MCPClient/lib/clientScripts" / f"{name}.py").exists()
                           for name in missing), missing
