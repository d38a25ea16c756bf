"""Unit tests of how the dispatcher records and reads back a batch's plan.

The Redis stand-in keeps values as bytes, as Redis does, and runs the plan
script's contract over them; it has no other command, so planning reads
nothing but what the script hands back. The Celery app is never reached,
since planning sends nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from celery import Celery

from worker.batch.dispatch import (
    ANSWERED,
    OLDER_KEYS,
    PLAN_UNLESS_ANSWERED,
    PLANNED,
    RECORDED,
    WAKE_ON_SLICES_UP_TO,
    AnsweredMeanwhile,
    Dispatcher,
    LookUpFirst,
    decode_plan,
)
from worker.config import FunctionOptions, Settings
from worker.contract import keys
from worker.contract.plan import JobSpec, PlanRecord
from worker.scripts.registry import ScriptEntry

TOKEN = "echo_v0.0:u:digest"
ENTRY = ScriptEntry(function="echo_v0.0", module_name="echo_args", options=FunctionOptions(slices=2))
SPECS = [JobSpec(uuid=f"t{i}", argv=(), wants_output=True) for i in range(4)]


class _Redis:
    """The plan script over a dict, values kept as bytes."""

    def __init__(self) -> None:
        self.kept: dict[str, bytes] = {}

    def register_script(self, script: str) -> Callable[..., list[object]]:
        """The plan script's contract (its Lua runs against a real Redis in
        tests/integration/test_batch_runner.py): the answer record; else the plan;
        else, given an older shim's keys, nothing; else the plan is set."""
        assert script == PLAN_UNLESS_ANSWERED

        def run(keys: list[str], args: list[object]) -> list[object]:
            plan_key, answer_key, *older = keys
            if answer_key in self.kept:
                return [ANSWERED, self.kept[answer_key]]
            if plan_key in self.kept:
                return [PLANNED, self.kept[plan_key]]
            if any(key in self.kept for key in older):
                return [OLDER_KEYS]
            self.kept[plan_key] = str(args[0]).encode()
            return [RECORDED]

        return run


def _dispatcher(client: _Redis) -> Dispatcher:
    return Dispatcher(settings=Settings(max_batch_tasks=128), app=Celery("plan-test"),
                      client=client, wallclock=lambda: 1000.0)  # type: ignore[arg-type]


def test_the_first_arrival_records_an_unsent_plan() -> None:
    client = _Redis()

    dispatch, parts, fresh = _dispatcher(client).plan_slices(ENTRY, TOKEN, SPECS)

    assert fresh and dispatch.count == 2 and [len(p) for p in parts] == [2, 2]
    assert PlanRecord.decode(client.kept[keys.plan_key(TOKEN)]) == PlanRecord(count=2, at=1000.0)


def test_a_redelivery_reuses_the_recorded_count_and_time() -> None:
    client = _Redis()
    client.kept[keys.plan_key(TOKEN)] = PlanRecord(count=3, at=5.0, sent=True).encode().encode()

    dispatch, parts, fresh = _dispatcher(client).plan_slices(ENTRY, TOKEN, SPECS)

    assert not fresh
    assert (dispatch.count, dispatch.dispatched_at) == (3, 5.0)
    assert dispatch.slices[2].task_id == keys.slice_id(TOKEN, 2, 3)


def test_a_plan_never_sent_is_sent_with_its_count_and_a_queue_wait_from_now() -> None:
    # The shim that planned it died before sending: a re-delivery an hour
    # later must not have its slices given up as unclaimed at once.
    client = _Redis()
    client.kept[keys.plan_key(TOKEN)] = PlanRecord(count=3, at=5.0).encode().encode()

    dispatch, parts, fresh = _dispatcher(client).plan_slices(ENTRY, TOKEN, SPECS)

    assert fresh
    assert (dispatch.count, dispatch.dispatched_at) == (3, 1000.0)
    assert len(parts) == 3


@pytest.mark.parametrize("stored", [
    b"{not json", b'{"count": "3", "at": 5}', b'{"count": 3}', b'{"count": 3, "at": NaN}',
    json.dumps({"count": 10**12, "at": 5, "sent": True}).encode(),
], ids=["garbage", "count-text", "no-time", "nan", "absurd-count"])
def test_an_unreadable_or_absurd_plan_is_planned_afresh(
        stored: bytes, caplog: pytest.LogCaptureFixture) -> None:
    client = _Redis()
    client.kept[keys.plan_key(TOKEN)] = stored

    dispatch, parts, fresh = _dispatcher(client).plan_slices(ENTRY, TOKEN, SPECS)

    assert fresh and dispatch.count == 2 and len(parts) == 2
    assert any(r.levelname == "ERROR" and "plan" in r.getMessage() for r in caplog.records)


def test_decode_plan_is_none_for_anything_but_a_plan() -> None:
    assert decode_plan(b'{"count": 1, "at": 2, "sent": true}') == PlanRecord(count=1, at=2.0, sent=True)
    assert decode_plan(b"[]") is None


def test_a_batch_answered_meanwhile_is_not_planned_again() -> None:
    client = _Redis()
    client.kept[keys.answer_key(TOKEN)] = b'{"at": 1, "slices": [], "failed": []}'

    with pytest.raises(AnsweredMeanwhile):
        _dispatcher(client).plan_slices(ENTRY, TOKEN, SPECS)
    assert keys.plan_key(TOKEN) not in client.kept


@pytest.mark.parametrize("older", ["plan", "answer"])
def test_an_older_shims_keys_alone_are_left_to_the_runner(older: str) -> None:
    client = _Redis()
    legacy = keys.legacy_token(TOKEN)
    key = keys.plan_key(legacy) if older == "plan" else keys.answer_key(legacy)
    client.kept[key] = b"{}"

    with pytest.raises(LookUpFirst):
        _dispatcher(client).plan_slices(ENTRY, TOKEN, SPECS, older=legacy)
    assert keys.plan_key(TOKEN) not in client.kept
    # Looked up already (older not given): the batch is planned as new.
    _dispatch, _parts, fresh = _dispatcher(client).plan_slices(ENTRY, TOKEN, SPECS)
    assert fresh and keys.plan_key(TOKEN) in client.kept


def test_a_batch_with_a_plan_of_its_own_ignores_an_older_shims_keys() -> None:
    client = _Redis()
    legacy = keys.legacy_token(TOKEN)
    client.kept[keys.plan_key(legacy)] = b"{}"
    client.kept[keys.plan_key(TOKEN)] = PlanRecord(count=3, at=5.0, sent=True).encode().encode()

    dispatch, _parts, fresh = _dispatcher(client).plan_slices(ENTRY, TOKEN, SPECS, older=legacy)

    assert not fresh and dispatch.count == 3


@pytest.mark.parametrize("wanted", [1, 2, 4, WAKE_ON_SLICES_UP_TO, WAKE_ON_SLICES_UP_TO + 1])
def test_every_slice_and_the_final_result_wake_the_lane(wanted: int) -> None:
    entry = ScriptEntry(function="echo_v0.0", module_name="echo_args",
                        options=FunctionOptions(slices=wanted))
    specs = [JobSpec(uuid=f"t{i}", argv=(), wants_output=True) for i in range(wanted)]
    dispatch, _parts, _fresh = _dispatcher(_Redis()).plan_slices(entry, TOKEN, specs)

    slices = [ref.task_id for ref in dispatch.slices]
    assert len(slices) == wanted
    if wanted == 1:
        # One slice is its own final result: nothing else to wait for.
        assert dispatch.wake_ids == (slices[0],) == (dispatch.done_id,)
    elif wanted > WAKE_ON_SLICES_UP_TO:
        # A look per slice would read every slice's keys each time.
        assert dispatch.wake_ids == (keys.collect_id(TOKEN),)
    else:
        assert dispatch.wake_ids == (*slices, keys.collect_id(TOKEN))
