"""Archivematica's stock MCPClient as a fourth system, when ``AM_SRC`` names a checkout.

Nothing of Archivematica or gearman3 is kept in this repository. At run time:

* the stock worker runs from the checkout (``src/MCPClient/lib/archivematicaClient.py``)
  in its own virtualenv (``make bench AM_SRC=...`` builds ``var/stock-venv`` from
  ``bench/stock-requirements.txt``, the smallest set its client needs to start);
* PyPI's gearman3 still calls ``array.fromstring`` (gone in Python 3.9), so a
  temporary copy of the installed package gets the one-word fix and comes
  first on the stock process's ``PYTHONPATH``;
* the bench scripts are offered as a temporary ``clientScripts`` package
  (symbolic links), which the stock loader imports through the bench's own
  modules file;
* its settings come from ``ARCHIVEMATICA_MCPCLIENT_*`` variables: the stack's
  gearmand and SQLite file, every other setting at its default (2 workers on
  2 cores, ``max_tasks_per_child = 10``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.systems import FUNCTIONS, MODULES_FILE, SHA256
from harness.services import Proc, Stack, gearman_status, spawn, wait_until

ROOT = Path(__file__).resolve().parent.parent
#: The stock worker's virtualenv (built by ``make bench AM_SRC=...``).
STOCK_VENV = ROOT / "var" / "stock-venv"
#: The bench scripts the stock loader imports as ``clientScripts.<name>``.
SCRIPT_FILES = ("noop.py", "sha256_burn.py", "big_output.py")


@dataclass(frozen=True)
class StockSetup:
    """Where the stock worker's code, interpreter and temporary packages are."""

    am_src: Path
    python: Path
    extra_path: tuple[Path, ...]

    @property
    def client(self) -> Path:
        return self.am_src / "src" / "MCPClient" / "lib" / "archivematicaClient.py"


def prepare(am_src: Path, workdir: Path, venv: Path = STOCK_VENV) -> StockSetup:
    """Check the checkout and the virtualenv; build the temporary packages in ``workdir``."""
    client = am_src / "src" / "MCPClient" / "lib" / "archivematicaClient.py"
    if not client.is_file():
        raise FileNotFoundError(f"{client} not found: AM_SRC must be an Archivematica checkout")
    python = venv / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(f"{python} not found: run `make bench AM_SRC=...` to build it")
    patched = workdir / "stock-gearman"
    patched_gearman(venv, patched)
    scripts = workdir / "stock-scripts"
    package = scripts / "clientScripts"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    for name in SCRIPT_FILES:
        (package / name).symlink_to(ROOT / "bench" / "scripts" / name)
    src = am_src / "src"
    return StockSetup(am_src, python, (patched, scripts, src / "MCPClient" / "lib",
                                       src / "archivematicaCommon" / "lib",
                                       src / "dashboard" / "src"))


def patched_gearman(venv: Path, target: Path) -> None:
    """Copy the venv's gearman package to ``target`` and fix ``fromstring`` there."""
    found = sorted(venv.glob("lib/python*/site-packages/gearman/connection.py"))
    if not found:
        raise FileNotFoundError(f"gearman3 is not installed in {venv}")
    copy = target / "gearman"
    shutil.copytree(found[0].parent, copy, dirs_exist_ok=True)
    connection = copy / "connection.py"
    text = connection.read_text()
    if ".fromstring(" not in text and ".frombytes(" not in text:
        raise RuntimeError(f"{found[0]}: no array read to patch; has gearman3 changed?")
    connection.write_text(text.replace(".fromstring(", ".frombytes("))


def environment(setup: StockSetup, stack: Stack) -> dict[str, str]:
    """The stock worker's environment: the stack's gearmand and SQLite, defaults otherwise."""
    url = stack.env["AMWORKER_DATABASE_URL"]
    if not url.startswith("sqlite:///"):
        raise ValueError(f"the stock worker is measured on SQLite only, not {url}")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AMWORKER_", "ARCHIVEMATICA_", "PYTHON", "VIRTUAL_ENV"))}
    prefix = "ARCHIVEMATICA_MCPCLIENT_"
    env.update({
        "PYTHONPATH": os.pathsep.join(map(str, setup.extra_path)),
        "DJANGO_SETTINGS_MODULE": "settings.common",
        "PROMETHEUS_MULTIPROC_DIR": str(stack.workdir / "stock-prometheus"),
        prefix + "CLIENT_ENGINE": "django.db.backends.sqlite3",
        prefix + "CLIENT_DATABASE": url.removeprefix("sqlite:///"),
        prefix + "MCPCLIENT_MCPARCHIVEMATICASERVER": stack.server,
        prefix + "MCPCLIENT_ARCHIVEMATICACLIENTMODULES": str(MODULES_FILE),
        prefix + "MCPCLIENT_SHAREDDIRECTORYMOUNTED": stack.env["AMWORKER_SHARED_DIRECTORY"],
        prefix + "MCPCLIENT_TEMP_DIR": str(stack.workdir / "stock-tmp"),
    })
    return env


def start(setup: StockSetup, stack: Stack, workers: int) -> Proc:
    """Start the stock client; wait until its pool has registered every function.

    The stock pool gives a function as many processes as the script's
    ``concurrent_instances()`` asks (1 without it), up to ``workers``: the
    no-op and big-output scripts get one process, SHA-256 gets ``workers``.
    """
    # ``-m`` rather than the script's path: a script's own directory comes first
    # on sys.path, where the checkout's clientScripts package would hide the bench's.
    proc = spawn("stock", [str(setup.python), "-m", setup.client.stem],
                 env=environment(setup, stack), workdir=stack.workdir)
    stack.procs.append(proc)

    def registered() -> bool:
        if not proc.alive():
            raise RuntimeError(f"the stock worker died:\n{proc.output()[-4000:]}")
        status = gearman_status(stack.gearman_port)
        return (all(status.get(f, (0, 0, 0))[2] >= 1 for f in FUNCTIONS)
                and status.get(SHA256, (0, 0, 0))[2] >= workers)

    wait_until(registered, timeout=90, what=f"{workers} stock worker process(es)", interval=0.2)
    return proc
