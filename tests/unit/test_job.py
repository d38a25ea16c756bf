"""Unit tests for the script-facing Job API and the script logger helper."""

from __future__ import annotations

import io
import logging
import pickle
import sys
import time
import tracemalloc
import uuid as uuidlib
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.client.job import (
    DEFAULT_MAX_OUTPUT_BYTES,
    TRUNCATION_MARKER,
    Job,
    JobContext,
    OutputBuffer,
    utf8_size,
)
from worker.utils.custom_handlers import (
    SCRIPT_LOG_PREFIX,
    WorkerLogForwarder,
    get_script_logger,
)

TASK_UUID = "c6e07b1d-3a3b-4e4f-9a8b-0123456789ab"


def make_job(*args: str, **kwargs: object) -> Job:
    return Job("copy_v0.0", TASK_UUID, list(args), **kwargs)  # type: ignore[arg-type]


def marker(kept: int, dropped: int) -> str:
    return TRUNCATION_MARKER.format(kept=kept, dropped=dropped)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of its own for each test, left without handlers afterwards."""
    log = logging.getLogger(f"test.job.{uuidlib.uuid4().hex}")
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# --- construction -----------------------------------------------------------


def test_args_are_name_then_argv() -> None:
    job = Job("copy_v0.0", TASK_UUID, ["a b", "--flag"])
    assert job.name == "copy_v0.0"
    assert job.uuid == TASK_UUID
    assert job.args == ["copy_v0.0", "a b", "--flag"]


def test_args_do_not_alias_the_callers_list() -> None:
    argv = ["x"]
    job = Job("n", TASK_UUID, argv)
    argv.append("y")
    assert job.args == ["n", "x"]


def test_initial_state() -> None:
    job = make_job()
    assert job.int_code == 0
    assert job.status_code == "success"
    assert job.output == ""
    assert job.error == ""
    assert job.start_time is None
    assert job.end_time is None
    assert job.capture_output is False
    assert job.caller_wants_output is False


def test_caller_wants_output_positional_sets_capture_output() -> None:
    job = Job("n", TASK_UUID, [], True)
    assert job.capture_output is True
    assert job.caller_wants_output is True


def test_capture_output_keyword_wins() -> None:
    assert Job("n", TASK_UUID, [], capture_output=True).capture_output is True
    assert Job("n", TASK_UUID, [], True, capture_output=False).capture_output is False


def test_caller_wants_output_is_settable_alias() -> None:
    job = make_job()
    job.caller_wants_output = True
    assert job.capture_output is True
    job.capture_output = False
    assert job.caller_wants_output is False


def test_start_and_end_times_are_plain_attributes() -> None:
    job = make_job()
    job.start_time = job.end_time = None
    assert (job.start_time, job.end_time) == (None, None)


# --- set_status -------------------------------------------------------------


def test_set_status_nonzero_sets_code_and_status() -> None:
    job = make_job()
    job.set_status(2, "failed")
    assert (job.int_code, job.status_code) == (2, "failed")
    assert job.get_exit_code() == 2


def test_set_status_default_status_is_success() -> None:
    job = make_job()
    job.set_status(3)
    assert (job.int_code, job.status_code) == (3, "success")


@pytest.mark.parametrize("falsy", [0, None, False, ""])
def test_set_status_falsy_leaves_initial_state(falsy: object) -> None:
    job = make_job()
    job.set_status(falsy, "whatever")  # type: ignore[arg-type]
    assert (job.int_code, job.status_code) == (0, "success")


def test_set_status_zero_after_failure_does_not_reset() -> None:
    job = make_job()
    job.set_status(1, "error")
    job.set_status(0)
    job.set_status(0, "success")
    assert (job.get_exit_code(), job.status_code) == (1, "error")


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


def test_pyprint_sep_and_end() -> None:
    job = make_job()
    job.pyprint("a", "b", sep="-", end="!")
    job.pyprint("c", "d", sep=None, end=None)
    job.pyprint()
    assert job.output == "a-b!c d\n\n"


def test_pyprint_rejects_non_str_sep_like_print() -> None:
    with pytest.raises(TypeError):
        make_job().pyprint("a", sep=1)  # type: ignore[arg-type]


def test_pyprint_to_current_stdout_and_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_out, fake_err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", fake_out)
    monkeypatch.setattr(sys, "stderr", fake_err)
    job = make_job()
    job.pyprint("out", file=sys.stdout)
    job.pyprint("err", file=sys.stderr)
    assert (job.output, job.error) == ("out\n", "err\n")
    assert fake_out.getvalue() == fake_err.getvalue() == ""


def test_pyprint_to_original_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    job = make_job()
    job.pyprint("out", file=sys.__stdout__)
    job.pyprint("err", file=sys.__stderr__)
    assert (job.output, job.error) == ("out\n", "err\n")


def test_pyprint_to_stderr_accepts_flush() -> None:
    job = make_job()
    job.pyprint("e", 1, file=sys.stderr, flush=True)
    assert job.error == "e 1\n"
    assert job.output == ""


@pytest.mark.parametrize("bad", [io.StringIO(), "stdout", 1])
def test_pyprint_with_another_file_raises(bad: object) -> None:
    job = make_job()
    with pytest.raises(ValueError, match="sys.stdout or sys.stderr"):
        job.pyprint("x", file=bad)
    assert job.output == job.error == ""


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
    for part in (
        "copy_v0.0",
        TASK_UUID,
        "'arg1'",
        "'--flag'",
        "3",
        "failed",
        "hello out",
        "hello err",
    ):
        assert part in text
    assert text.count("\n") >= 4
    assert text.index("hello out") < text.index("hello err")


def test_log_results_logs_dump_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    job = make_job()
    job.write_output("visible")
    with caplog.at_level(logging.DEBUG, logger="amworker.job"):
        job.log_results()
    [record] = [r for r in caplog.records if r.name == "amworker.job"]
    assert record.levelno == logging.DEBUG
    assert record.getMessage() == job.dump()


def test_log_results_skips_dump_when_debug_disabled(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="amworker.job"):
        make_job().log_results()
    assert not [r for r in caplog.records if r.name == "amworker.job"]


# --- JobContext: exceptions ---------------------------------------------------


def test_job_context_returns_a_job_context() -> None:
    assert isinstance(make_job().JobContext(), JobContext)


def test_job_context_without_exception_changes_nothing() -> None:
    job = make_job()
    with job.JobContext():
        job.write_output("ok")
    assert (job.output, job.error, job.int_code, job.status_code) == ("ok", "", 0, "success")


def test_job_context_records_and_suppresses_exception() -> None:
    job = make_job()
    reached = False
    with job.JobContext():
        raise ValueError("boom")
    reached = True
    assert reached
    assert job.error.startswith("Traceback (most recent call last):\n")
    assert "ValueError: boom" in job.error
    assert "test_job_context_records_and_suppresses_exception" in job.error
    assert (job.get_exit_code(), job.status_code) == (1, "error")


def test_job_context_separates_traceback_from_unterminated_error_text() -> None:
    job = make_job()
    job.write_error("partial")
    with job.JobContext():
        raise RuntimeError("x")
    assert job.error.startswith("partial\nTraceback")


def test_job_context_overrides_an_earlier_exit_code() -> None:
    job = make_job()
    job.set_status(3)
    with job.JobContext():
        raise RuntimeError("x")
    assert (job.int_code, job.status_code) == (1, "error")


def test_job_context_fails_next_jobs_independently() -> None:
    jobs = [make_job() for _ in range(3)]
    for index, job in enumerate(jobs):
        with job.JobContext():
            if index == 1:
                raise KeyError("second")
            job.set_status(0)
    assert [j.get_exit_code() for j in jobs] == [0, 1, 0]


@pytest.mark.parametrize("code", [0, 3, "message"])
def test_job_context_turns_system_exit_into_failure(code: int | str) -> None:
    job = make_job()
    with job.JobContext():
        sys.exit(code)
    assert "SystemExit" in job.error
    assert (job.get_exit_code(), job.status_code) == (1, "error")


def test_job_context_lets_keyboard_interrupt_through(logger: logging.Logger) -> None:
    job = make_job()
    with pytest.raises(KeyboardInterrupt), job.JobContext(logger=logger):
        raise KeyboardInterrupt
    assert job.get_exit_code() == 0
    assert job.error == ""
    assert logger.handlers == []


# --- JobContext: logger capture -------------------------------------------------


def test_logger_records_go_to_job_streams(logger: logging.Logger) -> None:
    logger.setLevel(logging.DEBUG)
    job = make_job()
    with job.JobContext(logger=logger):
        logger.debug("debug %s", "hidden")
        logger.info("info %s", 1)
        logger.warning("warn")
        logger.error("err")
        logger.critical("crit")
    assert job.output == "info 1\nwarn\n"
    assert job.error == "err\ncrit\n"


def test_logger_exception_includes_traceback_in_stderr(logger: logging.Logger) -> None:
    job = make_job()
    with job.JobContext(logger=logger):
        try:
            raise OSError("disk")
        except OSError:
            logger.exception("copy failed")
    assert job.error.startswith("copy failed\nTraceback")
    assert "OSError: disk" in job.error
    assert job.get_exit_code() == 0  # logging is not failing


def test_logger_handler_removed_after_block(logger: logging.Logger) -> None:
    job = make_job()
    with job.JobContext(logger=logger):
        assert len(logger.handlers) == 1
    assert logger.handlers == []
    logger.warning("after")
    assert job.output == ""


def test_logger_handler_removed_after_exception(logger: logging.Logger) -> None:
    job = make_job()
    with job.JobContext(logger=logger):
        logger.info("before")
        raise ValueError("x")
    assert logger.handlers == []
    assert job.output == "before\n"
    assert "ValueError: x" in job.error


def test_logger_level_lowered_to_info_then_restored(logger: logging.Logger) -> None:
    logger.setLevel(logging.WARNING)
    job = make_job()
    with job.JobContext(logger=logger):
        assert logger.getEffectiveLevel() == logging.INFO
        logger.info("let through")
    assert logger.level == logging.WARNING
    assert job.output == "let through\n"


def test_logger_level_restored_after_exception(logger: logging.Logger) -> None:
    logger.setLevel(logging.ERROR)
    with make_job().JobContext(logger=logger):
        raise ValueError("x")
    assert logger.level == logging.ERROR


def test_logger_inheriting_warning_is_lowered_and_reset_to_notset(
    logger: logging.Logger,
) -> None:
    assert logger.level == logging.NOTSET
    parent = logging.getLogger("test.job")
    old = parent.level
    parent.setLevel(logging.WARNING)
    try:
        job = make_job()
        with job.JobContext(logger=logger):
            logger.info("seen")
        assert logger.level == logging.NOTSET
        assert job.output == "seen\n"
    finally:
        parent.setLevel(old)


def test_logger_debug_level_is_left_alone(logger: logging.Logger) -> None:
    logger.setLevel(logging.DEBUG)
    with make_job().JobContext(logger=logger):
        assert logger.level == logging.DEBUG
    assert logger.level == logging.DEBUG


def test_level_changed_by_script_inside_block_is_kept(logger: logging.Logger) -> None:
    logger.setLevel(logging.WARNING)
    with make_job().JobContext(logger=logger):
        logger.setLevel(logging.DEBUG)
    assert logger.level == logging.DEBUG


def test_logger_adapter_is_accepted(logger: logging.Logger) -> None:
    job = make_job()
    adapter = logging.LoggerAdapter(logger, {})
    with job.JobContext(logger=adapter):
        adapter.warning("via adapter")
    assert job.output == "via adapter\n"
    assert logger.handlers == []


def test_two_jobs_capture_only_their_own_block(logger: logging.Logger) -> None:
    first, second = make_job(), make_job()
    with first.JobContext(logger=logger):
        logger.info("one")
    with second.JobContext(logger=logger):
        logger.info("two")
    assert (first.output, second.output) == ("one\n", "two\n")


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
    assert job.error.startswith("Traceback (most")
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


# --- get_script_logger ------------------------------------------------------------


@pytest.fixture
def script_logger_name() -> Iterator[str]:
    name = f"archivematica.mcp.client.test{uuidlib.uuid4().hex}"
    yield name
    for log in (logging.getLogger(name), logging.getLogger(SCRIPT_LOG_PREFIX + name)):
        for handler in list(log.handlers):
            log.removeHandler(handler)


def test_script_logger_is_the_named_logger(script_logger_name: str) -> None:
    log = get_script_logger(script_logger_name)
    assert log is logging.getLogger(script_logger_name)
    assert log.level == logging.INFO
    assert log.propagate is False


def test_script_logger_raises_a_higher_level_to_info(script_logger_name: str) -> None:
    logging.getLogger(script_logger_name).setLevel(logging.WARNING)
    assert get_script_logger(script_logger_name).level == logging.INFO


def test_script_logger_keeps_a_lower_level(script_logger_name: str) -> None:
    logging.getLogger(script_logger_name).setLevel(logging.DEBUG)
    assert get_script_logger(script_logger_name).level == logging.DEBUG


def test_script_logger_accepts_old_keyword_arguments(script_logger_name: str) -> None:
    log = get_script_logger(
        script_logger_name, formatter="%(message)s", root="archivematica", level=logging.DEBUG
    )
    assert log.level == logging.DEBUG


def test_script_logger_attaches_one_forwarder(script_logger_name: str) -> None:
    for _ in range(3):
        log = get_script_logger(script_logger_name)
    forwarders = [h for h in log.handlers if isinstance(h, WorkerLogForwarder)]
    assert len(forwarders) == 1
    assert forwarders[0].target.name == SCRIPT_LOG_PREFIX + script_logger_name


def test_script_logger_forwards_debug_copies(
    script_logger_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = get_script_logger(script_logger_name)
    direct = ListHandler()
    log.addHandler(direct)
    target = SCRIPT_LOG_PREFIX + script_logger_name
    with caplog.at_level(logging.DEBUG, logger=target):
        log.warning("hello %s", "world")
        log.debug("below the script level")
    [forwarded] = [r for r in caplog.records if r.name == target]
    assert forwarded.levelno == logging.DEBUG
    assert forwarded.levelname == "DEBUG"
    assert forwarded.getMessage() == "hello world"
    [original] = direct.records
    assert original.levelno == logging.WARNING
    assert original.name == script_logger_name
    assert original is not forwarded


def test_script_logger_does_not_reach_root_directly(
    script_logger_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = get_script_logger(script_logger_name)
    logging.getLogger(SCRIPT_LOG_PREFIX + script_logger_name).setLevel(logging.INFO)
    with caplog.at_level(logging.DEBUG, logger=script_logger_name):
        log.error("not for the worker log at ERROR")
    assert caplog.records == []


def test_forwarding_cannot_loop() -> None:
    # "amworker.scripts" forwards to "amworker.scripts.amworker.scripts",
    # whose records propagate back up through "amworker.scripts".
    name = "amworker.scripts"
    source, target = logging.getLogger(name), logging.getLogger(SCRIPT_LOG_PREFIX + name)
    saved = (source.level, source.propagate, list(source.handlers))
    seen = ListHandler()
    target.addHandler(seen)
    target.setLevel(logging.DEBUG)
    try:
        get_script_logger(name).info("once")
        assert [r.getMessage() for r in seen.records] == ["once"]
    finally:
        target.removeHandler(seen)
        target.setLevel(logging.NOTSET)
        source.setLevel(saved[0])
        source.propagate = saved[1]
        source.handlers[:] = saved[2]


def test_script_logger_output_is_captured_by_job_context(script_logger_name: str) -> None:
    log = get_script_logger(script_logger_name)
    job = make_job()
    with job.JobContext(logger=log):
        log.info("normalized %d files", 3)
        log.error("one failed")
    assert job.output == "normalized 3 files\n"
    assert job.error == "one failed\n"


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
