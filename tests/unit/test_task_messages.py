"""The messages the shim sends by name match the Celery tasks that receive them.

The shim sends ``app.signature(RUN_SLICE, kwargs=...)``: nothing checks the
keyword names against the task's parameters until a worker runs it, and then
every slice fails with a TypeError. These tests fail instead, the moment a
record's fields and its task's parameters drift apart.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import pytest

from worker import tasks
from worker.contract.records import RecordError
from worker.contract.slices import COLLECT, RUN_SLICE, CollectMessage, SliceMessage


def parameters(task: Callable[..., object]) -> list[str]:
    """The task's parameters (``run`` is bound: the task itself is not among them)."""
    return list(inspect.signature(task).parameters)


def defaults(task: Callable[..., object]) -> dict[str, object]:
    return {name: p.default for name, p in inspect.signature(task).parameters.items()
            if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize(("record", "task"), [
    (SliceMessage, tasks.run_slice.run),
    (CollectMessage, tasks.collect.run),
], ids=["run_slice", "collect"])
def test_a_message_record_has_exactly_its_tasks_parameters(
        record: type[object], task: Callable[..., object]) -> None:
    fields = dataclasses.fields(record)  # type: ignore[arg-type]

    assert [f.name for f in fields] == parameters(task)
    # An optional parameter is an optional field, with the same default.
    assert {f.name: f.default for f in fields if f.default is not dataclasses.MISSING} == defaults(task)


def test_the_task_names_are_the_registered_ones() -> None:
    assert tasks.run_slice.name == RUN_SLICE
    assert tasks.collect.name == COLLECT


def test_every_kwarg_a_message_sends_is_a_parameter_of_its_task() -> None:
    message = SliceMessage(function="f", batch="b", index=0, count=1, jobs=(), script="f = m")
    collect = CollectMessage(function="f", batch="b", slices=("b:slice-1-of-1",))

    inspect.signature(tasks.run_slice.run).bind(**message.to_kwargs())
    inspect.signature(tasks.collect.run).bind(**collect.to_kwargs())


def test_run_slice_refuses_a_malformed_message_before_it_claims_anything(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_runtime(_: object) -> None:
        raise AssertionError("the runtime (Redis claim, script) must not be reached")

    monkeypatch.setattr(tasks.SliceTask, "runtime", property(no_runtime))
    tasks.run_slice.push_request(id="f:u:slice-1-of-1")
    try:
        with pytest.raises(RecordError, match="job 't1': missing field 'argv'"):
            tasks.run_slice.run("f", "f:u", 0, 1, [{"uuid": "t1", "wants_output": True}])
    finally:
        tasks.run_slice.pop_request()
