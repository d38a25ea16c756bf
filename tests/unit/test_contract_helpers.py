"""Unit tests of the one-way-to-do-it helpers the shim and the pool share.

Celery's result key (asked of its backend, never copied), failing tasks and
jobs with a cause, and what a batch comes to once its slices are judged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from celery import Celery

from worker.batch.answers import Settlement
from worker.batch.dispatch import SliceRef
from worker.batch.settling import FINISHED, PENDING, GiveUp, Verdict, tally
from worker.celery import celery_config
from worker.client.job import Job
from worker.codec.records import TaskResult, TaskSpec
from worker.config import Settings
from worker.contract import keys
from worker.contract.plan import JobSpec
from worker.contract.results import Wanting, fail_jobs, fail_tasks, failed_results

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


# --- Celery's result key ----------------------------------------------------------


@pytest.fixture
def app() -> Iterator[Celery]:
    celery = Celery("keys-test")
    celery.conf.update(celery_config(Settings()))
    try:
        yield celery
    finally:
        celery.close()


def test_the_result_key_is_the_one_celery_stores_under(app: Celery) -> None:
    task_id = "echo_v0.0:u:d:slice-1-of-2"

    key = keys.result_key(app.backend, task_id)

    assert key == "celery-task-meta-" + task_id  # Celery's default, as its Redis backend stores it
    assert key == keys.result_prefix(app.backend) + task_id


def test_a_global_key_prefix_is_followed(app: Celery) -> None:
    # An operator's transport option moves every result key; a hand-copied
    # "celery-task-meta-" would then wait on keys that never appear.
    app.conf.result_backend_transport_options = {"global_keyprefix": "site-a:"}

    assert keys.result_prefix(app.backend) == "site-a:celery-task-meta-"


class _OddBackend:
    """A backend whose keys do not end with the task id."""

    def get_key_for_task(self, task_id: str, key: str = "") -> str:
        return f"meta:{task_id}:v2"


def test_a_backend_whose_keys_do_not_end_with_the_id_is_refused() -> None:
    with pytest.raises(ValueError, match="does not end with the task id"):
        keys.result_prefix(_OddBackend())


def test_an_app_without_a_result_backend_is_a_clear_error() -> None:
    bare = Celery("no-backend")
    try:
        with pytest.raises(ValueError, match="DisabledBackend stores no results"):
            keys.result_prefix(bare.backend)
    finally:
        bare.close()


# --- failing tasks with a cause ---------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda uuid, wants: TaskSpec(uuid=uuid, arguments="", created_date="", wants_output=wants),
    lambda uuid, wants: JobSpec(uuid=uuid, argv=(), wants_output=wants),
], ids=["read", "prepared"])
def test_fail_tasks_keeps_whether_each_output_is_wanted(make: Callable[[str, bool], Wanting]) -> None:
    tasks = [make("a", True), make("b", False)]

    failed = fail_tasks(tasks, "amworker: broker lost: x", clock=lambda: WHEN)

    assert list(failed) == ["a", "b"]
    assert {u: r.wants_output for u, r in failed.items()} == {"a": True, "b": False}
    assert all(r.exit_code == 1 and r.stderr == "amworker: broker lost: x\n" and r.finished_at == WHEN
               for r in failed.values())


def test_fail_tasks_is_failed_results_by_uuid() -> None:
    tasks = [JobSpec(uuid="a", argv=(), wants_output=True)]
    assert fail_tasks(tasks, "x", clock=lambda: WHEN) == \
        {r.uuid: r for r in failed_results(["a"], "x", clock=lambda: WHEN)}


def test_fail_jobs_keeps_a_jobs_own_failure_code() -> None:
    ran, failed = Job("f", "a", []), Job("f", "b", [])
    failed.set_status(5)
    failed.write_error("own error\n")

    fail_jobs([ran, failed], "amworker: time limit: x")

    assert (ran.get_exit_code(), ran.status_code) == (1, "error")
    assert failed.get_exit_code() == 5
    assert ran.get_stderr() == "amworker: time limit: x\n"
    assert failed.get_stderr() == "own error\namworker: time limit: x\n"


# --- what a batch comes to ---------------------------------------------------------------------

SLICES = (SliceRef("s1", ("a", "b")), SliceRef("s2", ("c",)))


def _lost(uuids: tuple[str, ...]) -> dict[str, TaskResult]:
    return {r.uuid: r for r in failed_results(list(uuids), "amworker: worker lost: x", clock=lambda: WHEN)}


@pytest.mark.parametrize("verdicts", [
    (PENDING, PENDING), (PENDING, FINISHED), (FINISHED, PENDING), (GiveUp("x", revoke=True), PENDING),
])
def test_a_batch_with_a_pending_slice_is_not_settled(verdicts: tuple[Verdict, Verdict]) -> None:
    assert tally(SLICES, verdicts, {"s1": _lost(SLICES[0].uuids)}, dict.fromkeys("abc", True)) is None


def test_finished_slices_are_fetched_later_and_given_up_ones_fail_now() -> None:
    settled = tally(SLICES, (FINISHED, GiveUp("x", revoke=False)), {"s2": _lost(("c",))},
                    dict.fromkeys("abc", True))

    assert settled == Settlement(finished=(SLICES[0],), failed=_lost(("c",)))


def test_only_the_batchs_own_tasks_are_failed() -> None:
    # A slice's results may name a task the request did not (never answered).
    given_up = {"s1": _lost(("a", "b", "stray")), "s2": _lost(("c",))}
    verdict = GiveUp("x", revoke=False)

    settled = tally(SLICES, (verdict, verdict), given_up, dict.fromkeys("abc", True))

    assert settled is not None and settled.finished == () and set(settled.failed) == {"a", "b", "c"}
