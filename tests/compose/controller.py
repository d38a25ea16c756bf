"""A stand-in controller for ``scripts/test-compose``: MCPServer's part of one batch.

Like the controller, it inserts one ``Tasks`` row per task into the
pipeline's database, submits the batch to the pipeline's gearmand, and reads
the answer. Then it checks what a worker must have done: every task answered
with the expected exit code, and every row given its exit code, end time and
``client`` (the worker that ran it). It runs on the host, outside every
container, through the published ports only::

    python -m tests.compose.controller --gearman 127.0.0.1:4730 \\
        --database mysql://user:pass@127.0.0.1:3306/MCP \\
        createdirectory_v0.0 --tasks 2 -- -m 750 /var/archivematica/sharedDirectory/x

Exits 0 when everything checked out, 1 otherwise, with one line per task.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import pymysql

from worker.cli.gearman_client import GearmanClient
from worker.cli.submit import build_tasks
from worker.codec.records import Encoding
from worker.codec.wire import decode_result, encode_request

ROWS_DEADLINE = 30.0


def connect(url: str) -> pymysql.connections.Connection:
    parts = urlsplit(url)
    if parts.scheme != "mysql":
        raise SystemExit(f"controller: only mysql:// databases, not {url!r}")
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=parts.path.lstrip("/"),
        autocommit=True,
    )


def insert_rows(db: pymysql.connections.Connection, function: str, arguments: str,
                task_ids: Sequence[str]) -> None:
    """What the controller does before it submits: one row per task."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with db.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO Tasks (taskUUID, createdTime, exec, arguments) VALUES (%s, %s, %s, %s)",
            [(task_id, now, function, arguments) for task_id in task_ids],
        )


def written_rows(db: pymysql.connections.Connection,
                 task_ids: Sequence[str]) -> dict[str, tuple[int | None, str | None]]:
    """exitCode and client of each row whose endTime is set."""
    marks = ", ".join(["%s"] * len(task_ids))
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT taskUUID, exitCode, client FROM Tasks "
            f"WHERE endTime IS NOT NULL AND taskUUID IN ({marks})",
            list(task_ids),
        )
        return {row[0]: (row[1], row[2]) for row in cursor.fetchall()}


def run(args: argparse.Namespace) -> bool:
    arguments = shlex.join(args.arguments)
    tasks = build_tasks(arguments, args.tasks, wants_output=True)
    db = connect(args.database)
    insert_rows(db, args.function, arguments, list(tasks))
    with GearmanClient(args.gearman) as client:
        outcome = client.submit(args.function, encode_request(tasks, Encoding.JSON),
                                unique=str(uuid.uuid4()), timeout=args.timeout)
    if not outcome.complete:
        print(f"controller: {args.function}: WORK_FAIL from gearmand")
        return False
    answers = decode_result(outcome.data)
    deadline = time.monotonic() + ROWS_DEADLINE
    rows = written_rows(db, list(tasks))
    while len(rows) < len(tasks) and time.monotonic() < deadline:
        time.sleep(0.2)  # the rows are written by a worker in another container
        rows = written_rows(db, list(tasks))
    ok = True
    for task_id in tasks:
        answer = answers.get(task_id, {})
        exit_code = answer.get("exitCode")
        row_exit, row_client = rows.get(task_id, (None, None))
        good = exit_code == args.expect_exit == row_exit and bool(row_client)
        ok &= good
        print(f"task {task_id}: answer exit {exit_code}, row exit {row_exit}, "
              f"client {row_client!r}{'' if good else '  <-- wrong'}")
        if not good and answer.get("stderror"):
            print(f"  stderr: {str(answer['stderror']).strip()}")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.compose.controller",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--gearman", required=True, help="the pipeline's gearmand, host:port")
    parser.add_argument("--database", required=True, help="the pipeline's database, mysql://...")
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--expect-exit", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("function")
    parser.add_argument("arguments", nargs="*", help="after --: the task's argv")
    return 0 if run(parser.parse_args(argv)) else 1


if __name__ == "__main__":
    sys.exit(main())
