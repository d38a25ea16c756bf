"""The stock ``Job``'s bookkeeping methods, against a real ``Tasks`` table (issue 9, Found 7).

Django is set up once per session by the ``django_sqlite`` fixture
(tests/unit/conftest.py); each test starts from an empty table.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from worker.client.job import Job

if TYPE_CHECKING:
    from worker.models import Task

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def tasks(django_sqlite: object) -> Iterator[type[Task]]:
    from worker.models import Task

    Task.objects.all().delete()
    yield Task
    Task.objects.all().delete()


def jobs_with_rows(task_model: type[Task], count: int) -> list[Job]:
    jobs = [Job("copy_v0.0", f"task-{i:04d}", ["a"]) for i in range(count)]
    task_model.objects.bulk_create([task_model(taskuuid=j.uuid, execution="copy_v0.0") for j in jobs])
    return jobs


def row(task_model: type[Task], uuid: str) -> dict[str, Any]:
    return task_model.objects.filter(pk=uuid).values(
        "starttime", "endtime", "exitcode", "stdout", "stderror").get()


def test_bulk_set_start_times_sets_one_time_on_jobs_and_rows(tasks: type[Task]) -> None:
    jobs = jobs_with_rows(tasks, 3)
    before = datetime.now(UTC)
    Job.bulk_set_start_times(jobs)
    started = {job.start_time for job in jobs}
    assert len(started) == 1
    [moment] = started
    assert moment is not None and moment >= before
    assert {row(tasks, j.uuid)["starttime"] for j in jobs} == {moment}


def test_bulk_mark_failed_fails_rows_and_sets_status_to_the_message(tasks: type[Task]) -> None:
    jobs = jobs_with_rows(tasks, 2)
    jobs[0].write_error("own text")
    Job.bulk_mark_failed(jobs, "the batch could not run\udcff")
    for job in jobs:
        assert (job.get_exit_code(), job.status_code) == (1, "the batch could not run\udcff")
        stored = row(tasks, job.uuid)
        assert stored["exitcode"] == 1
        assert stored["endtime"] is not None
        assert stored["stderror"] == "the batch could not run\N{REPLACEMENT CHARACTER}"
    assert jobs[0].error == "own text"  # stock leaves the job's own stderr alone


@pytest.mark.parametrize("capture", [True, False])
def test_update_task_status_writes_the_result(
    tasks: type[Task], capture: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMWORKER_CAPTURE_OUTPUT", "on" if capture else "off")
    ok, failed = jobs_with_rows(tasks, 2)
    for job in (ok, failed):
        job.write_output("out")
        job.write_error("err")
    failed.set_status(3)
    for job in (ok, failed):
        job.update_task_status()
        assert job.end_time is not None
    assert row(tasks, ok.uuid) == {
        "starttime": None, "endtime": ok.end_time, "exitcode": 0,
        "stdout": "out" if capture else None, "stderror": "err" if capture else None,
    }
    assert row(tasks, failed.uuid) == {
        "starttime": None, "endtime": failed.end_time, "exitcode": 3,
        "stdout": "out" if capture else None, "stderror": "err",
    }


def test_missing_rows_are_not_an_error(tasks: type[Task]) -> None:
    job = Job("copy_v0.0", "no-such-task", [])
    Job.bulk_set_start_times([job])
    Job.bulk_mark_failed([job], "x")
    job.update_task_status()
    assert job.get_exit_code() == 1
    assert not tasks.objects.filter(pk="no-such-task").exists()


def test_marking_more_jobs_than_sqlites_oldest_parameter_limit_marks_every_row(
    tasks: type[Task],
) -> None:
    import sqlite3

    from django.db import connection
    from django.db.backends.signals import connection_created
    from django.test.utils import CaptureQueriesContext

    jobs = jobs_with_rows(tasks, 2500)

    def old_sqlite(connection: Any, **_: object) -> None:
        # An SQLite built before 3.32 takes 999 parameters a statement; held
        # on every connection, so a retry on a fresh one meets it too.
        connection.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)

    connection.close()
    connection_created.connect(old_sqlite)
    try:
        with CaptureQueriesContext(connection) as captured:
            Job.bulk_mark_failed(jobs, "refused")
    finally:
        connection_created.disconnect(old_sqlite)
        connection.close()  # the next connection has the build's own limit
    assert tasks.objects.filter(exitcode=1, stderror="refused").count() == 2500
    updates = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("UPDATE")]
    # The captured SQL has its parameters filled in: count the keys.
    assert [sql.count("'task-") for sql in updates] == [897, 897, 706]
