"""W6: how many SQL statements one slice's bookkeeping issues (counted, not timed).

Run in a child process per database (Django is set up once per process):
``python -m bench.statements DATABASE_URL N [N ...]`` prints JSON. For each
job count N it inserts N ``Tasks`` rows, then counts the statements of
``bookkeeping.mark_started`` + ``mark_finished`` for them two ways:

* ``django``: every statement Django executes (``connection.execute_wrapper``);
* ``server``: everything the database sees, transaction control included
  (SQLite's trace callback; MariaDB's session ``Questions`` counter).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from harness.services import ROOT


def count(database_url: str, job_counts: Sequence[int],
          env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Run the counting child against ``database_url``; ``{N: {django, server}}``."""
    child_env = {k: v for k, v in env.items() if k != "AMWORKER_DATABASE_URL"}
    child_env["AMWORKER_DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-m", "bench.statements", database_url, *map(str, job_counts)],
        env=child_env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"counting statements on {database_url} failed:\n{done.stderr}")
    counts: dict[str, dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return counts


@contextmanager
def _server_counter(connection: Any) -> Iterator[Callable[[], int]]:
    """Count what reaches the database, as the database itself sees it."""
    if connection.vendor == "sqlite":
        seen: list[str] = []
        raw = connection.connection
        raw.set_trace_callback(seen.append)
        try:
            yield lambda: len(seen)
        finally:
            raw.set_trace_callback(None)
        return

    def questions() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SHOW SESSION STATUS LIKE 'Questions'")
            return int(cursor.fetchone()[1])

    before = questions()
    counted: dict[str, int] = {}
    yield lambda: counted["n"]
    # The SHOW that reads the counter is itself a question; do not count it.
    counted["n"] = questions() - before - 1


def _count_one(jobs: int) -> dict[str, Any]:
    from django.db import connection

    from worker.codec.records import TaskResult
    from worker.contract.results import utcnow
    from worker.models import Task
    from worker.pool import bookkeeping

    uuids = [str(uuid.uuid4()) for _ in range(jobs)]
    Task.objects.bulk_create([Task(taskuuid=u, arguments="bench") for u in uuids])
    results = [TaskResult(uuid=u, exit_code=0, finished_at=utcnow(), stdout="ok\n")
               for u in uuids]
    policy = bookkeeping.RetryPolicy()
    executed: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        executed.append(sql)
        return execute(sql, params, many, context)

    connection.ensure_connection()
    with _server_counter(connection) as server, connection.execute_wrapper(record):
        bookkeeping.mark_started(uuids, when=datetime.now(UTC), client="bench", policy=policy)
        bookkeeping.mark_finished(results, capture_output=True, policy=policy)
    written = Task.objects.filter(pk__in=uuids, exitcode=0).count()
    if written != jobs:
        raise RuntimeError(f"{jobs} jobs: only {written} rows were written")
    kinds = " + ".join(sql.split(None, 1)[0].upper() for sql in executed)
    return {"django": len(executed), "server": server(), "kinds": kinds}


def main(argv: list[str] | None = None) -> int:
    """Child entry point: count for each job count, print one JSON line."""
    args = sys.argv[1:] if argv is None else argv
    database_url, job_counts = args[0], [int(a) for a in args[1:]]
    if database_url.startswith("mysql"):
        _create_mysql_database(database_url)
    from worker import database

    database.ensure_schema()
    print(json.dumps({str(n): _count_one(n) for n in job_counts}))
    return 0


def _create_mysql_database(url: str) -> None:
    """The bench's own MariaDB database, created if missing."""
    from urllib.parse import urlparse

    import pymysql

    parsed = urlparse(url)
    connection = pymysql.connect(host=parsed.hostname or "127.0.0.1", port=parsed.port or 3306,
                                 user=parsed.username or "root", password=parsed.password or "")
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{parsed.path.lstrip('/')}` "
                           "CHARACTER SET utf8mb4")
    finally:
        connection.close()


if __name__ == "__main__":
    raise SystemExit(main())
