"""Unit tests of the Celery task bodies' guards (no broker involved)."""

from __future__ import annotations

import pytest
from celery.app.task import Context

from worker import tasks
from worker.dispatch import SCRIPT_HEADER


def test_a_slice_without_a_task_id_is_refused_before_it_claims_anything(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Called directly, a task has no request id: its claim would be
    # "amworker:claim:None", shared with every other such call.
    def no_runtime(_: object) -> None:
        raise AssertionError("the runtime (Redis claim, script) must not be reached")

    monkeypatch.setattr(tasks.SliceTask, "runtime", property(no_runtime))

    with pytest.raises(ValueError, match="needs a Celery task id"):
        tasks.run_slice("echo_v0.0", "echo_v0.0:u", 0, 1, [])


@pytest.mark.parametrize("task_id", [None, ""])
def test_require_task_id_refuses_missing_ids(task_id: str | None) -> None:
    with pytest.raises(ValueError, match="needs a Celery task id"):
        tasks.require_task_id(task_id)


def test_require_task_id_keeps_a_real_id() -> None:
    assert tasks.require_task_id("f:u:slice-1-of-2") == "f:u:slice-1-of-2"


def test_the_planned_script_is_read_from_the_message_header() -> None:
    # What Celery's worker builds from a message's headers.
    request = Context({"id": "f:u:slice-1-of-1", "task": "amworker.run_slice",
                       SCRIPT_HEADER: "echo_v0.0 = tests.fixture_scripts.echo_args"})
    assert tasks.planned_script(request) == "echo_v0.0 = tests.fixture_scripts.echo_args"
    assert tasks.planned_script(Context({"id": "x"})) is None
