"""Task rows in the shared database: the same assertions on every backend.

SQLite is the session stack's embedded database. MariaDB and PostgreSQL each
get a database of their own (made and dropped by tests/integration/databases.py) holding a
``Tasks`` table shaped like Archivematica's, and a stack of their own (gearmand,
Redis, one Celery worker, one shim) pointed at it. amworker must update those
rows and never alter the table.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness.services import Stack
from tests.conftest import start_amworker
from tests.integration.controller import Batch, exit_codes, finished_at, run
from tests.integration.databases import mariadb_database, postgres_database
from worker.codec.records import Encoding

pytestmark = pytest.mark.integration

SLACK = timedelta(seconds=2)

COLUMNS = ["taskUUID", "startTime", "endTime", "exitCode", "stdOut", "stdError", "client"]


@dataclass
class Backend:
    """One database as the controller sees it, and the stack pointed at it."""

    name: str
    stack: Stack
    worker: str  # Celery node name: what the ``client`` column must hold
    connect: Callable[[], Any]
    quote: str
    param: str
    schema: Callable[[Any], list[tuple[Any, ...]]]

    @contextlib.contextmanager
    def cursor(self) -> Iterator[Any]:
        conn = self.connect()
        try:
            cur = conn.cursor()
            yield cur
            conn.commit()
        finally:
            conn.close()

    def q(self, name: str) -> str:
        return f"{self.quote}{name}{self.quote}"

    def insert(self, built: Batch, job: str) -> None:
        """What the controller does before submitting: one row per task."""
        now = datetime.now(UTC).replace(tzinfo=None) if self.name == "mariadb" else datetime.now(UTC)
        with self.cursor() as cur:
            if self.name != "sqlite":
                cur.execute(f"INSERT INTO {self.q('Jobs')} VALUES ({self.param}, {self.param})",
                            (job, "integration test"))
            for task_id, task in built.tasks.items():
                cols = ["taskUUID", "createdTime", "fileName", "exec", "arguments", "client",
                        "stdOut", "stdError", "jobuuid"]
                values = (task_id, now if self.name != "sqlite" else now.isoformat(" "), "",
                          built.function, task["arguments"], "", "", "", job)
                cur.execute(
                    f"INSERT INTO {self.q('Tasks')} ({', '.join(map(self.q, cols))}) "
                    f"VALUES ({', '.join([self.param] * len(cols))})", values)

    def row(self, task_id: str) -> dict[str, Any] | None:
        with self.cursor() as cur:
            cur.execute(f"SELECT {', '.join(map(self.q, COLUMNS))} FROM {self.q('Tasks')} "
                        f"WHERE {self.q('taskUUID')} = {self.param}", (task_id,))
            found = cur.fetchone()
        return dict(zip(COLUMNS, found, strict=True)) if found else None

    def table_schema(self) -> list[tuple[Any, ...]]:
        conn = self.connect()
        try:
            return self.schema(conn)
        finally:
            conn.close()


def as_utc(value: Any) -> datetime:
    """A stored timestamp as an aware UTC datetime (SQLite gives text, MariaDB naive UTC)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime), value
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)


# -- the backends ----------------------------------------------------------------


def sqlite_backend(stack: Stack, worker: str) -> Backend:
    path = stack.env["AMWORKER_DATABASE_URL"].removeprefix("sqlite:///")

    def schema(conn: Any) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'Tasks'").fetchall()
        return rows

    return Backend("sqlite", stack, worker, lambda: sqlite3.connect(path, timeout=30), '"', "?",
                   schema)


@pytest.fixture(scope="module", params=["sqlite", "mariadb", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            worker_node: str) -> Iterator[Backend]:
    """The database under test and an amworker stack writing to it."""
    if request.param == "sqlite":
        yield sqlite_backend(request.getfixturevalue("amworker_stack"), worker_node)
        return
    server = mariadb_database if request.param == "mariadb" else postgres_database
    with server() as (url, connect, schema):
        name = f"it-{request.param}"
        workdir = tmp_path_factory.mktemp(f"stack-{request.param}")
        # On MariaDB the workers also get DJANGO_SETTINGS_MODULE, naming amworker's own
        # settings as an operator may: Celery's Django fix-up, which that variable turns
        # on, once set Django up before amworker installed PyMySQL, and the worker died.
        env = {"DJANGO_SETTINGS_MODULE": "worker.settings"} if request.param == "mariadb" else None
        stacks = start_amworker(workdir, worker_name=name, concurrency=2, database_url=url,
                                env=env)
        deployed = next(stacks)
        try:
            quote = "`" if request.param == "mariadb" else '"'
            yield Backend(request.param, deployed, f"{name}@{worker_node.split('@', 1)[1]}",
                          connect, quote, "%s", schema)
        finally:
            stacks.close()


# -- the contract ----------------------------------------------------------------


@pytest.mark.parametrize("encoding", [Encoding.JSON, Encoding.PICKLE])
def test_task_rows_get_start_end_exit_code_output_and_client(backend: Backend,
                                                             encoding: Encoding) -> None:
    schema_before = backend.table_schema()
    built = Batch("exitcode_v0.0", encoding)
    codes = {built.add("0"): 0, built.add("3"): 3, built.add("0", wants_output=False): 0}
    backend.insert(built, job=str(uuid.uuid4()))
    before = datetime.now(UTC)
    answered = run(backend.stack, built)
    after = datetime.now(UTC)
    assert exit_codes(answered) == codes

    for task_id, code in codes.items():
        row = backend.row(task_id)
        assert row is not None
        assert row["exitCode"] == code
        start, end = as_utc(row["startTime"]), as_utc(row["endTime"])
        assert before - SLACK <= start <= end <= after + SLACK, row
        # endTime is when the task finished: what the answer says too.
        assert abs(end - finished_at(answered[task_id], encoding)) < SLACK
        assert row["stdOut"] == f"exiting with {code}\n"
        assert row["stdError"] == ""
        assert row["client"] == backend.worker
    assert backend.table_schema() == schema_before, "amworker altered the Tasks table"


def test_failed_task_stderr_is_recorded(backend: Backend) -> None:
    built = Batch("raises_v0.0", Encoding.JSON)
    task_id = built.add("x")
    backend.insert(built, job=str(uuid.uuid4()))
    answered = run(backend.stack, built)
    assert answered[task_id]["exitCode"] == 1
    row = backend.row(task_id)
    assert row is not None
    assert row["exitCode"] == 1
    assert "RuntimeError: boom from raises_v0.0" in row["stdError"]
    assert row["stdError"] == answered[task_id]["stderr"]


def test_task_without_a_row_still_runs_and_is_answered(backend: Backend) -> None:
    built = Batch("echo_v0.0", Encoding.JSON)
    recorded = built.add("recorded")
    unrecorded = built.add("unrecorded")
    partial = Batch(built.function, built.encoding, {recorded: built.tasks[recorded]})
    backend.insert(partial, job=str(uuid.uuid4()))
    answered = run(backend.stack, built)
    assert exit_codes(answered) == {recorded: 0, unrecorded: 0}
    assert answered[unrecorded]["stdout"] == "echo_v0.0 unrecorded\n"
    assert backend.row(unrecorded) is None, "amworker must update rows, never insert them"
    row = backend.row(recorded)
    assert row is not None and row["exitCode"] == 0
    assert row["stdOut"] == "echo_v0.0 recorded\n"


def test_sqlite_file_is_the_one_the_harness_configured(amworker_stack: Stack) -> None:
    # Guards the sqlite backend above against silently checking another file.
    path = Path(amworker_stack.env["AMWORKER_DATABASE_URL"].removeprefix("sqlite:///"))
    assert path.is_file()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'Tasks'").fetchone()[0]


def test_a_batch_of_2000_tasks_writes_every_row_in_chunks(backend: Backend) -> None:
    # Slices this large take several statements each way (900 keys a start,
    # 128 rows an end, fewer where the parameter limit is lower): every row
    # must still get its own result, on every backend.
    built = Batch("exitcode_v0.0", Encoding.JSON)
    codes = {built.add(str(3 if i % 7 == 0 else 0)): 3 if i % 7 == 0 else 0 for i in range(2000)}
    job = str(uuid.uuid4())
    backend.insert(built, job=job)
    answered = run(backend.stack, built, timeout=120)
    assert exit_codes(answered) == codes

    q, p = backend.q, backend.param
    with backend.cursor() as cur:
        cur.execute(
            f"SELECT {q('exitCode')}, {q('stdOut')}, COUNT(*) FROM {q('Tasks')} "
            f"WHERE {q('jobuuid')} = {p} AND {q('startTime')} IS NOT NULL "
            f"AND {q('endTime')} >= {q('startTime')} AND {q('client')} = {p} "
            f"GROUP BY {q('exitCode')}, {q('stdOut')} ORDER BY {q('exitCode')}",
            (job, backend.worker))
        written = [tuple(row) for row in cur.fetchall()]
    failed = sum(1 for code in codes.values() if code)
    assert written == [(0, "exiting with 0\n", 2000 - failed), (3, "exiting with 3\n", failed)]


def test_output_with_a_nul_character_is_stored_on_every_backend(backend: Backend) -> None:
    # PostgreSQL refuses NUL in text; a tool's binary output can hold one.
    built = Batch("echo_v0.0", Encoding.JSON)
    task_id = built.add('"binary\x00output"')
    # The row's own arguments without the NUL: PostgreSQL would refuse the insert.
    recorded = {task_id: {**built.tasks[task_id], "arguments": "binary output"}}
    backend.insert(Batch(built.function, built.encoding, recorded), job=str(uuid.uuid4()))
    answered = run(backend.stack, built)
    assert answered[task_id]["stdout"] == "echo_v0.0 binary\x00output\n"  # the answer is untouched
    row = backend.row(task_id)
    assert row is not None and row["exitCode"] == 0
    stored = "\N{REPLACEMENT CHARACTER}" if backend.name == "postgres" else "\x00"
    assert row["stdOut"] == f"echo_v0.0 binary{stored}output\n"


def test_a_slice_with_more_output_than_one_statement_may_carry_is_stored_whole(backend: Backend) -> None:
    # 24 MiB of output in one slice: as one statement, MariaDB refused it
    # (max_allowed_packet, 16 MiB by default: "server has gone away").
    built = Batch("bigoutput_v0.0", Encoding.JSON)
    tasks = [built.add("1") for _ in range(24)]
    job = str(uuid.uuid4())
    backend.insert(built, job=job)
    answered = run(backend.stack, built, timeout=120)
    assert exit_codes(answered) == dict.fromkeys(tasks, 0)

    q, p = backend.q, backend.param
    with backend.cursor() as cur:
        cur.execute(f"SELECT LENGTH({q('stdOut')}), COUNT(*) FROM {q('Tasks')} WHERE {q('jobuuid')} = {p} "
                    f"AND {q('exitCode')} = 0 GROUP BY LENGTH({q('stdOut')})", (job,))
        assert [tuple(row) for row in cur.fetchall()] == [(1024 * 1024, 24)]
