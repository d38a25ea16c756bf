"""Fault 6: the database goes away mid-batch (a private PostgreSQL, stopped by the test),
or is held locked (SQLite, an exclusive transaction of another process)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.controller import make_tasks, submit, submit_bg
from harness.services import ROOT, accepts, free_port, stack
from tests.faults.helpers import assert_all_answered, failed_with, gate_args, wait_records, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

PG_BIN = next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)), "")
#: PostgreSQL refuses to run as root: as root, run it as the postgres user.
AS_POSTGRES = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster run as the ``postgres`` user on a free port."""

    datadir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run([*AS_POSTGRES, f"{PG_BIN}/pg_ctl", "-D", str(self.datadir), "-w", "-t",
                        "60", *args], check=True, capture_output=True, timeout=90)

    def start(self) -> None:
        self._ctl("-l", str(self.datadir / "server.log"), "-o",
                  f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1", "start")
        wait_until(lambda: accepts(self.port), timeout=60, what="PostgreSQL")

    def stop(self) -> None:
        """Stop at once, like a crash or an operator's restart: connections drop."""
        self._ctl("-m", "immediate", "stop")

    def sql(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    if not PG_BIN or (AS_POSTGRES and shutil.which("runuser") is None):
        pytest.skip("PostgreSQL server binaries (or runuser, as root) not available")
    base = Path(tempfile.mkdtemp(prefix="amworker-pg-"))
    if AS_POSTGRES:
        shutil.chown(base, "postgres")
    datadir = base / "data"
    subprocess.run([*AS_POSTGRES, f"{PG_BIN}/initdb", "-D", str(datadir),
                    "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    server = PrivatePostgres(datadir, free_port())
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_results_reach_the_controller_while_the_database_is_down(tmp_path: Path) -> None:
    with private_postgres() as db, stack(tmp_path, database_url=db.url,
                                         env={"AMWORKER_LEASE_SECONDS": "1"}) as s:
        subprocess.run([sys.executable, "-m", "worker.cli", "init-db"], env=s.env, cwd=ROOT,
                       check=True, capture_output=True, timeout=60)
        worker = s.celery_worker("w1", concurrency=1)
        s.shim()
        record, gate = tmp_path / "runs", tmp_path / "gate"

        # 1. Down for good mid-slice: the write is retried with backoff, then
        # logged; the jobs keep their real exit code.
        tasks = make_tasks([gate_args(record, gate)] * 2)
        for task_id in tasks:
            db.sql('INSERT INTO "Tasks" ("taskUUID") VALUES (%s)', (task_id,))
        pending = submit_bg(s.server, "record_v0.0", tasks, timeout=120)
        wait_records(record, 1)
        db.stop()
        gate.touch()
        down_at = time.monotonic()
        answer = pending.wait(120)
        print(f"database down for good: answered {time.monotonic() - down_at:.1f}s after the "
              "slice finished (end-of-slice write retried with backoff, then logged)")
        assert_all_answered(answer)
        assert all(answer.exit_code(t) == 0 for t in tasks), answer.results
        assert all("amworker" not in answer.stderr(t) for t in tasks)
        log = worker.output()
        assert "retrying in" in log and "giving up on recording the end of 2 task(s)" in log

        # 2. Back within the retry window: the rows are written after all.
        gate.unlink()
        tasks = make_tasks([gate_args(record, gate)])
        (task_id,) = tasks
        db.start()
        db.sql('INSERT INTO "Tasks" ("taskUUID") VALUES (%s)', (task_id,))
        pending = submit_bg(s.server, "record_v0.0", tasks, timeout=120)
        wait_records(record, 3)
        db.stop()
        marker = worker.output().count("recording the end of 1 task(s) failed (attempt 1")
        gate.touch()
        wait_until(lambda: worker.output().count(
            "recording the end of 1 task(s) failed (attempt 1") > marker, timeout=60,
            what="the first failed write")
        db.start()
        answer = pending.wait(120)
        assert answer.exit_code(task_id) == 0, answer.results
        print("database back within the retry window: row written (endTime, exitCode 0)")
        ((end, code),) = db.sql('SELECT "endTime", "exitCode" FROM "Tasks" WHERE "taskUUID" = %s',
                                (task_id,))
        assert end is not None and code == 0


#: Holds an exclusive transaction on a SQLite file until a gate file appears.
HOLD_LOCK = """
import os, sqlite3, sys, time
db, gate = sys.argv[1], sys.argv[2]
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
limit = time.monotonic() + 120
while not os.path.exists(gate) and time.monotonic() < limit:
    time.sleep(0.05)
conn.execute("ROLLBACK")
"""


@contextlib.contextmanager
def sqlite_locked(path: Path, gate: Path) -> Iterator[None]:
    """Another process holds ``BEGIN EXCLUSIVE`` on ``path`` until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path), str(gate)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        gate.touch()
        holder.wait(30)


def insert_rows(path: Path, tasks: dict[str, dict[str, object]]) -> None:
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany('INSERT INTO "Tasks" ("taskUUID") VALUES (?)', [(t,) for t in tasks])


def test_a_locked_sqlite_database_delays_a_slice_only_by_the_database_wait(tmp_path: Path) -> None:
    wait = 3.0
    with stack(tmp_path, env={"AMWORKER_DATABASE_WAIT": str(wait)}) as s:
        subprocess.run([sys.executable, "-m", "worker.cli", "init-db"], env=s.env, cwd=ROOT,
                       check=True, capture_output=True, timeout=60)
        path = Path(s.env["AMWORKER_DATABASE_URL"].removeprefix("sqlite:///"))
        worker = s.celery_worker("w1", concurrency=1)
        s.shim()
        record = tmp_path / "runs"
        warm = make_tasks([str(record)])
        assert submit(s.server, "record_v0.0", warm).exit_code(next(iter(warm))) == 0

        # 1. Locked before the slice starts, for longer than the wait: the
        # tasks fail with the cause, in about the wait, and the script is not run.
        tasks = make_tasks([str(record)] * 2)
        insert_rows(path, tasks)
        with sqlite_locked(path, tmp_path / "gate-1"):
            began = time.monotonic()
            answer = submit(s.server, "record_v0.0", tasks, timeout=120)
            took = time.monotonic() - began
        print(f"locked database: batch answered in {took:.1f}s (AMWORKER_DATABASE_WAIT={wait:g})")
        assert_all_answered(answer)
        for task_id in tasks:
            assert failed_with(answer, task_id, "database unavailable"), answer.results
            assert "database is locked" in answer.stderr(task_id)
            assert "the script was not run" in answer.stderr(task_id)
        assert took < wait + 15, took
        assert len(wait_records(record, 1)) == 1  # only the warm-up ran

        # 2. Locked while the script runs: the end write gives up after the
        # wait, the script's own result stands, the log says why.
        gate = tmp_path / "gate-2"
        tasks = make_tasks([gate_args(record, gate)])
        insert_rows(path, tasks)
        pending = submit_bg(s.server, "record_v0.0", tasks, timeout=120)
        wait_records(record, 2)
        with sqlite_locked(path, tmp_path / "gate-3"):
            gate.touch()
            began = time.monotonic()
            answer = pending.wait(wait + 30)
            took = time.monotonic() - began
        print(f"locked at the end of the slice: answered {took:.1f}s after the script finished")
        assert_all_answered(answer)
        assert all(answer.exit_code(t) == 0 for t in tasks), answer.results
        assert took < wait + 15, took
        assert "giving up on recording the end of 1 task(s)" in worker.output()

        # 3. Unlocked again: rows are written as usual.
        tasks = make_tasks([str(record)])
        insert_rows(path, tasks)
        answer = submit(s.server, "record_v0.0", tasks)
        assert all(answer.exit_code(t) == 0 for t in tasks), answer.results
        import sqlite3

        with contextlib.closing(sqlite3.connect(path)) as conn:
            ((end, code),) = conn.execute('SELECT "endTime", "exitCode" FROM "Tasks" WHERE '
                                          '"taskUUID" = ?', (next(iter(tasks)),)).fetchall()
        assert end is not None and code == 0
