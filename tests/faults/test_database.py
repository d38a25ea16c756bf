"""Fault 6: the database goes away mid-batch (a private PostgreSQL, stopped by the test)."""

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

from tests.faults.helpers import (
    assert_all_answered,
    gate_args,
    make_tasks,
    submit_bg,
    wait_records,
    wait_until,
)
from tests.services import ROOT, accepts, free_port, stack

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


def test_results_reach_the_controller_while_the_database_is_down(tmp_path):
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
