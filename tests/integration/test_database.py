"""Task rows in the shared database: the same assertions on every backend.

SQLite is the session stack's embedded database. MariaDB and PostgreSQL each
get a database of their own (created here, dropped at the end) holding a
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
from typing import Any, TypedDict

import pytest

from harness.services import Stack
from tests.conftest import start_amworker
from tests.integration.controller import Batch, exit_codes, finished_at, run
from worker.codec.records import Encoding

pytestmark = pytest.mark.integration

class Server(TypedDict):
    """Where the MariaDB server of the tests listens, and as whom they connect."""

    host: str
    port: int
    user: str
    password: str


MARIADB: Server = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
POSTGRES = "postgresql://postgres@127.0.0.1:5432/{db}"
SLACK = timedelta(seconds=2)

# Archivematica's Tasks (and the Jobs it points to), as its migrations leave
# them on MariaDB: NOT NULL text columns the controller fills with "".
MARIADB_DDL = [
    """CREATE TABLE `Jobs` (
        `jobUUID` varchar(36) NOT NULL PRIMARY KEY,
        `jobType` varchar(250) NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE `Tasks` (
        `taskUUID` varchar(36) NOT NULL,
        `createdTime` datetime(6) NOT NULL,
        `fileUUID` varchar(36) DEFAULT NULL,
        `fileName` longtext NOT NULL,
        `exec` varchar(250) NOT NULL,
        `arguments` varchar(1000) NOT NULL,
        `startTime` datetime(6) DEFAULT NULL,
        `endTime` datetime(6) DEFAULT NULL,
        `client` varchar(50) NOT NULL,
        `stdOut` longtext NOT NULL,
        `stdError` longtext NOT NULL,
        `exitCode` bigint(20) DEFAULT NULL,
        `jobuuid` varchar(36) NOT NULL,
        PRIMARY KEY (`taskUUID`),
        KEY `Tasks_jobuuid_idx` (`jobuuid`),
        CONSTRAINT `Tasks_jobuuid_fk` FOREIGN KEY (`jobuuid`) REFERENCES `Jobs` (`jobUUID`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
]

POSTGRES_DDL = [
    """CREATE TABLE "Jobs" (
        "jobUUID" varchar(36) NOT NULL PRIMARY KEY,
        "jobType" varchar(250) NOT NULL
    )""",
    """CREATE TABLE "Tasks" (
        "taskUUID" varchar(36) NOT NULL PRIMARY KEY,
        "createdTime" timestamp with time zone NOT NULL,
        "fileUUID" varchar(36) NULL,
        "fileName" text NOT NULL,
        "exec" varchar(250) NOT NULL,
        "arguments" varchar(1000) NOT NULL,
        "startTime" timestamp with time zone NULL,
        "endTime" timestamp with time zone NULL,
        "client" varchar(50) NOT NULL,
        "stdOut" text NOT NULL,
        "stdError" text NOT NULL,
        "exitCode" bigint NULL,
        "jobuuid" varchar(36) NOT NULL REFERENCES "Jobs" ("jobUUID")
    )""",
    'CREATE INDEX "Tasks_jobuuid_idx" ON "Tasks" ("jobuuid")',
]

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


def mariadb_server(db: str | None = None) -> Any:
    import pymysql

    return pymysql.connect(**MARIADB, database=db, connect_timeout=3, autocommit=False)


def postgres_server(db: str = "postgres", autocommit: bool = False) -> Any:
    import psycopg

    return psycopg.connect(POSTGRES.format(db=db), connect_timeout=3, autocommit=autocommit)


@contextlib.contextmanager
def mariadb_database() -> Iterator[tuple[str, Callable[[], Any], Callable[[Any], Any]]]:
    try:
        admin = mariadb_server()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not here"
        pytest.skip(f"MariaDB not reachable at 127.0.0.1:3306 as root: {exc}")
    name = f"amworker_it_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        conn = mariadb_server(name)
        with conn.cursor() as cur:
            for statement in MARIADB_DDL:
                cur.execute(statement)
        conn.commit()
        conn.close()

        def schema(conn: Any) -> Any:
            with conn.cursor() as cur:
                cur.execute("SHOW CREATE TABLE `Tasks`")
                return cur.fetchall()

        yield f"mysql://root@127.0.0.1:3306/{name}", lambda: mariadb_server(name), schema
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[tuple[str, Callable[[], Any], Callable[[Any], Any]]]:
    try:
        admin = postgres_server(autocommit=True)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not here"
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 as postgres: {exc}")
    name = f"amworker_it_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with postgres_server(name) as conn:
            for statement in POSTGRES_DDL:
                conn.execute(statement)

        def schema(conn: Any) -> Any:
            return conn.execute(
                "SELECT column_name, data_type, is_nullable, character_maximum_length, "
                "column_default FROM information_schema.columns WHERE table_name = 'Tasks' "
                "ORDER BY ordinal_position").fetchall() + conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'Tasks' ORDER BY indexname"
            ).fetchall()

        yield f"postgres://postgres@127.0.0.1:5432/{name}", lambda: postgres_server(name), schema
    finally:
        # Pool processes may still hold connections (CONN_MAX_AGE); they are
        # gone with the stack, but WITH (FORCE) makes the drop not depend on it.
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


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
