"""Private MariaDB and PostgreSQL databases for the integration tests.

Each context manager creates a database of its own on the machine's server
(skipping the test when the server is not there), with a ``Tasks`` table
shaped like Archivematica's, yields its URL, a way to connect and a way to
read the table's schema, and drops it at the end.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypedDict

import pytest


class Server(TypedDict):
    """Where the MariaDB server of the tests listens, and as whom they connect."""

    host: str
    port: int
    user: str
    password: str


MARIADB: Server = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
POSTGRES = "postgresql://postgres@127.0.0.1:5432/{db}"

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
