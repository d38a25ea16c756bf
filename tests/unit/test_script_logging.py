"""What logging does for a client script: get_script_logger and JobContext(logger=…).

Issue 9, Found 2 and 3: records propagate like the stock worker's (so a
script's tests see them in ``caplog``), and a JobContext logger adds to the
task's output exactly what stock's 100-record buffering handler adds.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker import logs
from worker.client.job import Job
from worker.client.log_capture import BUFFER_CAPACITY, BufferedJobLogHandler
from worker.utils.custom_handlers import get_script_logger

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of its own at DEBUG, left without handlers afterwards."""
    log = logging.getLogger(f"test.scriptlog.{uuidlib.uuid4().hex}")
    log.setLevel(logging.DEBUG)
    yield log
    log.handlers.clear()


def make_job(**kwargs: object) -> Job:
    return Job("fn_v0.0", "c6e07b1d-3a3b-4e4f-9a8b-0123456789ab", [], **kwargs)  # type: ignore[arg-type]


# --- JobContext(logger=…): stock's buffering handler ----------------------------


def test_fewer_than_capacity_records_add_nothing(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    job = make_job()
    with caplog.at_level(logging.INFO), job.JobContext(logger=logger):
        logger.info("Stored modification dates of %d files.", 2)
        logger.error("a problem")
    assert (job.output, job.error) == ("", "")
    # ...while the records still reached the log, through propagation.
    assert [r.getMessage() for r in caplog.records if r.name == logger.name] == [
        "Stored modification dates of 2 files.",
        "a problem",
    ]


def test_a_full_buffer_is_written_without_newlines_split_by_level(logger: logging.Logger) -> None:
    assert BUFFER_CAPACITY == 100
    job = make_job()
    with job.JobContext(logger=logger):
        logger.debug("below INFO, never buffered")
        for i in range(98):
            logger.info("i%d", i)
        logger.warning("w")
        assert job.output == ""  # 99 records held
        logger.error("e")  # the 100th fills the buffer
        assert job.output == "".join(f"i{i}" for i in range(98)) + "w"
        assert job.error == "e"
        for _ in range(BUFFER_CAPACITY - 1):
            logger.critical("dropped")
    # 99 records still buffered at the end are dropped, not flushed.
    assert job.error == "e"
    assert logger.handlers == []


def test_flush_writes_the_message_only(logger: logging.Logger) -> None:
    job = make_job()
    with job.JobContext(logger=logger):
        try:
            raise OSError("disk")
        except OSError:
            for _ in range(BUFFER_CAPACITY):
                logger.exception("copy %s", "failed")
    assert job.error == "copy failed" * BUFFER_CAPACITY  # no traceback, no newline


def test_handler_is_removed_after_an_exception(logger: logging.Logger) -> None:
    job = make_job()
    with job.JobContext(logger=logger):
        assert [type(h) for h in logger.handlers] == [BufferedJobLogHandler]
        raise ValueError("x")
    assert logger.handlers == []
    assert job.error.startswith("xTraceback")


def test_logger_level_is_left_alone(logger: logging.Logger) -> None:
    logger.setLevel(logging.WARNING)
    job = make_job()
    with job.JobContext(logger=logger):
        assert logger.level == logging.WARNING
    assert logger.level == logging.WARNING


def test_logger_adapter_is_accepted(logger: logging.Logger) -> None:
    job = make_job()
    with job.JobContext(logger=logging.LoggerAdapter(logger, {})):
        assert len(logger.handlers) == 1
    assert logger.handlers == []


def test_every_record_mode_writes_lines(logger: logging.Logger) -> None:
    job = make_job(log_every_record=True)
    with job.JobContext(logger=logger):
        logger.debug("hidden")
        logger.info("info %s", 1)
        logger.warning("warn")
        logger.error("err")
    assert job.output == "info 1\nwarn\n"
    assert job.error == "err\n"


# --- get_script_logger outside amworker: stock's dictConfig ----------------------


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO, capture_output=True, text=True, timeout=50, check=False,
    )


@pytest.mark.timeout(60)
def test_outside_amworker_it_configures_logging_like_stock() -> None:
    result = _run(
        """
        import logging
        old = logging.getLogger("some.library")
        from worker.utils.custom_handlers import get_script_logger
        log = get_script_logger("archivematica.mcp.client.demo")
        root = logging.getLogger()
        [console] = root.handlers
        assert type(console) is logging.StreamHandler, console
        assert root.level == logging.WARNING
        assert log.level == logging.INFO and log.propagate and log.handlers == []
        assert logging.getLogger("archivematica").level == logging.INFO
        assert not old.disabled
        log.info("to the console")
        logging.getLogger("elsewhere").info("below WARNING: not shown")
        """
    )
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    assert line.endswith("to the console")
    assert "INFO" in line and "archivematica.mcp.client.demo" in line


@pytest.mark.timeout(90)
def test_a_scripts_tests_see_its_records_in_caplog(tmp_path: Path) -> None:
    # Found 2: Archivematica's test_extract_contents/test_pid_components pattern.
    (tmp_path / "test_caplog.py").write_text(textwrap.dedent(
        """
        import logging
        from worker.utils.custom_handlers import get_script_logger

        logger = get_script_logger("archivematica.mcp.client.extract_contents")

        def test_records_reach_caplog(caplog):
            logger.info("Extracting file %s", "a.zip")
            assert [r.getMessage() for r in caplog.records] == ["Extracting file a.zip"]
        """
    ))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=80, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- get_script_logger inside amworker: amworker's handler stays the only one ------


@pytest.fixture
def amworker_json_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure("INFO", "json")
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_inside_amworker_root_logging_is_left_alone(amworker_json_log: io.StringIO) -> None:
    root = logging.getLogger()
    handlers_before = list(root.handlers)
    name = f"archivematica.mcp.client.t{uuidlib.uuid4().hex}"
    log = get_script_logger(name)
    assert root.handlers == handlers_before
    assert root.level == logging.INFO
    assert log.level == logging.INFO and log.propagate
    log.info("Stored modification dates of %d files.", 2)
    logging.getLogger("amworker.test").info("the worker's own line")
    lines = [json.loads(line) for line in amworker_json_log.getvalue().splitlines()]
    assert [(e["logger"], e["message"]) for e in lines if e["logger"] in (name, "amworker.test")] == [
        (name, "Stored modification dates of 2 files."),
        ("amworker.test", "the worker's own line"),
    ]


# --- the stock module's other names -------------------------------------------


def test_group_write_rotating_file_handler_makes_group_writable_files(tmp_path: Path) -> None:
    from worker.utils.custom_handlers import GroupWriteRotatingFileHandler

    previous = os.umask(0o022)
    try:
        handler = GroupWriteRotatingFileHandler(tmp_path / "client.log", maxBytes=1000)
        handler.close()
        assert os.umask(0o022) == 0o022  # the handler put the process umask back
    finally:
        os.umask(previous)
    assert (tmp_path / "client.log").stat().st_mode & 0o020


def test_callback_handler_hands_over_formatted_records(logger: logging.Logger) -> None:
    from worker.utils.custom_handlers import CallbackHandler

    seen: list[str] = []
    logger.addHandler(CallbackHandler(seen.append, module_name="mod"))
    logger.warning("careful %s", "now")
    [line] = seen
    assert line.startswith("mod: WARNING") and line.endswith("careful now")
