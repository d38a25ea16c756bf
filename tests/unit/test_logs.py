"""worker.logs: batch context on every record, in both formats."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from worker import logs

#: A logger of its own, the stream its handler writes to, and that handler.
Capture = tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]]


@pytest.fixture
def capture() -> Iterator[Capture]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger("amworker.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)


def test_json_lines_carry_function_batch_and_slice(capture: Capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(logs.JsonFormatter())

    with logs.batch_context("sliced_v0.0", "7f1c", "2/4"):
        logger.info("running %d jobs", 3)
    logger.info("idle")

    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["function"] == "sliced_v0.0"
    assert inside["batch"] == "7f1c"
    assert inside["slice"] == "2/4"
    assert inside["message"] == "running 3 jobs"
    assert inside["level"] == "INFO" and inside["logger"] == "amworker.test_logs"
    assert not {"function", "batch", "slice"} & set(outside)


def test_text_lines_show_the_context(capture: Capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(logs.TextFormatter())

    with logs.batch_context("echo_v0.0", "abc"):
        logger.warning("slow")
    logger.warning("plain")

    inside, outside = stream.getvalue().splitlines()
    assert inside.endswith("amworker.test_logs: (echo_v0.0 batch=abc) slow")
    assert outside.endswith("amworker.test_logs: plain")
    assert "WARNING" in inside


def test_explicit_extra_wins_over_the_context(capture: Capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(logs.JsonFormatter())

    with logs.batch_context("echo_v0.0", "abc"):
        logger.info("given up", extra={"slice": "3/3"})

    entry = json.loads(stream.getvalue())
    assert (entry["function"], entry["batch"], entry["slice"]) == ("echo_v0.0", "abc", "3/3")


def test_threads_keep_their_own_batch(capture: Capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(logs.JsonFormatter())
    inside = threading.Barrier(2)

    def lane(batch: str) -> None:
        with logs.batch_context("echo_v0.0", batch):
            inside.wait(timeout=10)  # both contexts are entered before either logs
            logger.info(batch)

    threads = [threading.Thread(target=lane, args=(b,)) for b in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert sorted((e["message"], e["batch"]) for e in entries) == [("one", "one"), ("two", "two")]


def test_exceptions_are_kept_in_json(capture: Capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(logs.JsonFormatter())
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    entry = json.loads(stream.getvalue())
    assert "ValueError: boom" in entry["exception"]


def test_configure_installs_one_handler_with_the_filter() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        logs.configure("DEBUG", "json")
        logs.configure("INFO", "text")
        ours = [h for h in root.handlers if getattr(h, "_amworker", False)]
        assert len(ours) == 1
        assert isinstance(ours[0].formatter, logs.TextFormatter)
        assert any(isinstance(f, logs.ContextFilter) for f in ours[0].filters)
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)
