"""Unit tests of the answer record codec (worker.batch.answers)."""

from __future__ import annotations

import json

import pytest

from worker.batch.answers import Settlement, answer_record, answer_record_settlement, answers_tasks
from worker.batch.dispatch import SliceRef
from worker.contract.results import failed_results


def test_an_answer_record_round_trips() -> None:
    failed = {r.uuid: r for r in failed_results(["t2"], "amworker: worker lost: x")}
    raw = answer_record(Settlement(finished=(SliceRef("s1", ("t1",)),), failed=failed), at=1_700_000_000.0)

    back = answer_record_settlement(raw)

    assert [ref.task_id for ref in back.finished] == ["s1"]
    assert back.failed["t2"].stderr == failed["t2"].stderr
    assert back.missing.startswith("amworker: answered before: this batch was answered at 2023-")


@pytest.mark.parametrize("at", [1e300, -1e300, float("nan")], ids=["far", "before", "nan"])
def test_an_absurd_answer_time_still_gives_the_record(at: float) -> None:
    # datetime.fromtimestamp raises OverflowError, OSError or ValueError for
    # these; the record is still this batch's, so its slices are still read.
    raw = json.dumps({"at": at, "slices": ["s1"], "failed": []})

    back = answer_record_settlement(raw)

    assert [ref.task_id for ref in back.finished] == ["s1"]
    assert "answered at ?" in back.missing


def test_an_old_shims_whole_answer_is_read_and_matched_by_task() -> None:
    raw = json.dumps([r.to_json() for r in failed_results(["t1", "t2"], "done")])

    assert set(answer_record_settlement(raw).failed) == {"t1", "t2"}
    assert answers_tasks(raw, ["t2", "t1"])
    assert not answers_tasks(raw, ["t1", "t3"])
    # An answer record (or garbage) is taken as this batch's: never run twice.
    assert answers_tasks(json.dumps({"slices": []}), ["t9"])
    assert answers_tasks("{not json", ["t9"])


def test_a_stored_answer_nested_thousands_deep_is_taken_as_this_batchs() -> None:
    # Unreadable, as any value that is not JSON: never a RecursionError that
    # would fail the batch.
    assert answers_tasks("[" * 100_000, ["t1"])
