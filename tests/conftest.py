"""Shared fixtures: one real amworker deployment for the whole test session.

Starting gearmand, Redis, a Celery worker and the shim takes a few seconds
and the machine has two cores, so every integration test that only needs "a
working amworker on SQLite" shares the one stack started here. Tests that
need another database start their own (see tests/integration/test_database.py).
The same deployment with RabbitMQ as Celery's broker is started too, on
first use, for the tests that run on both brokers (``broker_stack``).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path

import pytest

from harness.services import ROOT, Stack, stack, start_redis
from tests.subreaper import is_subreaper, set_subreaper

#: Name of the session's Celery worker (the ``client`` column of Tasks rows).
WORKER_NAME = "it-sqlite"
#: Name of the Celery worker of the session's RabbitMQ deployment.
RABBIT_WORKER_NAME = "it-rabbit"


def init_db(env: dict[str, str]) -> None:
    """``amworker init-db`` against the stack's database (as an operator would)."""
    done = subprocess.run([sys.executable, "-m", "worker.cli", "init-db"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def start_amworker(workdir: Path, *, worker_name: str, concurrency: int = 2,
                   database_url: str | None = None, broker: str = "redis",
                   env: Mapping[str, str] | None = None) -> Generator[Stack, None, None]:
    """A stack with one Celery worker and one shim serving every test function."""
    from tests.integration.controller import function_count

    with stack(workdir, database_url=database_url, broker=broker, env=env) as deployed:
        # The controller inserts Tasks rows before submitting, so the table
        # must exist before the first batch, not when a pool process first
        # runs a slice.
        init_db(deployed.env)
        deployed.celery_worker(worker_name, concurrency=concurrency)
        deployed.shim(functions=function_count())
        yield deployed


@pytest.fixture
def restores_subreaper() -> Iterator[None]:
    """For tests that run the executor in this process: it makes the process a subreaper.

    A subreaper adopts every orphaned grandchild of every later test (a
    daemonised gearmand, a Celery worker's pool) and must reap them, or they
    stay zombies for the rest of the session.
    """
    before = is_subreaper()
    yield
    if is_subreaper() != before:
        set_subreaper(before)


@pytest.fixture(autouse=True)
def _no_subreaper_left_behind() -> Iterator[None]:
    """Fail a test that leaves the pytest process a subreaper (see ``restores_subreaper``)."""
    before = is_subreaper()
    yield
    if is_subreaper() and not before:
        set_subreaper(False)  # so that only this test fails, not every later one
        pytest.fail("the test left the pytest process a child subreaper (prctl "
                    "PR_SET_CHILD_SUBREAPER); use the restores_subreaper fixture", pytrace=False)


@pytest.fixture(scope="session")
def amworker_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """gearmand, Redis, one Celery worker (concurrency 2) and one shim, on SQLite."""
    yield from start_amworker(tmp_path_factory.mktemp("amworker-stack"), worker_name=WORKER_NAME)


@pytest.fixture(scope="session")
def rabbit_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The same deployment with RabbitMQ as Celery's broker (a private vhost)."""
    yield from start_amworker(tmp_path_factory.mktemp("amworker-rabbit"),
                              worker_name=RABBIT_WORKER_NAME, broker="rabbitmq")


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_stack(request: pytest.FixtureRequest) -> Stack:
    """The session's deployment on each broker in turn, for tests that must hold on both."""
    name = "amworker_stack" if request.param == "redis" else "rabbit_stack"
    deployed: Stack = request.getfixturevalue(name)
    return deployed


@pytest.fixture(scope="session")
def worker_node() -> str:
    """The session worker's Celery node name, as Celery reports it."""
    return f"{WORKER_NAME}@{socket.gethostname()}"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free port, for one test module (no persistence)."""
    proc, port = start_redis(tmp_path_factory.mktemp("module-redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
