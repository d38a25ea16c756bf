"""Unit tests for the script-facing Job API (issue 9: it behaves as the stock ``Job``)."""

from __future__ import annotations

import io
import logging
import pickle
import sys
import time
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.client.job import (
    DEFAULT_MAX_OUTPUT_BYTES,
    TRUNCATION_MARKER,
    Job,
    OutputBuffer,
    UnrecognisedPrintFile,
    utf8_size,
)

TASK_UUID = "c6e07b1d-3a3b-4e4f-9a8b-0123456789ab"


def make_job(*args: str, **kwargs: object) -> Job:
    return Job("copy_v0.0", TASK_UUID, list(args), **kwargs)  # type: ignore[arg-type]


def marker(kept: int, dropped: int) -> str:
    return TRUNCATION_MARKER.format(kept=kept, dropped=dropped)


# --- construction (Found 2: the stock signature, keyword names included) ------


def test_stock_keyword_names() -> None:
    job = Job(name="copy_v0.0", uuid=TASK_UUID, arguments=["a b", "--flag"], capture_output=True)
    assert job.name == "copy_v0.0"
    assert job.uuid == TASK_UUID
    assert job.args == ["copy_v0.0", "a b", "--flag"]
    assert job.capture_output is True


def test_args_do_not_alias_the_callers_list() -> None:
    argv = ["x"]
    job = Job("n", TASK_UUID, argv)
    argv.append("y")
    assert job.args == ["n", "x"]


def test_initial_state_is_stocks() -> None:
    job = make_job()
    assert job.int_code == 0
    assert job.status_code == ""
    assert job.output == ""
    assert job.error == ""
    assert job.start_time is None
    assert job.end_time is None
    assert job.capture_output is False
    assert job.caller_wants_output is False


def test_capture_output_positional() -> None:
    job = Job("n", TASK_UUID, [], True)
    assert job.capture_output is True
    assert job.caller_wants_output is True


def test_caller_wants_output_is_an_older_keyword_and_alias() -> None:
    assert Job("n", TASK_UUID, [], caller_wants_output=True).capture_output is True
    job = make_job()
    job.caller_wants_output = True
    assert job.capture_output is True
    job.capture_output = False
    assert job.caller_wants_output is False


# --- set_status (Found 7) -------------------------------------------------------


def test_set_status_nonzero_sets_code_and_status() -> None:
    job = make_job()
    job.set_status(2, "failed")
    assert (job.int_code, job.status_code) == (2, "failed")
    assert job.get_exit_code() == 2


def test_set_status_default_status_is_success() -> None:
    job = make_job()
    job.set_status(3)
    assert (job.int_code, job.status_code) == (3, "success")


def test_set_status_zero_sets_the_status_code() -> None:
    job = make_job()
    job.set_status(0)
    assert (job.int_code, job.status_code) == (0, "success")
    job.set_status(0, "whatever")
    assert (job.int_code, job.status_code) == (0, "whatever")


@pytest.mark.parametrize("falsy", [0, None, False, ""])
def test_set_status_falsy_code_leaves_int_code(falsy: object) -> None:
    job = make_job()
    job.set_status(1, "error")
    job.set_status(falsy, "later")  # type: ignore[arg-type]
    assert (job.get_exit_code(), job.status_code) == (1, "later")


def test_set_status_later_nonzero_replaces() -> None:
    job = make_job()
    job.set_status(1)
    job.set_status(4, "other")
    assert (job.int_code, job.status_code) == (4, "other")


def test_set_status_converts_to_int() -> None:
    job = make_job()
    job.set_status("5")  # type: ignore[arg-type]
    assert job.int_code == 5


def test_get_exit_code_treats_none_as_zero() -> None:
    job = make_job()
    job.int_code = None  # type: ignore[assignment]  # old scripts do this
    assert job.get_exit_code() == 0


# --- writing ----------------------------------------------------------------


def test_write_output_and_error_append_literally() -> None:
    job = make_job()
    job.write_output("a")
    job.write_output("b\n")
    job.write_error("x")
    job.write_error("")
    job.write_error("y")
    assert job.output == "ab\n"
    assert job.error == "xy"
    assert job.get_stdout() == "ab\n"
    assert job.get_stderr() == "xy"


def test_print_output_and_error_join_with_spaces_and_newline() -> None:
    job = make_job()
    job.print_output("a", 1, None, 2.5)
    job.print_output()
    job.print_error("err", ["l"])
    assert job.output == "a 1 None 2.5\n\n"
    assert job.error == "err ['l']\n"


def test_pyprint_defaults_to_stdout() -> None:
    job = make_job()
    job.pyprint("a", 1)
    assert job.output == "a 1\n"
    assert job.error == ""


def test_pyprint_sep_and_end_go_through_str() -> None:
    job = make_job()
    job.pyprint("a", "b", sep="-", end="!")
    job.pyprint("c", "d", sep=1, end=2)
    job.pyprint()
    assert job.output == "a-b!c1d2\n"


def test_pyprint_compares_with_the_streams_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_out, fake_err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", fake_out)
    monkeypatch.setattr(sys, "stderr", fake_err)
    job = make_job()
    job.pyprint("out", file=sys.stdout)
    job.pyprint("err", file=sys.stderr, flush=True)
    job.pyprint("default")
    assert (job.output, job.error) == ("out\ndefault\n", "err\n")
    assert fake_out.getvalue() == fake_err.getvalue() == ""


def test_pyprint_to_distinct_stderr_lands_in_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Found 3: under Celery both names were one proxy; given two, stderr is stderr.
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    job = make_job()
    job.pyprint("e", 1, file=sys.stderr)
    assert (job.output, job.error) == ("", "e 1\n")


@pytest.mark.parametrize("bad", [io.StringIO(), "stdout", 1, None])
def test_pyprint_with_another_file_raises(bad: object) -> None:
    job = make_job()
    with pytest.raises(UnrecognisedPrintFile, match=f"^Unrecognised print file: {bad}$"):
        job.pyprint("x", file=bad)
    assert job.output == job.error == ""


def test_pyprint_to_replaced_original_stream_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    with pytest.raises(UnrecognisedPrintFile):
        make_job().pyprint("x", file=sys.__stdout__)


def test_write_accepts_bytes() -> None:
    job = make_job()
    job.write_output(b"caf\xc3\xa9")
    job.write_error(bytearray(b"bad \xff byte"))
    assert job.output == "café"
    assert job.error == "bad \ufffd byte"


def test_write_keeps_lone_surrogates() -> None:
    job = make_job()
    job.write_output("a\udcff")
    job.print_error("\ud800")
    assert job.output == "a\udcff"
    assert job.error == "\ud800\n"


@pytest.mark.parametrize("bad", [1, None, ["x"]])
def test_write_rejects_other_types(bad: object) -> None:
    with pytest.raises(TypeError, match="str or bytes"):
        make_job().write_output(bad)  # type: ignore[arg-type]


def test_output_read_is_cached_until_next_write() -> None:
    job = make_job()
    job.write_output("a")
    first = job.output
    assert job.output is first
    job.write_output("b")
    assert job.output == "ab"


# --- assigning output and error ---------------------------------------------


def test_output_and_error_can_be_assigned() -> None:
    job = make_job()
    job.write_output("old")
    job.output = "new"
    job.error = b"err"
    assert job.output == "new"
    assert job.error == "err"


def test_augmented_assignment_appends() -> None:
    job = make_job()
    job.output += "a"
    job.output += "b"
    job.error += "e"
    assert job.output == "ab"
    assert job.error == "e"


def test_assignment_is_bounded() -> None:
    job = make_job(max_output_bytes=4)
    job.output = "abcdef"
    assert job.output == "abcd" + marker(4, 2)


def test_augmented_assignment_after_truncation_keeps_one_marker() -> None:
    job = make_job(max_output_bytes=4)
    job.write_output("abcdef")
    job.output += "gh"
    assert job.output == "abcd" + marker(4, 4)


def test_assignment_rejects_other_types() -> None:
    job = make_job()
    with pytest.raises(TypeError):
        job.output = 3  # type: ignore[assignment]


# --- summaries ----------------------------------------------------------------


def test_dump_contains_every_field() -> None:
    job = make_job("arg1", "--flag")
    job.write_output("hello out")
    job.write_error("hello err")
    job.set_status(3, "failed")
    text = job.dump()
    for part in ("copy_v0.0", TASK_UUID, "'arg1'", "'--flag'", "3", "failed", "hello out", "hello err"):
        assert part in text
    assert text.index("hello out") < text.index("hello err")


def test_log_results_logs_the_summary_at_info(caplog: pytest.LogCaptureFixture) -> None:
    job = make_job()
    job.write_output("visible")
    with caplog.at_level(logging.INFO, logger="amworker.job"):
        job.log_results()
    [record] = [r for r in caplog.records if r.name == "amworker.job"]
    assert record.levelno == logging.INFO
    assert record.getMessage() == job.dump()


# --- JobContext: exceptions (Found 3: stock's stderr shape) ---------------------


def _raise_in_context(job: Job, exc: BaseException) -> None:
    with job.JobContext():
        raise exc


def test_job_context_without_exception_changes_nothing() -> None:
    job = make_job()
    with job.JobContext():
        job.write_output("ok")
    assert (job.output, job.error, job.int_code, job.status_code) == ("ok", "", 0, "")


def test_job_context_writes_str_then_traceback_through_its_own_frame() -> None:
    job = make_job()
    job.write_error("partial")
    _raise_in_context(job, ValueError("boom"))
    lines = job.error.splitlines()
    assert lines[0] == "partialboomTraceback (most recent call last):"
    assert lines[1].endswith(", in JobContext")  # stock's traceback starts in JobContext
    assert lines[2].strip() == "yield"
    assert "in _raise_in_context" in lines[3]
    assert lines[-1] == "ValueError: boom"
    assert job.error.endswith("ValueError: boom\n")
    assert (job.get_exit_code(), job.status_code) == (1, "error")


def test_job_context_overrides_an_earlier_exit_code() -> None:
    job = make_job()
    job.set_status(3)
    _raise_in_context(job, RuntimeError("x"))
    assert (job.int_code, job.status_code) == (1, "error")


def test_job_context_fails_next_jobs_independently() -> None:
    jobs = [make_job() for _ in range(3)]
    for index, job in enumerate(jobs):
        with job.JobContext():
            if index == 1:
                raise KeyError("second")
            job.set_status(0)
    assert [j.get_exit_code() for j in jobs] == [0, 1, 0]
    assert jobs[1].error.startswith("'second'Traceback")


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt()])
def test_job_context_lets_base_exceptions_through(exc: BaseException) -> None:
    job = make_job()
    with pytest.raises(type(exc)):
        _raise_in_context(job, exc)
    assert (job.get_exit_code(), job.error) == (0, "")


# --- bounded output -------------------------------------------------------------


def test_default_limit_is_8_mib() -> None:
    assert DEFAULT_MAX_OUTPUT_BYTES == 8 * 1024 * 1024
    job = make_job(max_output_bytes=None)
    assert job.output_buffer.limit_bytes == DEFAULT_MAX_OUTPUT_BYTES
    assert job.error_buffer.limit_bytes == DEFAULT_MAX_OUTPUT_BYTES


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        make_job(max_output_bytes=-1)


def test_truncation_keeps_prefix_and_adds_one_marker() -> None:
    job = make_job(max_output_bytes=10)
    job.write_output("abcdefghijklmnop")
    assert job.output == "abcdefghij" + marker(10, 6)
    job.write_output("xyz")
    job.print_output("more")
    assert job.output == "abcdefghij" + marker(10, 14)
    assert job.output.count("[amworker: output truncated") == 1


def test_stdout_and_stderr_are_bounded_separately() -> None:
    job = make_job(max_output_bytes=3)
    job.write_output("ab")
    job.write_error("abcd")
    assert job.output == "ab"
    assert job.error == "abc" + marker(3, 1)


def test_filling_exactly_to_limit_adds_no_marker() -> None:
    job = make_job(max_output_bytes=4)
    job.write_output("ab")
    job.write_output("cd")
    job.write_output("")
    assert job.output == "abcd"
    job.write_output("e")
    assert job.output == "abcd" + marker(4, 1)


def test_limit_counts_utf8_bytes_and_cuts_at_character_boundary() -> None:
    job = make_job(max_output_bytes=5)
    job.write_output("ééé")  # 6 bytes; the third é would straddle the limit
    assert job.output == "éé" + marker(4, 2)
    job = make_job(max_output_bytes=6)
    job.write_output("a\U0001f600b")  # 1 + 4 + 1 bytes: fits exactly
    assert job.output == "a\U0001f600b"
    job = make_job(max_output_bytes=3)
    job.write_output("a\U0001f600")
    assert job.output == "a" + marker(1, 4)


def test_truncation_cuts_surrogates_at_boundary() -> None:
    job = make_job(max_output_bytes=4)
    job.write_output("a\udcff\udcff")  # surrogates count as 3 bytes each
    assert job.output == "a\udcff" + marker(4, 3)


def test_zero_limit_keeps_nothing() -> None:
    job = make_job(max_output_bytes=0)
    job.write_output("abc")
    assert job.output == marker(0, 3)


def test_job_context_traceback_is_bounded_too() -> None:
    job = make_job(max_output_bytes=16)
    with job.JobContext():
        raise ValueError("x" * 100)
    assert job.error.startswith("x" * 16)
    assert job.error.endswith(" more bytes dropped]\n")
    assert job.get_exit_code() == 1


@pytest.mark.timeout(60)
def test_200_mb_of_writes_stay_bounded_and_fast() -> None:
    job = make_job()
    piece = "x" * (64 * 1024)
    writes = 200 * 1024 * 1024 // len(piece)
    started = time.perf_counter()
    for _ in range(writes):
        job.write_output(piece)
    output = job.output
    elapsed = time.perf_counter() - started
    total = writes * len(piece)
    expected_marker = marker(DEFAULT_MAX_OUTPUT_BYTES, total - DEFAULT_MAX_OUTPUT_BYTES)
    assert len(output) <= DEFAULT_MAX_OUTPUT_BYTES + len(expected_marker)
    assert output.endswith(expected_marker)
    assert job.output_buffer.kept_bytes == DEFAULT_MAX_OUTPUT_BYTES
    assert job.output_buffer.dropped_bytes == total - DEFAULT_MAX_OUTPUT_BYTES
    assert elapsed < 5.0


@pytest.mark.timeout(60)
def test_many_small_distinct_writes_keep_memory_bounded() -> None:
    limit = 256 * 1024
    job = make_job(max_output_bytes=limit)
    tracemalloc.start()
    try:
        for i in range(100_000):  # ~1 MB in distinct 10-byte pieces
            job.write_output(f"{i:09d}\n")
        current, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Unjoined, the ~26k kept pieces would cost ~1.7 MB of objects.
    assert current < 2 * limit
    assert len(job.output) <= limit + len(marker(limit, 1_000_000))


def test_many_small_writes_read_back_in_order() -> None:
    job = make_job()
    pieces = [f"{i}," for i in range(5000)]
    for piece in pieces:
        job.write_output(piece)
        if len(piece) == 4:
            assert job.output.endswith(piece)  # reading mid-stream is fine
    assert job.output == "".join(pieces)


def test_utf8_size_matches_encoding() -> None:
    for text in ("", "ascii", "é", "\U0001f600", "\udcff", "x" * 70000 + "é" * 70000):
        assert utf8_size(text) == len(text.encode("utf-8", "surrogatepass"))


@given(
    pieces=st.lists(st.text(st.characters(codec=None), max_size=20), max_size=20),
    limit=st.integers(min_value=0, max_value=64),
)
def test_output_buffer_keeps_the_longest_fitting_prefix(pieces: list[str], limit: int) -> None:
    buffer = OutputBuffer(limit)
    for piece in pieces:
        buffer.write(piece)
    whole = "".join(pieces)
    total = utf8_size(whole)
    if total <= limit:
        assert buffer.getvalue() == whole
        assert not buffer.truncated
        return
    kept = buffer.getvalue().removesuffix(marker(buffer.kept_bytes, buffer.dropped_bytes))
    assert whole.startswith(kept)
    assert buffer.kept_bytes == utf8_size(kept)
    assert limit - 4 < buffer.kept_bytes <= limit
    assert buffer.kept_bytes + buffer.dropped_bytes == total


def test_job_survives_pickling() -> None:
    # An executor may hand jobs to another process and read them back.
    job = make_job("a", max_output_bytes=4)
    job.write_output("abcdef")
    job.write_error("e")
    job.set_status(2, "failed")
    clone = pickle.loads(pickle.dumps(job))
    assert (clone.args, clone.get_exit_code(), clone.status_code) == (job.args, 2, "failed")
    assert (clone.output, clone.error) == (job.output, "e")
    clone.write_output("more")
    assert clone.output == "abcd" + marker(4, 6)
