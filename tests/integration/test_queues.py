"""Routing and limits per function, from the TOML config file.

Two Celery workers consume two queues (``-Q amworker`` and ``-Q heavy``); the
config file sends one function to ``heavy`` and gives another a soft time
limit. The shim and both workers read the same file (AMWORKER_CONFIG_FILE).
Both tests run with Redis and with RabbitMQ as Celery's broker.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.services import Proc, Stack, stack
from tests.integration.ops import run_batch, write_modules
from worker.cli.submit import SmokeTask

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FUNCTIONS = {"whereami_v0.0": "whereami", "whereheavy_v0.0": "whereami", "loop_v0.0": "loops"}

CONFIG = """\
[defaults]
time_limit = 300

[functions."whereheavy_v0.0"]
queue = "heavy"
time_limit = 600
slices = 3

[functions."loop_v0.0"]
soft_time_limit = 2
time_limit = 60
"""


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def routed(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Proc, Proc]]:
    workdir = tmp_path_factory.mktemp(f"queues-{request.param}")
    modules = write_modules(workdir / "modules.ini", FUNCTIONS)
    config = workdir / "amworker.toml"
    config.write_text(CONFIG, encoding="utf-8")
    with stack(workdir, modules_file=modules, env={"AMWORKER_CONFIG_FILE": str(config)},
               broker=request.param) as s:
        light = s.celery_worker("light", concurrency=1, queues="amworker")
        heavy = s.celery_worker("heavy", concurrency=2, queues="heavy")
        s.shim(functions=len(FUNCTIONS))
        yield s, light, heavy


def _parents(results: list[SmokeTask]) -> set[int]:
    """The Celery main process (pool parent) that ran each job."""
    return {int(r.stdout.strip().removeprefix("ppid=")) for r in results}


def test_each_function_runs_on_the_queue_its_config_names(
        routed: tuple[Stack, Proc, Proc]) -> None:
    s, light, heavy = routed
    routed_heavy = run_batch(s.server, "whereheavy_v0.0", tasks=3)
    default = run_batch(s.server, "whereami_v0.0", tasks=2)

    assert [r.exit_code for r in routed_heavy + default] == [0] * 5
    assert _parents(routed_heavy) == {heavy.pid}
    assert _parents(default) == {light.pid}


def test_an_expired_soft_time_limit_fails_the_jobs_and_the_worker_lives_on(
        routed: tuple[Stack, Proc, Proc]) -> None:
    s, light, _ = routed
    results = run_batch(s.server, "loop_v0.0", tasks=2)

    assert [r.exit_code for r in results] == [1, 1]
    for result in results:
        assert "time limit" in result.stderr
    assert light.alive()
    # The same worker (and its single pool process) takes the next batch.
    after = run_batch(s.server, "whereami_v0.0")
    assert after[0].exit_code == 0
    assert _parents(after) == {light.pid}
