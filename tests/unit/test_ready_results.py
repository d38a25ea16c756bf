"""A slice's results stored answer-ready: the joined answer is encode_result's, byte for byte."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.batch.answers import Settlement, ready_answer
from worker.batch.dispatch import SliceRef
from worker.codec.records import Batch, Encoding, TaskResult, TaskSpec
from worker.codec.wire import encode_result, join_json_answer, json_answer_part
from worker.contract.records import RecordError
from worker.contract.slices import (
    READY_MARK,
    ReadyResults,
    decode_outcome,
    encode_ready_results,
    encode_result_parts,
    failed_by_amworker,
)
from worker.errors import Cause, reason
from worker.pool.runtime import _stored_form

pytestmark = pytest.mark.timeout(60)

# Any code point, lone surrogates included: output is sanitised on the way
# out, a task UUID is not (the controller chose it).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
CLEAN_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
MOMENTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.just(UTC))
RESULTS = st.builds(
    TaskResult, uuid=CLEAN_TEXT, exit_code=st.integers(-300, 300), finished_at=MOMENTS,
    stdout=ANY_TEXT, stderr=ANY_TEXT, wants_output=st.booleans(),
)
NOW = datetime(2026, 12, 4, 18, 0, 0, 123456, tzinfo=UTC)


def unique(results: list[TaskResult]) -> list[TaskResult]:
    """One result per UUID, as a request's mapping has."""
    return list({r.uuid: r for r in results}.values())


def cut(results: list[TaskResult], sizes: list[int]) -> list[list[TaskResult]]:
    """``results`` in contiguous slices (the plan's shape), the last taking the rest."""
    slices, start = [], 0
    for size in sizes:
        slices.append(results[start:start + size])
        start += size
    return [*slices, results[start:]]


@settings(max_examples=300, deadline=None)
@given(st.lists(RESULTS, max_size=12).map(unique), st.lists(st.integers(0, 4), max_size=3))
def test_joined_parts_are_the_encoded_answer_byte_for_byte(results: list[TaskResult],
                                                           sizes: list[int]) -> None:
    parts = [json_answer_part(part) for part in cut(results, sizes)]
    assert None not in parts
    assert join_json_answer(p for p in parts if p is not None) == encode_result(results, Encoding.JSON)


def test_a_lone_surrogate_in_a_task_uuid_has_no_part_and_is_answered_escaped() -> None:
    odd = TaskResult(uuid="task-\ud800", exit_code=0, finished_at=NOW)
    assert json_answer_part([odd]) is None
    assert encode_ready_results([odd]) is None
    # The long way escapes the whole answer to ASCII, as it always did.
    assert b"\\ud800" in encode_result([odd], Encoding.JSON)


def results_of(count: int, *, wants: bool = True, offset: int = 0) -> list[TaskResult]:
    return [TaskResult(uuid=f"task-{offset + i}", exit_code=i % 3, finished_at=NOW + timedelta(seconds=i),
                       stdout=f"out {i}\n", stderr="é\x00" if i % 2 else "", wants_output=wants)
            for i in range(count)]


def test_ready_results_read_back_with_their_index() -> None:
    results = results_of(3) + results_of(2, wants=False, offset=3)
    raw = encode_ready_results(results)
    assert raw is not None and raw.startswith(READY_MARK + b"\n")
    ready = ReadyResults.parse(raw)
    assert ready is not None
    assert ready.uuids == tuple(r.uuid for r in results)
    assert ready.wants == (True, True, True, False, False)
    assert ready.by_amworker == 0
    assert bytes(ready.part) == json_answer_part(results)


def test_tasks_amworker_failed_are_counted_in_the_index() -> None:
    failed = TaskResult(uuid="t", exit_code=1, finished_at=NOW, stderr=reason(Cause.WORKER_LOST, "gone"))
    script_failed = TaskResult(uuid="u", exit_code=1, finished_at=NOW, stderr="a script's own error")
    ready = ReadyResults.parse(encode_ready_results([failed, script_failed]) or b"")
    assert ready is not None and ready.by_amworker == 1


def test_ready_results_decode_to_results_that_encode_to_the_same_answer() -> None:
    results = results_of(4) + results_of(2, wants=False, offset=4)
    raw = encode_ready_results(results)
    assert raw is not None
    decoded, more = decode_outcome(raw)
    assert more == 0
    assert [r.uuid for r in decoded] == [r.uuid for r in results]
    assert [r.exit_code for r in decoded] == [r.exit_code for r in results]
    assert [r.finished_at for r in decoded] == [r.finished_at for r in results]
    # A task that wants no output keeps none: it is never sent any.
    assert [(r.stdout, r.wants_output) for r in decoded[4:]] == [("", False), ("", False)]
    assert encode_result(decoded, Encoding.JSON) == encode_result(results, Encoding.JSON)
    # Pickle's memo may differ with the objects' identities; what unpickles may not.
    assert pickle.loads(encode_result(decoded, Encoding.PICKLE)) == pickle.loads(
        encode_result(results, Encoding.PICKLE))


def test_the_earlier_form_is_not_taken_for_the_ready_one() -> None:
    (raw,) = encode_result_parts(results_of(2))
    assert ReadyResults.parse(raw) is None
    assert ReadyResults.parse(raw.encode()) is None


PART_A = b'"a":{"exitCode":0,"finishedTimestamp":"2026-12-04T18:00:00+00:00"}'


@pytest.mark.parametrize(("raw", "message"), [
    (READY_MARK + b"\n", "expected 3 lines"),
    (READY_MARK + b"\nnot json\n", "answer-ready results"),
    (READY_MARK + b'\n{"tasks": ["a"], "wants": "", "by_amworker": 0}\n' + PART_A, "do not match"),
    (READY_MARK + b'\n{"tasks": ["a"], "wants": "1"}\n' + PART_A, "by_amworker"),
    (READY_MARK + b'\n{"tasks": [1], "wants": "1", "by_amworker": 0}\n' + PART_A, "do not match"),
    (READY_MARK + b'\n{"tasks": ["a"], "wants": "x", "by_amworker": 0}\n' + PART_A, "do not match"),
    (READY_MARK + b'\n{"tasks": ["a"], "wants": "1", "by_amworker": 2}\n' + PART_A, "failures"),
    (READY_MARK + b'\n{"tasks": ["a"], "wants": "1", "by_amworker": 0, "quiet_reasons": {"a": 1}}\n'
     + PART_A, "failures"),
    (READY_MARK + b'\n{"tasks": ["a"], "wants": "1", "by_amworker": 0}\n', "not the index's tasks"),
    (READY_MARK + b'\n{"tasks": ["a"], "wants": "1", "by_amworker": 0}\n' + PART_A[:-1],
     "not the index's tasks"),
    (READY_MARK + b'\n{"tasks": ["b"], "wants": "1", "by_amworker": 0}\n' + PART_A, "not the index's tasks"),
    (READY_MARK + b'\n{"tasks": [], "wants": "", "by_amworker": 0}\n' + PART_A, "no tasks"),
])
def test_a_malformed_ready_value_is_a_record_error(raw: bytes, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        decode_outcome(raw)


def test_a_part_that_is_not_the_index_is_a_record_error() -> None:
    raw = encode_ready_results(results_of(2))
    assert raw is not None
    other = raw.replace(b'"task-1":', b'"task-9":')
    assert ReadyResults.parse(other) is not None  # only the part's ends are checked when joining...
    with pytest.raises(RecordError, match="not the index's"):
        decode_outcome(other)  # ...and all of it when decoded


def test_an_empty_slice_reads_back_empty() -> None:
    ready = ReadyResults.parse(encode_ready_results([]) or b"")
    assert ready is not None and ready.uuids == () and bytes(ready.part) == b""
    assert ready.results() == []


def test_amworkers_reason_for_a_quiet_task_survives_decoding() -> None:
    # A task that wants no output has none in the part; amworker's own
    # reason is kept in the index, so the shim still tells it from a
    # script's failure when it answers result by result.
    lost = TaskResult(uuid="q", exit_code=1, finished_at=NOW, stderr=reason(Cause.WORKER_LOST, "gone"),
                      wants_output=False)
    script = TaskResult(uuid="s", exit_code=2, finished_at=NOW, stderr="its own", wants_output=False)
    decoded, _ = decode_outcome(encode_ready_results([lost, script]) or b"")
    assert [failed_by_amworker(r) for r in decoded] == [True, False]
    assert decoded[0].stderr == lost.stderr and decoded[1].stderr == ""


def test_a_text_value_is_read_as_its_bytes() -> None:
    raw = encode_ready_results(results_of(2))
    assert raw is not None
    ready = ReadyResults.parse(raw.decode())
    assert ready is not None and ready.uuids == ("task-0", "task-1")
    assert ReadyResults.parse("[]") is None


# -- what the pool stores -------------------------------------------------------


def test_the_pool_stores_the_ready_form_only_when_asked() -> None:
    results = results_of(3)
    assert _stored_form(results, 1 << 20, answer_ready=False) == encode_result_parts(results)
    assert _stored_form(results, 1 << 20, answer_ready=True) == [encode_ready_results(results)]


def test_results_too_big_for_one_value_are_stored_in_parts_even_when_asked() -> None:
    results = [TaskResult(uuid=f"t{i}", exit_code=0, finished_at=NOW, stdout="x" * 1000) for i in range(5)]
    stored = _stored_form(results, 3000, answer_ready=True)
    assert len(stored) > 1
    assert stored == encode_result_parts(results, 3000)
    # Results that may not fit one value (by the bound) are never stored ready.
    might_not_fit = results[:2]
    assert _stored_form(might_not_fit, 3000, answer_ready=True) == encode_result_parts(might_not_fit, 3000)


def test_a_lone_surrogate_uuid_is_stored_in_the_earlier_form() -> None:
    results = [TaskResult(uuid="t\udfff", exit_code=0, finished_at=NOW)]
    assert _stored_form(results, 1 << 20, answer_ready=True) == encode_result_parts(results)


# -- what the shim answers --------------------------------------------------------


def batch_of(results: list[TaskResult], encoding: Encoding = Encoding.JSON) -> Batch:
    return Batch(tasks=tuple(TaskSpec(uuid=r.uuid, created_date="2026-12-04 18:00:00",
                                      arguments="", wants_output=r.wants_output) for r in results),
                 encoding=encoding)


def settled(slices: list[list[TaskResult]], **changes: object) -> Settlement:
    refs = tuple(SliceRef(f"slice-{i}", tuple(r.uuid for r in part)) for i, part in enumerate(slices))
    stored = {ref.task_id: encode_ready_results(part) for ref, part in zip(refs, slices, strict=True)}
    return Settlement(finished=refs, prefetched={k: v for k, v in stored.items() if v is not None},
                      **changes)  # type: ignore[arg-type]


def test_the_shim_joins_the_slices_parts_into_the_answer() -> None:
    results = results_of(5)
    joined = ready_answer(batch_of(results), settled([results[:3], results[3:]]))
    assert joined == (encode_result(results, Encoding.JSON), True)


def test_a_task_amworker_failed_makes_the_batch_not_ok() -> None:
    results = [*results_of(2), TaskResult(uuid="lost", exit_code=1, finished_at=NOW,
                                          stderr=reason(Cause.WORKER_LOST, "x"), wants_output=False)]
    joined = ready_answer(batch_of(results), settled([results]))
    assert joined is not None and joined[1] is False


@pytest.mark.parametrize("case", ["pickle", "order", "wants", "failed", "missing", "earlier form",
                                  "unreadable"])
def test_anything_but_the_plain_case_is_answered_result_by_result(case: str) -> None:
    results = results_of(4)
    batch, settlement = batch_of(results), settled([results[:2], results[2:]])
    if case == "pickle":
        batch = batch_of(results, Encoding.PICKLE)
    elif case == "order":
        batch = batch_of([*results[2:], *results[:2]])
    elif case == "wants":
        batch = batch_of([*results[:3], TaskResult(results[3].uuid, 0, NOW, wants_output=False)])
    elif case == "failed":
        settlement = settled([results[:2]], failed={results[2].uuid: results[2], results[3].uuid: results[3]})
    elif case == "missing":
        settlement = Settlement(finished=settlement.finished,
                                prefetched={"slice-0": settlement.prefetched["slice-0"]})
    elif case == "earlier form":
        (first,) = encode_result_parts(results[:2])
        settlement = Settlement(finished=settlement.finished,
                                prefetched={**settlement.prefetched, "slice-0": first.encode()})
    elif case == "unreadable":
        settlement = Settlement(finished=settlement.finished,
                                prefetched={**settlement.prefetched, "slice-0": READY_MARK + b"\n{"})
    assert ready_answer(batch, settlement) is None


def test_the_index_is_ascii_json() -> None:
    raw = encode_ready_results([TaskResult(uuid="tâche", exit_code=0, finished_at=NOW)])
    assert raw is not None
    index = raw.split(b"\n")[1]
    assert index.isascii()
    assert json.loads(index)["tasks"] == ["tâche"]


# -- the worst stored values ---------------------------------------------------------


def test_the_part_is_a_view_of_the_stored_value_not_a_copy() -> None:
    raw = encode_ready_results(results_of(3))
    assert raw is not None
    ready = ReadyResults.parse(raw)
    assert ready is not None and ready.part.obj is raw


def test_a_deeply_nested_index_is_a_record_error_not_a_recursion_error() -> None:
    raw = READY_MARK + b"\n" + b"[" * 200_000 + b"]" * 200_000 + b"\n" + PART_A
    with pytest.raises(RecordError, match="not JSON"):
        ReadyResults.parse(raw)


def test_a_huge_value_without_its_index_end_is_refused_with_a_short_message() -> None:
    raw = READY_MARK + b"\n" + b"x" * (64 * 1024 * 1024)
    with pytest.raises(RecordError) as refused:
        ReadyResults.parse(raw)
    assert len(str(refused.value)) < 300


def test_a_huge_unreadable_part_is_refused_with_a_short_message() -> None:
    # Ends that look right around 64 MiB that are not JSON: only decoding finds it.
    raw = READY_MARK + b'\n{"tasks": ["a"], "wants": "1", "by_amworker": 0}\n"a":{' \
        + b"\xff" * (64 * 1024 * 1024) + b"}"
    ready = ReadyResults.parse(raw)
    assert ready is not None
    with pytest.raises(RecordError) as refused:
        ready.results()
    assert len(str(refused.value)) < 300
