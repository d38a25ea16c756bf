"""Unit tests for Tasks-row bookkeeping against a real SQLite file.

Django is set up once per session by the ``django_sqlite`` fixture
(tests/unit/conftest.py); each test starts from an empty ``Tasks`` table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from worker.backoff import Backoff
from worker.codec.records import TaskResult
from worker.pool.bookkeeping import (
    DatabaseUnavailable,
    RetryPolicy,
    mark_finished,
    mark_started,
    with_retries,
)

if TYPE_CHECKING:
    from worker.models import Task

pytestmark = pytest.mark.timeout(60)

T0 = datetime(2024, 8, 4, 21, 34, 35, 241750, tzinfo=UTC)
T1 = T0 + timedelta(minutes=10)
#: One attempt: a failure is given up at once, no pause.
ONCE = RetryPolicy(attempts=1)


@pytest.fixture
def tasks(django_sqlite: object) -> Iterator[type[Task]]:
    """The ``Task`` model over an empty table."""
    from worker.models import Task

    Task.objects.all().delete()
    yield Task
    Task.objects.all().delete()


def insert(task_model: type[Task], count: int, *, prefix: str = "task", **fields: object) -> list[str]:
    """Insert rows as the controller does before it submits; return their uuids."""
    uuids = [f"{prefix}-{i:04d}" for i in range(count)]
    task_model.objects.bulk_create(
        [task_model(taskuuid=u, execution="copy_v0.0", arguments='"a"', **fields) for u in uuids]
    )
    return uuids


def result(uuid: str, exit_code: int = 0, stdout: str = "out", stderr: str = "err") -> TaskResult:
    return TaskResult(uuid=uuid, exit_code=exit_code, finished_at=T1, stdout=stdout, stderr=stderr)


def row(task_model: type[Task], uuid: str) -> dict[str, Any]:
    return task_model.objects.filter(pk=uuid).values(
        "starttime", "endtime", "client", "exitcode", "stdout", "stderror"
    ).get()


def count_statements(action: Any) -> list[str]:
    """The SQL run on the default connection during ``action`` (COMMIT included)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        action()
    return [query["sql"] for query in captured.captured_queries]


# --- mark_started -------------------------------------------------------------------


def test_mark_started_updates_exactly_the_given_rows(tasks: type[Task]) -> None:
    uuids = insert(tasks, 4)

    updated = mark_started(uuids[:2], when=T0, client="worker-a", policy=ONCE)

    assert updated == 2
    assert [row(tasks, u)["starttime"] for u in uuids] == [T0, T0, None, None]
    assert [row(tasks, u)["client"] for u in uuids] == ["worker-a", "worker-a", None, None]
    assert row(tasks, uuids[0])["endtime"] is None


def test_mark_started_ignores_missing_rows(tasks: type[Task]) -> None:
    (existing,) = insert(tasks, 1)

    assert mark_started([existing, "never-recorded"], when=T0, client="c", policy=ONCE) == 1
    assert tasks.objects.count() == 1


def test_mark_started_of_nothing_runs_no_sql(tasks: type[Task]) -> None:
    outcome: list[int | None] = []

    sql = count_statements(lambda: outcome.append(mark_started([], when=T0, client="c", policy=ONCE)))

    assert outcome == [0] and sql == []


# --- mark_finished ----------------------------------------------------------------------


def test_mark_finished_writes_each_rows_own_result(tasks: type[Task]) -> None:
    uuids = insert(tasks, 3, starttime=T0)

    updated = mark_finished(
        [result(uuids[0], 0, "ok\n", ""), result(uuids[1], 2, "", "failed\n")],
        capture_output=True,
        policy=ONCE,
    )

    assert updated == 2
    assert row(tasks, uuids[0]) == {"starttime": T0, "endtime": T1, "client": None, "exitcode": 0,
                                    "stdout": "ok\n", "stderror": ""}
    assert row(tasks, uuids[1]) == {"starttime": T0, "endtime": T1, "client": None, "exitcode": 2,
                                    "stdout": "", "stderror": "failed\n"}
    assert row(tasks, uuids[2]) == {"starttime": T0, "endtime": None, "client": None, "exitcode": None,
                                    "stdout": None, "stderror": None}


def test_mark_finished_ignores_missing_rows(tasks: type[Task]) -> None:
    (existing,) = insert(tasks, 1)

    updated = mark_finished([result(existing, 1), result("never-recorded", 1)], capture_output=True,
                            policy=ONCE)

    assert updated == 1
    assert row(tasks, existing)["exitcode"] == 1
    assert tasks.objects.count() == 1


def test_capture_output_off_leaves_output_of_successes_untouched(tasks: type[Task]) -> None:
    (uuid,) = insert(tasks, 1, stdout="earlier out", stderror="earlier err")

    mark_finished([result(uuid, 0, "new out", "new err")], capture_output=False, policy=ONCE)

    assert row(tasks, uuid) == {"starttime": None, "endtime": T1, "client": None, "exitcode": 0,
                                "stdout": "earlier out", "stderror": "earlier err"}


def test_capture_output_off_still_keeps_the_stderr_of_failures(tasks: type[Task]) -> None:
    ok, failed = insert(tasks, 2, stdout="earlier out", stderror="earlier err")

    mark_finished([result(ok, 0, "new out", "new err"), result(failed, 3, "new out", "why it failed")],
                  capture_output=False, policy=ONCE)

    assert (row(tasks, ok)["stdout"], row(tasks, ok)["stderror"]) == ("earlier out", "earlier err")
    assert (row(tasks, failed)["stdout"], row(tasks, failed)["stderror"]) == ("earlier out", "why it failed")


def test_lone_surrogates_are_sanitised_before_writing(tasks: type[Task]) -> None:
    (uuid,) = insert(tasks, 1)

    mark_finished([result(uuid, 0, "name \udcff.tif", "pair \ud83d\ude00 lone \ud800")],
                  capture_output=True, policy=ONCE)

    stored = row(tasks, uuid)
    assert stored["stdout"] == "name \ufffd.tif"
    assert stored["stderror"] == "pair \U0001f600 lone \ufffd"


def test_mark_finished_of_nothing_runs_no_sql(tasks: type[Task]) -> None:
    assert count_statements(lambda: mark_finished([], capture_output=True, policy=ONCE)) == []


def test_a_write_that_keeps_failing_raises_database_unavailable(tasks: type[Task]) -> None:
    from django.db import connection

    from worker.database import ensure_schema

    with connection.schema_editor() as editor:
        editor.delete_model(tasks)
    try:
        with pytest.raises(DatabaseUnavailable, match="recording the start of 1 task"):
            mark_started(["a"], when=T0, client="c", policy=ONCE)
        with pytest.raises(DatabaseUnavailable, match="recording the end of 1 task"):
            mark_finished([result("a")], capture_output=True, policy=ONCE)
    finally:
        ensure_schema()
    assert mark_started(["a"], when=T0, client="c", policy=ONCE) == 0


# --- statements per slice ------------------------------------------------------------------


#: The two statements around every write that bound its wait (see the test below).
BOUND = ("PRAGMA busy_timeout",)


def slice_statements(tasks: type[Task], size: int) -> tuple[list[str], list[str]]:
    """The data statements of one slice's start and end writes (the bound's two left out)."""
    tasks.objects.all().delete()
    uuids = insert(tasks, size)
    started = count_statements(lambda: mark_started(uuids, when=T0, client="c", policy=ONCE))
    finished = count_statements(lambda: mark_finished(
        [result(u, i % 3, f"out {i}", f"err {i}") for i, u in enumerate(uuids)],
        capture_output=True, policy=ONCE,
    ))
    for statements in (started, finished):
        bounds = [s for s in statements if s.startswith(BOUND)]
        assert bounds == [statements[0], statements[-1]] and len(bounds) == 2, statements
        del statements[0], statements[-1]
    assert tasks.objects.filter(endtime=T1, starttime=T0).count() == size
    assert tasks.objects.get(pk=uuids[-1]).stdout == f"out {size - 1}"
    return started, finished


def sqlite_parameter_limit() -> int:
    import sqlite3

    return sqlite3.connect(":memory:").getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


#: The statement counts below assume 128 ending rows fit one statement
#: (1,152 parameters); an SQLite built before 3.32 takes 999.
modern_sqlite = pytest.mark.skipif(sqlite_parameter_limit() < 128 * 9,
                                   reason="this SQLite takes fewer than 1,152 parameters")


@modern_sqlite
def test_a_128_row_slice_costs_the_same_few_statements_as_a_1_row_slice(tasks: type[Task]) -> None:
    started_1, finished_1 = slice_statements(tasks, 1)
    started_128, finished_128 = slice_statements(tasks, 128)

    assert len(started_128) == len(started_1) == 1
    assert len(finished_128) == len(finished_1)
    assert len(started_128) + len(finished_128) <= 10
    # One statement each way, autocommitted: no BEGIN/COMMIT round trips.
    assert [s.split()[0] for s in started_128 + finished_128] == ["UPDATE", "UPDATE"]


@modern_sqlite
def test_a_500_row_slice_ends_in_one_transaction_of_128_row_updates(tasks: type[Task]) -> None:
    started, finished = slice_statements(tasks, 500)

    assert len(started) == 1
    assert len(started) + len(finished) <= 10
    verbs = [s.split()[0] for s in finished]
    # ceil(500 / ROWS_PER_STATEMENT) UPDATEs: a CASE's work grows with the
    # square of its rows, so they are not all in one.
    assert verbs == ["BEGIN", "UPDATE", "UPDATE", "UPDATE", "UPDATE", "COMMIT"]


def test_a_2000_row_start_is_one_transaction_of_900_key_updates(tasks: type[Task]) -> None:
    started, _ = slice_statements(tasks, 2000)

    assert [s.split()[0] for s in started] == ["BEGIN", "UPDATE", "UPDATE", "UPDATE", "COMMIT"]
    # The captured SQL has its parameters filled in: count the keys.
    assert [s.count("'task-") for s in started[1:-1]] == [900, 900, 200]


@pytest.fixture
def old_sqlite_limit(tasks: type[Task]) -> Iterator[int]:
    """The connection held to an old SQLite's parameter limit (999 before 3.32)."""
    import sqlite3

    from django.db import connection

    connection.ensure_connection()
    connection.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    try:
        yield 999
    finally:
        connection.close()  # the next connection has the build's own limit


def test_statements_fit_an_old_sqlites_999_parameters(tasks: type[Task], old_sqlite_limit: int) -> None:
    # 128 rows of 9 parameters would be 1,152: "too many SQL variables".
    started, finished = slice_statements(tasks, 1000)

    # The captured SQL has its parameters filled in: count the keys.
    assert [s.count("'task-") for s in started if s.startswith("UPDATE")] == [900, 100]
    finishing = [s.count("'task-") for s in finished if s.startswith("UPDATE")]
    # 111 rows of 9 parameters each (999 // 9), each key five times: four CASEs and the IN.
    assert finishing == [111 * 5] * 9 + [1 * 5], finishing


def test_an_end_is_cut_by_the_size_of_its_output_too(tasks: type[Task]) -> None:
    from worker.pool.bookkeeping import TEXT_PER_STATEMENT

    uuids = insert(tasks, 10)
    big = "x" * (TEXT_PER_STATEMENT // 3)  # three rows a statement at most
    huge = "y" * (TEXT_PER_STATEMENT + 1)  # more than one statement's worth: alone
    results = [result(u, stdout=big, stderr="") for u in uuids[:8]]
    results += [result(uuids[8], stdout=huge, stderr=""), result(uuids[9], stdout="small", stderr="")]
    statements = count_statements(lambda: mark_finished(results, capture_output=True, policy=ONCE))

    updates = [s for s in statements if s.startswith("UPDATE")]
    assert [sum(s.count(f"'{u}'") > 0 for u in uuids) for s in updates] == [3, 3, 2, 1, 1]
    assert [s.split()[0] for s in statements if not s.startswith(BOUND)][0] == "BEGIN"
    assert [len(row(tasks, u)["stdout"]) for u in uuids] == [len(big)] * 8 + [len(huge), 5]


def test_an_end_without_captured_output_is_cut_only_by_failed_tasks_stderr(tasks: type[Task]) -> None:
    from worker.pool.bookkeeping import TEXT_PER_STATEMENT

    uuids = insert(tasks, 4)
    big = "z" * (TEXT_PER_STATEMENT // 2 + 1)
    # Successes' output is not written without capture, so it does not count.
    results = [result(uuids[0], stdout=big, stderr=big), result(uuids[1], stdout=big, stderr=big),
               result(uuids[2], 1, stderr=big), result(uuids[3], 1, stderr=big)]
    statements = count_statements(lambda: mark_finished(results, capture_output=False, policy=ONCE))

    assert len([s for s in statements if s.startswith("UPDATE")]) == 2
    assert [row(tasks, u)["stderror"] for u in uuids] == [None, None, big, big]


def test_a_failing_chunk_rolls_the_whole_write_back_and_the_retry_writes_every_row(
    tasks: type[Task], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.db import OperationalError

    from worker.pool import bookkeeping

    uuids = insert(tasks, 2000)
    built: list[int] = []
    seen: list[int] = []
    real = bookkeeping._start_statement

    def second_chunk_fails_once(connection: Any, keys: Any, values: Any) -> tuple[str, list[Any]]:
        built.append(len(keys))
        if len(built) == 2:
            raise OperationalError("database is locked")
        if len(built) == 3:
            # The retry's first chunk: the failed attempt's first chunk was rolled back.
            seen.append(tasks.objects.filter(starttime=T0).count())
        return real(connection, keys, values)

    monkeypatch.setattr(bookkeeping, "_start_statement", second_chunk_fails_once)
    retry = RetryPolicy(attempts=2, backoff=Backoff(first=0, factor=1, maximum=0))

    assert mark_started(uuids, when=T0, client="c", policy=retry) == 2000
    assert built == [900, 900, 900, 900, 200]
    assert seen == [0]
    assert tasks.objects.filter(starttime=T0, client="c").count() == 2000


# --- retries -------------------------------------------------------------------------------


def test_retry_policy_default_pauses_double_up_to_eight_seconds_within_thirty() -> None:
    policy = RetryPolicy()

    assert [policy.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert policy.wait == 30.0


def test_retry_policy_delays_are_capped() -> None:
    policy = RetryPolicy(backoff=Backoff(first=1, factor=3, maximum=5))

    assert [policy.delay(n) for n in range(1, 5)] == [1, 3, 5, 5]


@dataclass
class FakeClock:
    """Monotonic seconds that move only when the code under test sleeps."""

    now: float = 0.0
    pauses: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``value``."""

    def __init__(self, failures: int, error: BaseException, value: object = "done") -> None:
        self.failures = failures
        self.error = error
        self.value = value
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.value


POLICY = RetryPolicy(attempts=4, backoff=Backoff(first=0.5, factor=2, maximum=1.5))


def test_with_retries_retries_operational_errors_with_the_policys_pauses(django_sqlite: object) -> None:
    from django.db import OperationalError

    action = Flaky(2, OperationalError("server has gone away"))
    pauses: list[float] = []

    assert with_retries(action, what="test", policy=POLICY, sleep=pauses.append) == "done"
    assert action.calls == 3
    assert pauses == [0.5, 1.0]


def test_with_retries_retries_interface_errors(django_sqlite: object) -> None:
    from django.db import InterfaceError

    action = Flaky(1, InterfaceError("connection already closed"))
    pauses: list[float] = []

    assert with_retries(action, what="test", policy=POLICY, sleep=pauses.append) == "done"
    assert pauses == [0.5]


def test_with_retries_gives_up_after_its_attempts_raising_database_unavailable(
    django_sqlite: object, caplog: pytest.LogCaptureFixture
) -> None:
    from django.db import OperationalError

    action = Flaky(99, OperationalError("down"))
    pauses: list[float] = []

    with pytest.raises(DatabaseUnavailable, match="recording things failed .*OperationalError: down"):
        with_retries(action, what="recording things", policy=POLICY, sleep=pauses.append)
    assert action.calls == 4
    assert pauses == [0.5, 1.0, 1.5]
    assert any("giving up on recording things after 4 attempt(s)" in r.getMessage()
               for r in caplog.records)


def test_with_retries_never_waits_past_the_policys_wait(django_sqlite: object) -> None:
    from django.db import OperationalError

    clock = FakeClock()
    action = Flaky(99, OperationalError("database is locked"))

    with pytest.raises(DatabaseUnavailable, match="WAIT=10s"):
        with_retries(action, what="test", policy=RetryPolicy(wait=10), sleep=clock.sleep,
                     clock=clock)
    # 0.5 + 1 + 2 + 4, then only the 2.5 s that are left: 10 s in all, never more.
    assert clock.pauses == [0.5, 1.0, 2.0, 4.0, 2.5]
    assert clock.now == 10.0
    assert action.calls == 6


def test_an_attempt_waits_on_a_locked_sqlite_file_only_for_the_time_left(
    tasks: type[Task], django_sqlite: Path
) -> None:
    import sqlite3
    import time

    (uuid,) = insert(tasks, 1)
    holder = sqlite3.connect(django_sqlite, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        began = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="database is locked"):
            mark_started([uuid], when=T0, client="w", policy=RetryPolicy(wait=1.5))
        took = time.monotonic() - began
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # Without the bound one attempt alone would wait SQLite's 30 s busy timeout.
    assert 1.0 <= took < 5, took
    assert mark_started([uuid], when=T0, client="w", policy=ONCE) == 1


def test_with_retries_does_not_retry_other_errors(django_sqlite: object) -> None:
    action = Flaky(1, ValueError("a bug, not the database"))
    pauses: list[float] = []

    with pytest.raises(ValueError, match="a bug"):
        with_retries(action, what="test", policy=POLICY, sleep=pauses.append)
    assert action.calls == 1 and pauses == []


@pytest.mark.parametrize("name", ["DataError", "IntegrityError", "ProgrammingError", "NotSupportedError"])
def test_with_retries_gives_up_at_once_on_an_error_no_retry_can_fix(
    django_sqlite: object, name: str
) -> None:
    import django.db

    action = Flaky(1, getattr(django.db, name)("the statement itself is refused"))
    clock = FakeClock()

    with pytest.raises(DatabaseUnavailable, match=f"{name}: the statement itself is refused"):
        with_retries(action, what="test", policy=RetryPolicy(wait=30), sleep=clock.sleep, clock=clock)
    assert action.calls == 1 and clock.pauses == []


def test_with_retries_reconnects_after_a_failure(tasks: type[Task]) -> None:
    from django.db import OperationalError, connection

    insert(tasks, 1)
    connection.ensure_connection()
    first = connection.connection
    calls: list[object] = []

    def action() -> int:
        calls.append(connection.connection)
        if len(calls) == 1:
            raise OperationalError("lost")
        return int(tasks.objects.count())

    assert with_retries(action, what="test", policy=POLICY, sleep=lambda _s: None) == 1
    # The failed connection was closed before the retry, which opened a fresh one.
    assert calls[0] is first and calls[1] is not first and calls[1] is not None


REPLACED = "\N{REPLACEMENT CHARACTER}"


@pytest.mark.parametrize(("vendor", "stored"), [("postgresql", f"a{REPLACED}b{REPLACED}"),
                                                ("mysql", f"a\x00b{REPLACED}"),
                                                ("sqlite", f"a\x00b{REPLACED}")])
def test_storable_text_drops_nul_only_where_the_database_refuses_it(vendor: str, stored: str) -> None:
    from worker.codec.records import storable_text

    assert storable_text("a\x00b\ud800", vendor) == stored
    assert storable_text(b"a\x00b\xff", vendor) == stored
