"""Issue 9 through a real Celery worker: what a script built on the stock API observes.

Each test runs a batch through gearmand, the shim and a Celery prefork pool
process (tests/fixture_scripts/stock_api.py), where Celery replaces
``sys.stdout``/``sys.stderr`` and amworker's logging is configured.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.services import Stack, wait_until
from tests.conftest import WORKER_NAME
from tests.integration.controller import ENCODINGS, batch, exit_codes, run
from worker.codec.records import Encoding

pytestmark = pytest.mark.integration

def _worker_log(stack: Stack) -> str:
    [proc] = [p for p in stack.procs if p.name == WORKER_NAME]
    return proc.output()


MESSAGE = "Stored modification dates of 2 files."


def _count(stack: Stack, *needles: str) -> int:
    return sum(1 for line in _worker_log(stack).splitlines() if all(n in line for n in needles))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_pyprint_to_stderr_and_logger_lines_stay_out_of_stdout(
        amworker_stack: Stack, encoding: Encoding) -> None:
    built = batch("stockapi_v0.0", encoding, ["streams", "streams"])
    logged_before = _count(amworker_stack, MESSAGE)
    answered = run(amworker_stack, built)
    assert exit_codes(answered) == dict.fromkeys(built.tasks, 0)
    for entry in answered.values():
        # Found 3: stock's pyprint picks the stream by identity, and the
        # logger's two records never fill stock's 100-record buffer.
        assert entry["stdout"] == "pyprinted to stdout\n"
        assert entry["stderr"] == entry["stderror"] == "pyprinted to stderr\n"
    # The records went to the worker's log instead: once each, in amworker's
    # format (with the batch), not doubled by a second root handler...
    wait_until(lambda: _count(amworker_stack, MESSAGE) >= logged_before + 2, timeout=20,
               what="the script's log lines in the worker log")
    assert _count(amworker_stack, MESSAGE) == logged_before + 2
    assert _count(amworker_stack, MESSAGE, f"batch={built.unique}") == 2
    # ...and neither are Celery's own lines in that pool process.
    wait_until(lambda: _count(amworker_stack, built.unique, "succeeded in") >= 1, timeout=20,
               what="Celery's task-succeeded line")
    assert _count(amworker_stack, built.unique, "succeeded in") == 1


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_job_context_stderr_is_str_then_traceback(amworker_stack: Stack,
                                                  encoding: Encoding) -> None:
    built = batch("stockapi_v0.0", encoding, ["raise"])
    [entry] = run(amworker_stack, built).values()
    assert entry["exitCode"] == 1
    assert entry["stdout"] == ""
    stderr = str(entry["stderr"])
    assert stderr.startswith("the script's own messageTraceback (most recent call last):\n")
    assert re.search(r'File ".*/worker/client/job\.py", line \d+, in JobContext\n    yield\n',
                     stderr)
    assert stderr.endswith("ValueError: the script's own message\n")


def test_process_environment_and_modules_are_stocks(amworker_stack: Stack) -> None:
    built = batch("stockapi_v0.0", Encoding.JSON, ["env"])
    [entry] = run(amworker_stack, built).values()
    assert entry["exitCode"] == 0, entry["stderr"]
    seen = json.loads(str(entry["stdout"]))
    assets = Path(amworker_stack.env["AMWORKER_CLIENT_ASSETS_DIRECTORY"])
    assert seen == {
        "XML_CATALOG_FILES": str(assets / "catalog" / "catalog.xml"),
        "PROMETHEUS_MULTIPROC_DIR": seen["PROMETHEUS_MULTIPROC_DIR"],
        "multiproc_dir_exists": True,
        "django_ready": True,
        "job_class": "worker.client.job.Job",
        "job_is_runtime_class": True,
        "custom_handlers": "worker.utils.custom_handlers",
    }


@pytest.mark.timeout(120)
def test_json_worker_log_stays_json_with_script_loggers(tmp_path: Path) -> None:
    """A script calling get_script_logger must not add a second root handler."""
    from harness.services import stack
    from tests.conftest import init_db
    from tests.integration.controller import function_count

    with stack(tmp_path, env={"AMWORKER_LOG_FORMAT": "json"}) as deployed:
        init_db(deployed.env)
        worker = deployed.celery_worker("jsonlog", concurrency=1)
        deployed.shim(functions=function_count())
        built = batch("stockapi_v0.0", Encoding.JSON, ["streams"])
        assert exit_codes(run(deployed, built)) == dict.fromkeys(built.tasks, 0)

        def logged() -> list[str]:
            # Celery prints its banner before logging starts; from the
            # first log line on, every line must be one JSON object.
            lines = worker.output().splitlines()
            first = next((i for i, line in enumerate(lines) if line.startswith("{")), len(lines))
            return [line for line in lines[first:] if line.strip()]

        def script_lines() -> list[str]:
            return [line for line in logged() if MESSAGE in line]

        wait_until(lambda: len(script_lines()) >= 1, timeout=20, what="the script's JSON line")
        entries = [json.loads(line) for line in logged()]  # all JSON
        [entry] = [e for e in entries if e["message"] == MESSAGE]  # once, not doubled
        assert entry["logger"] == "archivematica.mcp.client.stockApi"
        assert entry["level"] == "INFO"
        assert entry["batch"] == built.unique
        assert len(script_lines()) == 1
