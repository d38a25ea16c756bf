"""Unit tests of the shim<->pool records: round trips, and hostile data read back.

Every record's ``from_json`` must raise :class:`RecordError` (and only that)
for anything malformed, with a message that names the field and stays short
however large the value was.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.batch.answers import answer_record_settlement
from worker.codec.records import TaskResult, Timestamps
from worker.contract.plan import JobSpec, PlanRecord
from worker.contract.records import SHOWN_CHARS, RecordError, show
from worker.contract.slices import (
    CollectEnvelope,
    CollectMessage,
    SliceEnvelope,
    SliceMessage,
    decode_outcome,
    decode_results,
    encode_result_parts,
    encode_results,
    results_from_json,
)
from worker.errors import DecodeError

WHEN = datetime(2026, 1, 1, tzinfo=UTC)
JOBS = (JobSpec(uuid="t1", argv=("-a", "b c"), wants_output=True),
        JobSpec(uuid="t2", argv=(), wants_output=False))
RESULTS = [TaskResult(uuid="t1", exit_code=0, finished_at=WHEN, stdout="out", stderr=""),
           TaskResult(uuid="t2", exit_code=3, finished_at=WHEN, stderr="no\n", wants_output=False)]
HUGE = "x" * 100_000


def test_records_are_a_kind_of_decode_error() -> None:
    # Callers that already catch DecodeError (stored answers) keep working.
    assert issubclass(RecordError, DecodeError)


# --- JobSpec -----------------------------------------------------------------


def test_a_job_spec_round_trips_through_json() -> None:
    for job in JOBS:
        assert JobSpec.from_json(json.loads(json.dumps(job.to_json()))) == job


@pytest.mark.parametrize(("data", "message"), [
    ({"argv": [], "wants_output": True}, "missing field 'uuid'"),
    ({"uuid": "u", "wants_output": True}, "missing field 'argv'"),
    ({"uuid": "u", "argv": []}, "missing field 'wants_output'"),
    ({"uuid": 7, "argv": [], "wants_output": True}, "'uuid' must be str"),
    ({"uuid": "u", "argv": ["a", 1], "wants_output": True}, "'argv' must be str"),
    ({"uuid": "u", "argv": [], "wants_output": 1}, "'wants_output' must be bool"),
    (["u"], "expected an object, got list"),
])
def test_a_malformed_job_spec_is_a_record_error(data: object, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        JobSpec.from_json(data)


# --- PlanRecord ----------------------------------------------------------------


@pytest.mark.parametrize("record", [
    PlanRecord(count=3, at=1_767_225_600.5),
    PlanRecord(count=1, at=0.0, sent=True),
    PlanRecord(count=2, at=10.0, sent=True, lost_at=12.5),
])
def test_a_plan_record_round_trips(record: PlanRecord) -> None:
    assert PlanRecord.decode(record.encode()) == record
    assert PlanRecord.decode(record.encode().encode()) == record  # as Redis returns it


def test_a_plan_record_is_written_as_earlier_releases_read_it() -> None:
    assert json.loads(PlanRecord(count=2, at=5.0).encode()) == {"count": 2, "at": 5.0, "sent": False}


def test_a_plan_without_the_optional_fields_is_unsent_and_not_lost() -> None:
    assert PlanRecord.decode('{"count": 2, "at": 5}') == PlanRecord(count=2, at=5.0)


def test_unknown_plan_fields_are_ignored() -> None:
    # Written by a newer shim during a rolling upgrade.
    assert PlanRecord.decode('{"count": 2, "at": 5, "sent": true, "shard": "b"}') == \
        PlanRecord(count=2, at=5.0, sent=True)


@pytest.mark.parametrize(("raw", "message"), [
    ("", "not JSON"),
    ("{not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    ("[1, 2]", "expected an object, got list"),
    ("null", "expected an object, got NoneType"),
    ('{"at": 5}', "missing field 'count'"),
    ('{"count": 2}', "missing field 'at'"),
    ('{"count": 0, "at": 5}', "'count' must be at least 1"),
    ('{"count": -4, "at": 5}', "'count' must be at least 1"),
    ('{"count": 2.0, "at": 5}', "'count' must be int"),
    ('{"count": true, "at": 5}', "'count' must be int, got bool"),
    ('{"count": "2", "at": 5}', "'count' must be int"),
    ('{"count": 2, "at": "now"}', "'at' must be a number"),
    ('{"count": 2, "at": NaN}', "'at' must be finite"),
    ('{"count": 2, "at": Infinity}', "'at' must be finite"),
    ('{"count": 2, "at": 5, "sent": "yes"}', "'sent' must be bool"),
    ('{"count": 2, "at": 5, "lost_at": -Infinity}', "'lost_at' must be finite"),
    ('{"count": 2, "at": 5, "lost_at": false}', "'lost_at' must be a number"),
])
def test_a_malformed_plan_is_a_record_error(raw: str | bytes, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        PlanRecord.decode(raw)


def test_a_deeply_nested_plan_is_a_record_error_not_a_recursion_error() -> None:
    with pytest.raises(RecordError, match="not JSON"):
        PlanRecord.decode("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("decode", [
    lambda: PlanRecord.decode(json.dumps({"count": HUGE, "at": 1})),
    lambda: PlanRecord.decode(HUGE),
    lambda: JobSpec.from_json({"uuid": "u", "argv": HUGE, "wants_output": True}),
    lambda: SliceEnvelope.from_json({"index": 0, "count": 1, "tasks": HUGE}),
    lambda: decode_results(json.dumps([{"uuid": HUGE, "exit_code": "0"}])),
], ids=["plan-field", "plan-raw", "job", "envelope", "results"])
def test_error_messages_stay_short_whatever_the_value(decode: Callable[[], object]) -> None:
    with pytest.raises(RecordError) as caught:
        decode()
    assert len(str(caught.value)) < SHOWN_CHARS + 150


@pytest.mark.parametrize("value", [b"\xff" * (32 << 20), "\x00" * (32 << 20),
                                   memoryview(b"\xff" * (32 << 20)), bytearray(32 << 20)],
                         ids=["bytes", "str", "memoryview", "bytearray"])
def test_showing_a_huge_value_copies_only_what_is_shown(value: object) -> None:
    # A stored value can be hundreds of megabytes; its whole repr (four
    # characters a byte here) must not be built to show 80 of them.
    tracemalloc.start()
    try:
        shown = show(value)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(shown) <= SHOWN_CHARS + 3 and shown.endswith("...")
    assert peak < 64 * 1024


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["count", "at", "sent", "lost_at", "x"]), inner,
                                      max_size=5),
                    max_leaves=10))
def test_any_json_value_is_a_plan_or_a_record_error(value: object) -> None:
    try:
        record = PlanRecord.from_json(value)
    except RecordError:
        return
    assert record.count >= 1 and PlanRecord.from_json(record.to_json()) == record


# --- SliceMessage ---------------------------------------------------------------


def test_a_slice_message_round_trips_through_its_kwargs() -> None:
    message = SliceMessage(function="echo_v0.0", batch="echo_v0.0:u:d", index=1, count=2, jobs=JOBS)

    kwargs = json.loads(json.dumps(message.to_kwargs()))

    assert SliceMessage.from_kwargs(kwargs) == message


def test_the_script_is_sent_only_when_set() -> None:
    # A worker of an older release has no ``script`` parameter: never send it unset.
    message = SliceMessage(function="f", batch="b", index=0, count=1, jobs=())
    assert set(message.to_kwargs()) == {"function", "batch", "index", "count", "jobs"}
    named = SliceMessage(function="f", batch="b", index=0, count=1, jobs=(), script="f = m")
    assert SliceMessage.from_kwargs(named.to_kwargs()) == named


def test_a_slice_message_shows_its_size_not_its_argv() -> None:
    message = SliceMessage(function="f", batch="b", index=1, count=3, jobs=JOBS)
    assert message.repr_kwargs() == "{'function': 'f', 'batch': 'b', 'slice': '2/3', 'tasks': 2}"


GOOD = {"function": "f", "batch": "b", "index": 0, "count": 1, "jobs": []}


@pytest.mark.parametrize(("changes", "message"), [
    ({"function": None}, "'function' must be str"),
    ({"batch": 3}, "'batch' must be str"),
    ({"index": -1}, "'index' must be at least 0"),
    ({"index": 1}, "index 1 is not below count 1"),
    ({"count": 0}, "'count' must be at least 1"),
    ({"jobs": {"t1": {}}}, "'jobs' must be list"),
    ({"jobs": [{"uuid": "t1"}]}, "missing field 'argv'"),
    ({"script": 5}, "'script' must be str"),
])
def test_a_malformed_slice_message_is_a_record_error(changes: dict[str, object], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        SliceMessage.from_kwargs({**GOOD, **changes})


@pytest.mark.parametrize("name", ["function", "batch", "index", "count", "jobs"])
def test_a_slice_message_missing_a_field_is_a_record_error(name: str) -> None:
    with pytest.raises(RecordError, match=f"missing field {name!r}"):
        SliceMessage.from_kwargs({k: v for k, v in GOOD.items() if k != name})


# --- SliceEnvelope and the stored results -------------------------------------


def test_a_slice_envelope_round_trips() -> None:
    envelope = SliceEnvelope(index=0, count=2, tasks=5)
    assert SliceEnvelope.from_json(json.loads(json.dumps(envelope.to_json()))) == envelope
    assert envelope.to_json() == {"index": 0, "count": 2, "tasks": 5}


def test_an_older_workers_envelope_carries_its_results_inline() -> None:
    # Mid-upgrade: a worker of the previous release returned its results.
    legacy = {"index": 0, "count": 1, "results": [r.to_json() for r in RESULTS]}

    envelope = SliceEnvelope.from_json(legacy)

    assert envelope.tasks == 2 and envelope.inline == tuple(RESULTS)
    assert SliceEnvelope.from_json(envelope.to_json()) == envelope


@pytest.mark.parametrize(("data", "message"), [
    ({"index": 0, "count": 1}, "missing field 'tasks'"),
    ({"count": 1, "tasks": 1}, "missing field 'index'"),
    ({"index": 0, "count": 1, "tasks": -1}, "'tasks' must be at least 0"),
    ({"index": 0, "count": 1, "results": {"t1": {}}}, "expected a list of results, got dict"),
    ({"index": 0, "count": 1, "results": [None]}, r"results\[0\]: expected an object"),
    ("SUCCESS", "expected an object, got str"),
    (None, "expected an object, got NoneType"),
])
def test_a_malformed_slice_envelope_is_a_record_error(data: object, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        SliceEnvelope.from_json(data)


def test_stored_results_round_trip() -> None:
    assert decode_results(encode_results(RESULTS)) == RESULTS
    assert decode_results(encode_results([])) == []


@pytest.mark.parametrize(("raw", "message"), [
    ("{}", "expected a list of results, got dict"),
    ("[1]", r"stored results\[0\]: expected an object, got int"),
    ('[{"uuid": "t1"}]', r"stored results\[0\]: .*'exit_code' must be an integer"),
    ('[{"uuid": "t1", "exit_code": 0, "finished_at": "yesterday"}]', "bad 'finished_at'"),
    ("[", "not JSON"),
])
def test_malformed_stored_results_are_a_record_error(raw: str, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        decode_results(raw)


def test_results_that_fit_one_value_are_stored_as_they_always_were() -> None:
    (only,) = encode_result_parts(RESULTS)
    assert only == encode_results(RESULTS)
    assert decode_outcome(only) == (RESULTS, 0)


def _outputs(*sizes: int) -> list[TaskResult]:
    return [TaskResult(uuid=f"t{i}", exit_code=0, finished_at=WHEN, stdout="\x01" * size, stderr="")
            for i, size in enumerate(sizes)]


@pytest.mark.parametrize("sizes", [(100,) * 12, (5, 900, 5, 5), (900,), (300, 300, 300)],
                         ids=["many small", "one big among small", "one big alone", "each near the cut"])
def test_results_too_big_for_one_value_are_cut_between_results(sizes: tuple[int, ...]) -> None:
    # Each \x01 takes six characters of JSON: binary output is the worst case.
    results = _outputs(*sizes)
    part_chars = 2000
    first, *rest = encode_result_parts(results, part_chars)

    head, more = decode_outcome(first)
    assert more == len(rest)
    assert (more > 0) == (len(results) > 1), "every case but one result alone must be cut"
    assert head + [r for part in rest for r in decode_results(part)] == results
    one_result = {len(encode_results(results[i:i + 1])) for i in range(len(results))}
    stored = json.loads(first)
    head_list = stored["results"] if more else stored
    for part in [json.dumps(head_list), *rest]:
        # At most the cut, unless the part is a single result that is bigger alone.
        assert len(part) <= part_chars or len(part) in one_result


@given(outputs=st.lists(st.text(max_size=300), min_size=1, max_size=12),
       part_chars=st.integers(min_value=50, max_value=5000))
def test_parts_of_any_output_read_back_as_the_results_in_order(outputs: list[str], part_chars: int) -> None:
    # Any text, control and astral characters included: the cheap bound that
    # skips the cutting must never let a part pass the cut unnoticed.
    results = [TaskResult(uuid=f"t{i}", exit_code=0, finished_at=WHEN, stdout=out, stderr="")
               for i, out in enumerate(outputs)]
    first, *rest = encode_result_parts(results, part_chars)
    head, more = decode_outcome(first)
    assert more == len(rest)
    assert head + [r for part in rest for r in decode_results(part)] == [
        TaskResult.from_json(r.to_json()) for r in results]
    if len(encode_results(results)) <= part_chars:
        assert first == encode_results(results)


def test_results_at_the_cut_are_one_part_and_one_more_character_makes_two() -> None:
    results = _outputs(100, 100)
    whole = len(encode_results(results))
    assert len(encode_result_parts(results, whole)) == 1
    assert len(encode_result_parts(results, whole - 1)) == 2


@pytest.mark.parametrize(("raw", "message"), [
    ('{"parts": 1, "results": []}', "'parts' must be at least 2"),
    ('{"parts": "3", "results": []}', "'parts' must be int"),
    ('{"parts": 2}', "expected a list of results, got NoneType"),
    ('{"results": []}', "'parts'"),
])
def test_a_malformed_first_part_is_a_record_error(raw: str, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        decode_outcome(raw)


def test_results_name_where_they_were_read() -> None:
    with pytest.raises(RecordError, match="^answer record: expected a list"):
        results_from_json(None, "answer record")


# --- the chord callback's records ---------------------------------------------------


def test_collect_records_round_trip() -> None:
    message = CollectMessage(function="f", batch="b", slices=("b:slice-1-of-2", "b:slice-2-of-2"))
    assert CollectMessage.from_kwargs(json.loads(json.dumps(message.to_kwargs()))) == message
    envelope = CollectEnvelope(function="f", batch="b", slices=2)
    assert CollectEnvelope.from_json(json.loads(json.dumps(envelope.to_json()))) == envelope
    # An earlier release's callback also counted the tasks: still read.
    earlier = {**envelope.to_json(), "tasks": 7}
    assert CollectEnvelope.from_json(earlier) == envelope


@pytest.mark.parametrize("kwargs", [
    {"function": "f", "batch": "b"},
    {"function": "f", "batch": "b", "slices": "b:slice-1-of-1"},
    {"function": "f", "batch": "b", "slices": [1]},
])
def test_a_malformed_collect_message_is_a_record_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(RecordError, match="collect message"):
        CollectMessage.from_kwargs(kwargs)


def test_a_malformed_collect_envelope_is_a_record_error() -> None:
    with pytest.raises(RecordError, match="collect envelope: missing field 'slices'"):
        CollectEnvelope.from_json({"function": "f", "batch": "b", "tasks": 1})


# --- the answer record (worker.batch.answers) ------------------------------------------


@pytest.mark.parametrize(("raw", "message"), [
    ("{not json", "answer record: not JSON"),
    ('"done"', "answer record: expected an object, got str"),
    ('{"at": 1}', "answer record: missing field 'slices'"),
    ('{"slices": {}}', "answer record: field 'slices' must be list"),
    ('{"slices": []}', "answer record's failed: expected a list of results, got NoneType"),
    ("[1]", r"answer record\[0\]: expected an object"),
])
def test_a_malformed_answer_record_is_a_record_error(raw: str, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        answer_record_settlement(raw)


def test_timestamps_convert_as_datetime_does_and_each_value_once() -> None:
    stamps = Timestamps()
    other = datetime(2026, 1, 1, 0, 0, 1, 5, tzinfo=UTC)

    assert stamps.text(WHEN) == WHEN.isoformat()
    assert stamps.text(other) == other.isoformat()
    # An equal datetime (not the same object) gets the text already made.
    assert stamps.text(datetime.fromisoformat(WHEN.isoformat())) is stamps.text(WHEN)
    assert stamps.moment(WHEN.isoformat()) == WHEN
    assert stamps.moment(WHEN.isoformat()) is stamps.moment(WHEN.isoformat())
    with pytest.raises(ValueError, match="Invalid isoformat"):
        stamps.moment("yesterday")


def test_timestamps_give_each_zone_its_own_text() -> None:
    # 12:00 UTC and 13:00 at +01:00 are equal datetimes with different text.
    stamps = Timestamps()
    noon = datetime(2026, 1, 1, 12, tzinfo=UTC)
    one_pm = datetime(2026, 1, 1, 13, tzinfo=timezone(timedelta(hours=1)))

    assert stamps.text(noon) == "2026-01-01T12:00:00+00:00"
    assert stamps.text(one_pm) == "2026-01-01T13:00:00+01:00"


def test_results_sharing_a_finishing_time_round_trip_with_their_own_times() -> None:
    later = datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)
    results = [TaskResult(uuid=f"t{i}", exit_code=i, finished_at=later if i == 2 else WHEN)
               for i in range(4)]

    decoded = decode_results(encode_results(results))

    assert [r.finished_at for r in decoded] == [WHEN, WHEN, later, WHEN]
    assert decoded == results
