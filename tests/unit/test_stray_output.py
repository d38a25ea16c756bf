"""Unit tests of worker.pool.stray_output: a script's output outside the Job API, bounded."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import threading

import pytest

from worker.pool import stray_output
from worker.pool.stray_output import LINE_BYTES, RECORD_COST, StrayOutput

pytestmark = pytest.mark.timeout(60)

OUT, ERR = 101, 102  # stand-in descriptors: feed() never touches them


def reader(limit: int) -> StrayOutput:
    return StrayOutput({OUT: (stray_output.STDOUT_LOGGER, logging.INFO),
                        ERR: (stray_output.STDERR_LOGGER, logging.WARNING)}, limit)


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int, str]]:
    return [(r.name, r.levelno, r.getMessage()) for r in caplog.records]


def test_lines_are_logged_one_record_each_under_their_stream(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    out = reader(64 * 1024)

    out.feed(OUT, b"first\nsec")
    out.feed(ERR, b"oops\n")
    out.feed(OUT, b"ond\n")

    assert records(caplog) == [("amworker.stdout", logging.INFO, "first"),
                               ("amworker.stderr", logging.WARNING, "oops"),
                               ("amworker.stdout", logging.INFO, "second")]
    assert out.dropped == 0


def test_a_giant_line_is_cut_into_pieces_and_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    limit = 10 * (LINE_BYTES + RECORD_COST)
    out = reader(limit)

    for _ in range(100):  # one 6.4 MB line, in 64 KiB reads
        out.feed(OUT, b"x" * 65536)
    out.report()

    logged = [m for n, _, m in records(caplog) if n == "amworker.stdout"]
    assert len(logged) == 10 and all(m == "x" * LINE_BYTES for m in logged)
    markers = [m for n, _, m in records(caplog) if n == "amworker.stderr"]
    assert len(markers) == 2
    assert "passed AMWORKER_MAX_LOG_BYTES" in markers[0]
    assert f"{100 * 65536 - 10 * LINE_BYTES} byte(s)" in markers[1]
    assert out.dropped == 100 * 65536 - 10 * LINE_BYTES


def test_empty_lines_cost_their_record_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    out = reader(100 * RECORD_COST)

    out.feed(OUT, b"\n" * 10_000)

    assert len([r for r in caplog.records if r.name == "amworker.stdout"]) == 100
    assert out.dropped == 10_000 - 100


def test_nothing_is_reported_when_everything_fit(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    out = reader(64 * 1024)
    out.feed(OUT, b"small\n")

    out.report()

    assert records(caplog) == [("amworker.stdout", logging.INFO, "small")]


def test_bounded_catches_print_fd_writes_and_children_then_restores(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    saved_stdout, saved_stderr = sys.stdout, sys.stderr
    before = os.fstat(1), os.fstat(2)

    with stray_output.bounded(64 * 1024) as out:
        print("from print")
        sys.stderr.write("from sys.stderr\n")
        os.write(1, b"from fd 1\n")
        os.write(2, b"from fd 2 without newline")
        subprocess.run(["sh", "-c", "echo from a child"], check=True)

    assert sys.stdout is saved_stdout and sys.stderr is saved_stderr
    assert (os.fstat(1).st_ino, os.fstat(2).st_ino) == (before[0].st_ino, before[1].st_ino)
    got = {(n, m) for n, _, m in records(caplog)}
    assert {("amworker.stdout", "from print"), ("amworker.stderr", "from sys.stderr"),
            ("amworker.stdout", "from fd 1"), ("amworker.stderr", "from fd 2 without newline"),
            ("amworker.stdout", "from a child")} <= got
    assert out.dropped == 0


def test_bounded_counts_what_it_does_not_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    with stray_output.bounded(8 * 1024) as out:
        os.write(1, b"y" * (1024 * 1024))

    logged = sum(len(r.getMessage()) for r in caplog.records if r.name == "amworker.stdout")
    assert logged <= 8 * 1024
    assert logged + out.dropped == 1024 * 1024
    assert any("were not logged" in r.getMessage() for r in caplog.records)


def starved_reader(monkeypatch: pytest.MonkeyPatch, read_end: int, limit: int) -> StrayOutput:
    """A reader of ``read_end`` whose slice is over and whose drain time already ran out."""
    monkeypatch.setattr(stray_output, "DRAIN_SECONDS", 0.0)
    out = StrayOutput({read_end: (stray_output.STDOUT_LOGGER, logging.INFO)}, limit)
    out.stop()
    return out


def test_a_reader_starved_past_the_drain_time_still_logs_what_the_pipe_holds(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The reader first runs after the drain time is already over (no CPU for
    # it on a loaded host), and a writer that escaped the slice still holds
    # the pipe open: what is in the pipe is logged, and the reader ends.
    caplog.set_level(logging.INFO)
    read_end, write_end = os.pipe()
    os.write(write_end, b"the slice's last line\n")
    out = starved_reader(monkeypatch, read_end, 64 * 1024)
    try:
        out.run()
    finally:
        os.close(write_end)
    assert ("amworker.stdout", logging.INFO, "the slice's last line") in records(caplog)


@pytest.mark.skipif(not hasattr(fcntl, "F_SETPIPE_SZ"), reason="pipe sizes are Linux's")
def test_a_starved_reader_empties_a_pipe_bigger_than_one_read(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pipe can hold more than one read takes (64 KiB pages, or a pipe
    # enlarged): the reads after the drain time go on until it is empty.
    caplog.set_level(logging.INFO)
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 256 * 1024)
    line = b"x" * 1023 + b"\n"
    os.write(write_end, line * 200)  # 200 KiB: three reads and more
    os.close(write_end)
    out = starved_reader(monkeypatch, read_end, 1024 * 1024)
    out.run()
    logged = [m for n, _, m in records(caplog) if n == "amworker.stdout"]
    assert len(logged) == 200 and out.dropped == 0


def test_a_slice_off_the_main_thread_leaves_the_descriptors_alone() -> None:
    seen: list[object] = []
    before = os.fstat(1).st_ino

    def run() -> None:
        with stray_output.guard(1024) as out:
            seen.append(out)
            seen.append(os.fstat(1).st_ino)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)

    assert seen == [None, before]
    with stray_output.guard(1024) as out:
        assert isinstance(out, StrayOutput) and os.fstat(1).st_ino != before


def test_one_parked_thread_reads_every_slice_in_turn(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO)
    standby = stray_output._Standby()
    monkeypatch.setattr(stray_output, "_READERS", standby)
    started = threading.Thread.start
    threads: list[threading.Thread] = []

    def counted(thread: threading.Thread) -> None:
        threads.append(thread)
        started(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)
    for n in range(5):
        with stray_output.bounded(64 * 1024):
            os.write(1, f"slice {n}\n".encode())
    assert threads == [standby._thread] and threads[0].is_alive()
    assert {r.thread for r in caplog.records if r.name == "amworker.stdout"} == {threads[0].ident}
    assert [m for n, _, m in records(caplog) if n == "amworker.stdout"] == [f"slice {n}" for n in range(5)]


def test_a_reader_still_draining_does_not_hold_up_the_next_slices_reader() -> None:
    standby = stray_output._Standby()
    started, release = threading.Event(), threading.Event()
    ran_on: list[threading.Thread] = []

    def stuck() -> None:
        ran_on.append(threading.current_thread())
        started.set()
        assert release.wait(10)

    first = standby.run(stuck)
    assert started.wait(10)
    second = standby.run(lambda: ran_on.append(threading.current_thread()))
    assert second.wait(10) and not first.is_set()
    release.set()
    assert first.wait(10)
    third = standby.run(lambda: ran_on.append(threading.current_thread()))
    assert third.wait(10)
    parked = standby._thread
    assert ran_on[0] is parked and ran_on[1] is not parked and ran_on[2] is parked


def test_a_reader_that_fails_is_logged_and_the_thread_serves_the_next(
        caplog: pytest.LogCaptureFixture) -> None:
    standby = stray_output._Standby()

    def broken() -> None:
        raise OSError("bad descriptor")

    assert standby.run(broken).wait(10)
    after: list[threading.Thread] = []
    assert standby.run(lambda: after.append(threading.current_thread())).wait(10)
    assert after == [standby._thread]
    assert any("reading the slice's stray output failed" in r.getMessage() and r.exc_info
               for r in caplog.records)
