"""Unit tests for the executor's guards, with the real script-facing Job."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from worker.client.job import Job
from worker.client.output import NOTE_BYTES, OutputBuffer
from worker.contract.plan import JobSpec
from worker.contract.results import fail_jobs, failed_results
from worker.pool.executor import build_jobs, job_results, run_script

# run_script makes the process a subreaper: hand that back after each test.
pytestmark = pytest.mark.usefixtures("restores_subreaper")

T0 = datetime(2024, 8, 4, 21, 34, 35, tzinfo=UTC)


class Clock:
    """Hands out T0, T0+1s, T0+2s, ... one per call."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> datetime:
        value = T0 + timedelta(seconds=self.calls)
        self.calls += 1
        return value


class Script:
    """A client script whose ``call`` is the given function."""

    def __init__(self, body: Callable[[list[Job]], None]) -> None:
        self.body = body
        self.seen: list[Job] | None = None

    def call(self, jobs: list[Job]) -> None:
        self.seen = jobs
        self.body(jobs)


class SoftLimit(Exception):
    """Stands in for Celery's SoftTimeLimitExceeded."""


def make_jobs(n: int = 3, *, wants_output: bool = True) -> list[Job]:
    return build_jobs(
        "echo_v0.0",
        [JobSpec(uuid=f"task-{i}", argv=("--n", str(i)), wants_output=wants_output) for i in range(n)],
        max_output_bytes=1024,
    )


@pytest.fixture
def clock() -> Iterator[Clock]:
    yield Clock()


# --- build_jobs ------------------------------------------------------------------


def test_build_jobs_gives_scripts_name_plus_argv() -> None:
    jobs = make_jobs(2, wants_output=False)

    assert [j.args for j in jobs] == [["echo_v0.0", "--n", "0"], ["echo_v0.0", "--n", "1"]]
    assert [j.uuid for j in jobs] == ["task-0", "task-1"]
    assert [j.capture_output for j in jobs] == [False, False]
    assert jobs[0].output_buffer.limit_bytes == 1024


# --- run_script ---------------------------------------------------------------------


def test_a_clean_run_leaves_the_scripts_results(clock: Clock) -> None:
    def body(jobs: list[Job]) -> None:
        jobs[0].print_output("hello")
        jobs[1].set_status(2)
        jobs[1].write_error("bad input\n")

    jobs = make_jobs(3)
    script = Script(body)

    run_script(script, jobs, clock=clock)

    # The same Job objects, in a list of the script's own.
    assert script.seen is not None and script.seen is not jobs
    assert all(seen is job for seen, job in zip(script.seen, jobs, strict=True))
    assert [j.get_exit_code() for j in jobs] == [0, 2, 0]
    assert jobs[0].get_stdout() == "hello\n"
    assert jobs[1].get_stderr() == "bad input\n"
    assert jobs[2].get_stderr() == ""


def test_start_and_end_times_come_from_the_injected_clock(clock: Clock) -> None:
    jobs = make_jobs(2)

    run_script(Script(lambda jobs: None), jobs, clock=clock)

    assert [j.start_time for j in jobs] == [T0, T0]
    assert [j.end_time for j in jobs] == [T0 + timedelta(seconds=1)] * 2
    assert clock.calls == 2


def test_start_time_is_set_before_call_runs(clock: Clock) -> None:
    seen: list[datetime | None] = []

    run_script(Script(lambda jobs: seen.extend(j.start_time for j in jobs)), make_jobs(2), clock=clock)

    assert seen == [T0, T0]


def test_an_end_time_the_script_set_is_kept(clock: Clock) -> None:
    own = datetime(2000, 1, 1, tzinfo=UTC)

    def body(jobs: list[Job]) -> None:
        jobs[0].end_time = own

    jobs = make_jobs(2)
    run_script(Script(body), jobs, clock=clock)

    assert jobs[0].end_time == own
    assert jobs[1].end_time == T0 + timedelta(seconds=1)


def test_an_exception_fails_every_job_with_the_traceback(clock: Clock) -> None:
    def body(jobs: list[Job]) -> None:
        jobs[0].print_output("got this far")
        raise ValueError("boom in the script")

    jobs = make_jobs(3)

    run_script(Script(body), jobs, clock=clock)

    assert [j.get_exit_code() for j in jobs] == [1, 1, 1]
    assert jobs[0].get_stdout() == "got this far\n"
    for job in jobs:
        stderr = job.get_stderr()
        assert stderr.startswith("the script raised out of call(jobs):\nTraceback")
        assert "ValueError: boom in the script" in stderr
        assert "in body" in stderr  # the script's own frame is in the traceback
        assert job.status_code == "error"
        assert job.end_time == T0 + timedelta(seconds=1)


def test_a_job_that_had_already_failed_keeps_its_code(clock: Clock) -> None:
    def body(jobs: list[Job]) -> None:
        jobs[1].set_status(2)
        raise RuntimeError("later")

    jobs = make_jobs(3)
    run_script(Script(body), jobs, clock=clock)

    assert [j.get_exit_code() for j in jobs] == [1, 2, 1]
    assert "RuntimeError: later" in jobs[1].get_stderr()


@pytest.mark.parametrize("code", [0, 3, None, "message"])
def test_sys_exit_fails_the_jobs_and_is_contained(clock: Clock, code: object) -> None:
    def body(jobs: list[Job]) -> None:
        sys.exit(code)  # type: ignore[arg-type]

    jobs = make_jobs(2)

    run_script(Script(body), jobs, clock=clock)  # must not raise SystemExit

    assert [j.get_exit_code() for j in jobs] == [1, 1]
    for job in jobs:
        assert f"the script called sys.exit({code!r}); that is a bug in the script" in job.get_stderr()
        assert "SystemExit" in job.get_stderr()
        assert job.end_time is not None


def test_soft_time_limit_fails_the_jobs_with_the_cause(clock: Clock) -> None:
    def body(jobs: list[Job]) -> None:
        jobs[0].set_status(4)
        raise SoftLimit("SoftTimeLimitExceeded(300)")

    jobs = make_jobs(2)

    run_script(Script(body), jobs, clock=clock, soft_limit_errors=(SoftLimit,))

    assert [j.get_exit_code() for j in jobs] == [4, 1]
    for job in jobs:
        assert job.get_stderr().startswith("amworker: time limit: the slice exceeded its soft time limit")
        assert "SoftTimeLimitExceeded(300)" in job.get_stderr()
        assert job.get_stderr().endswith("\n")


def test_a_soft_limit_inside_a_job_context_stops_the_slice(clock: Clock) -> None:
    # Archivematica's scripts run each job inside its JobContext, which
    # swallows an Exception to fail that job alone: the soft limit must still
    # stop the slice, not let the script run on to the hard limit.
    ran: list[str] = []

    def body(jobs: list[Job]) -> None:
        for job in jobs:
            with job.JobContext():
                ran.append(job.uuid)
                if job is jobs[0]:
                    raise SoftLimit("SoftTimeLimitExceeded(300)")
                job.set_status(0)

    jobs = make_jobs(2)

    run_script(Script(body), jobs, clock=clock, soft_limit_errors=(SoftLimit,))

    assert ran == [jobs[0].uuid]
    assert [j.get_exit_code() for j in jobs] == [1, 1]
    for job in jobs:
        assert job.get_stderr().startswith("amworker: time limit: the slice exceeded its soft time limit")


def test_a_job_context_still_fails_one_job_for_an_ordinary_exception(clock: Clock) -> None:
    def body(jobs: list[Job]) -> None:
        for job in jobs:
            with job.JobContext():
                if job is jobs[0]:
                    raise ValueError("bad file")
                job.set_status(0)

    jobs = make_jobs(2)

    run_script(Script(body), jobs, clock=clock, soft_limit_errors=(SoftLimit,))

    assert [j.get_exit_code() for j in jobs] == [1, 0]
    assert jobs[0].get_stderr().startswith("bad file")
    assert jobs[1].get_stderr() == ""


def test_a_script_that_empties_its_job_list_still_returns_every_result(clock: Clock) -> None:
    def body(jobs: list[Job]) -> None:
        while jobs:
            job = jobs.pop(0)
            job.write_output(f"done {job.uuid}")
            job.set_status(0)

    jobs = make_jobs(3)

    run_script(Script(body), jobs, clock=clock)
    results = job_results(jobs)

    assert [r.uuid for r in results] == [j.uuid for j in jobs]
    assert [(r.exit_code, r.stdout) for r in results] == [(0, f"done {j.uuid}") for j in jobs]


def test_a_script_that_grows_its_job_list_adds_no_result(clock: Clock) -> None:
    def body(jobs: list[Job]) -> None:
        jobs.append(jobs[0])
        raise ValueError("late")

    jobs = make_jobs(2)

    run_script(Script(body), jobs, clock=clock)

    assert [r.uuid for r in job_results(jobs)] == [j.uuid for j in jobs]
    assert jobs[0].get_stderr().count("the script raised out of call(jobs)") == 1


def test_the_cause_survives_a_stderr_the_script_filled(clock: Clock) -> None:
    # The cause went through the same bound as the script's own writes, and
    # was dropped with them: a job failed with no reason given.
    def body(jobs: list[Job]) -> None:
        jobs[0].write_error("x" * 100)
        raise SystemExit(3)

    (job,) = build_jobs("f", [JobSpec("a", (), True)], max_output_bytes=50)

    run_script(Script(body), [job], clock=clock)

    stderr = job.get_stderr()
    marker = "\n[amworker: output truncated after 50 bytes; 50 more bytes dropped]\n"
    assert stderr.startswith("x" * 50 + marker)
    assert "the script called sys.exit(3)" in stderr
    assert stderr.endswith("\n")
    assert job.get_exit_code() == 1


def test_a_cause_that_does_not_fit_follows_the_partial_output_whole(clock: Clock) -> None:
    def body(jobs: list[Job]) -> None:
        jobs[0].write_error("y" * 40)
        raise ValueError("z" * 30)

    (job,) = build_jobs("f", [JobSpec("a", (), True)], max_output_bytes=50)

    run_script(Script(body), [job], clock=clock)

    stderr = job.get_stderr()
    assert stderr.startswith("y" * 40 + "\nthe script raised out of call(jobs):\n")
    assert "z" * 30 in stderr and "truncated" not in stderr


def test_notes_past_the_bound_are_bounded_too() -> None:
    buffer = OutputBuffer(10)
    buffer.write("a" * 20)
    for _ in range(100):
        buffer.write_note("n" * 4096)
    buffer.write("after the notes")

    text = buffer.getvalue()
    assert text.startswith("a" * 10 + "\n[amworker: output truncated")
    notes = text.split("dropped]\n", 1)[1]
    assert notes == "n" * NOTE_BYTES


def test_a_soft_limit_type_not_passed_in_is_an_ordinary_exception(clock: Clock) -> None:
    def body(jobs: list[Job]) -> None:
        raise SoftLimit("late")

    jobs = make_jobs(1)
    run_script(Script(body), jobs, clock=clock)

    assert jobs[0].get_exit_code() == 1
    assert "time limit" not in jobs[0].get_stderr()
    assert "the script raised out of call(jobs)" in jobs[0].get_stderr()


def test_what_must_end_the_process_is_not_swallowed(clock: Clock) -> None:
    def body(jobs: list[Job]) -> None:
        raise KeyboardInterrupt

    jobs = make_jobs(1)

    with pytest.raises(KeyboardInterrupt):
        run_script(Script(body), jobs, clock=clock)
    assert jobs[0].get_exit_code() == 0


def test_the_reason_goes_on_its_own_line_after_partial_output() -> None:
    jobs = make_jobs(1)
    jobs[0].write_error("partial line without newline")

    fail_jobs(jobs, "the reason")

    assert jobs[0].get_stderr() == "partial line without newline\nthe reason\n"


# --- results -------------------------------------------------------------------------


def test_job_results_reports_each_job(clock: Clock) -> None:
    def body(jobs: list[Job]) -> None:
        jobs[0].print_output("out")
        jobs[1].set_status(5)
        jobs[1].print_error("err")

    jobs = make_jobs(2) + make_jobs(1, wants_output=False)
    jobs[2].uuid = "task-quiet"
    run_script(Script(body), jobs, clock=clock)

    results = job_results(jobs, clock=clock)

    assert [(r.uuid, r.exit_code, r.stdout, r.stderr, r.wants_output) for r in results] == [
        ("task-0", 0, "out\n", "", True),
        ("task-1", 5, "", "err\n", True),
        ("task-quiet", 0, "", "", False),
    ]
    assert {r.finished_at for r in results} == {T0 + timedelta(seconds=1)}


def test_job_results_a_job_without_end_time_uses_the_clock(clock: Clock) -> None:
    (result,) = job_results(make_jobs(1), clock=clock)

    assert result.finished_at == T0


def test_failed_results_fail_every_uuid_with_the_reason(clock: Clock) -> None:
    results = failed_results(
        ["a", "b"], "worker lost", wants_output=lambda uuid: uuid == "a", clock=clock
    )

    assert [(r.uuid, r.exit_code, r.stdout, r.stderr, r.wants_output) for r in results] == [
        ("a", 1, "", "worker lost\n", True),
        ("b", 1, "", "worker lost\n", False),
    ]
    assert {r.finished_at for r in results} == {T0}


def test_failed_results_keep_a_reason_that_already_ends_a_line(clock: Clock) -> None:
    (result,) = failed_results(["a"], "done\n", clock=clock)

    assert result.stderr == "done\n"
    assert result.wants_output is True
