"""Both /metrics endpoints, scraped after real batches.

The Celery worker runs with one task per pool process, so every slice runs in
a process that is gone by the time of the scrape: the counts only add up if
the multiprocess files of dead processes are summed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from harness.services import Stack, free_port, stack
from tests.integration.ops import run_batch, scrape, value, write_modules
from worker.cli.gearman_client import GearmanClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FUNCTIONS = {"echo_v0.0": "echo_args", "exitcode_v0.0": "exit_with", "sliced_v0.0": "sliced"}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, int, int]]:
    workdir = tmp_path_factory.mktemp("metrics")
    modules = write_modules(workdir / "modules.ini", FUNCTIONS)
    shim_port, worker_port = free_port(), free_port()
    with stack(workdir, modules_file=modules) as deployed:
        deployed.celery_worker("metrics", concurrency=2, extra={
            "AMWORKER_WORKER_METRICS_PORT": str(worker_port),
            "AMWORKER_MAX_TASKS_PER_CHILD": "1",
            "AMWORKER_LOG_FORMAT": "json",
        })
        deployed.shim(functions=len(FUNCTIONS), extra={"AMWORKER_METRICS_PORT": str(shim_port),
                                                       "AMWORKER_LOG_FORMAT": "json",
                                                       "AMWORKER_LOG_LEVEL": "DEBUG"})
        yield deployed, shim_port, worker_port


def test_worker_metrics_count_jobs_across_pool_processes(deployed: tuple[Stack, int, int]) -> None:
    stack_, _, port = deployed
    before = scrape(port)

    ok = run_batch(stack_.server, "echo_v0.0", "a b", tasks=3)
    failed = run_batch(stack_.server, "exitcode_v0.0", "3", tasks=2)
    sliced = run_batch(stack_.server, "sliced_v0.0", tasks=4)
    assert [r.exit_code for r in ok + sliced] == [0] * 7
    assert [r.exit_code for r in failed] == [3, 3]
    # Four slices, each in a fresh pool process (max tasks per child 1).
    assert len({r.stdout.split()[0] for r in sliced}) == 4

    after = scrape(port)

    def delta(name: str, script: str) -> float:
        return value(after, name, script_name=script) - value(before, name, script_name=script)

    assert delta("mcpclient_job_total", "echo_v0.0") == 3
    assert delta("mcpclient_job_error_total", "echo_v0.0") == 0
    assert delta("mcpclient_job_total", "exitcode_v0.0") == 2
    assert delta("mcpclient_job_error_total", "exitcode_v0.0") == 2
    assert delta("mcpclient_job_total", "sliced_v0.0") == 4
    assert delta("mcpclient_task_execution_time_seconds_count", "sliced_v0.0") == 4
    assert delta("mcpclient_task_execution_time_seconds_count", "exitcode_v0.0") == 2
    assert value(after, "mcpclient_job_success_timestamp", script_name="echo_v0.0") > 0
    assert value(after, "mcpclient_job_error_timestamp", script_name="exitcode_v0.0") > 0
    assert value(after, "mcpclient_job_error_timestamp", script_name="echo_v0.0") == 0


def test_shim_metrics_count_batches(deployed: tuple[Stack, int, int]) -> None:
    stack_, port, _ = deployed
    before = scrape(port)

    run_batch(stack_.server, "echo_v0.0", "x", tasks=2)
    run_batch(stack_.server, "exitcode_v0.0", "1")  # a script failure is still answered
    with GearmanClient(stack_.server) as client:
        refused = client.submit("echo_v0.0", b"not a payload", unique="bad-payload", timeout=60)
    assert not refused.complete

    after = scrape(port)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("amworker_batches_received_total", function="echo_v0.0") == 2
    assert delta("amworker_batches_completed_total", function="echo_v0.0") == 1
    assert delta("amworker_batches_failed_total", function="echo_v0.0") == 1
    assert delta("amworker_payload_decode_failures_total", function="echo_v0.0") == 1
    assert delta("amworker_batches_received_total", function="exitcode_v0.0") == 1
    assert delta("amworker_batches_completed_total", function="exitcode_v0.0") == 1
    assert delta("amworker_batch_latency_seconds_count", function="echo_v0.0") == 2
    assert value(after, "amworker_batches_in_flight") == 0
    assert value(after, "amworker_gearman_connected", server=stack_.server) == 1


def test_json_logs_of_both_processes_carry_the_batch(deployed: tuple[Stack, int, int]) -> None:
    # This module's shim and worker run with AMWORKER_LOG_FORMAT=json.
    stack_, _, _ = deployed
    run_batch(stack_.server, "sliced_v0.0", tasks=2)
    shim, worker = stack_.procs[1], stack_.procs[0]

    def entries(text: str) -> list[dict[str, object]]:
        # Whole lines only: the process may be halfway through writing the last.
        whole = text[:text.rfind("\n") + 1]
        return [json.loads(line) for line in whole.splitlines() if line.startswith("{")]

    assert any(e["logger"] == "celery.apps.worker" for e in entries(worker.output()))
    dispatched = [e for e in entries(shim.output()) if "dispatched" in str(e["message"])]
    assert dispatched and all(e.get("function") and e.get("batch") for e in dispatched)
    assert any(e["function"] == "sliced_v0.0" for e in dispatched)
