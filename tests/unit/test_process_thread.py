"""Unit tests of worker.pool.process_thread: a helper thread owned by one process."""

from __future__ import annotations

import os
import threading

import pytest

from worker.pool.process_thread import ProcessThread

pytestmark = pytest.mark.timeout(30)


def test_a_copy_made_by_fork_is_not_running_until_the_child_starts_it() -> None:
    stop = threading.Event()
    helper = ProcessThread("helper")
    assert helper.copied() and not helper.running()
    helper.start(stop.wait)
    assert helper.running() and not helper.copied() and helper.thread is not None
    assert helper.thread.name == "helper" and helper.thread.daemon
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the copy reads as not here, then starts
        code = 1
        try:
            seen = (helper.running(), helper.copied())
            helper.start(stop.wait)
            if seen == (False, True) and helper.running() and not helper.copied():
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert helper.running()  # the parent's own thread is untouched
    stop.set()
    helper.thread.join(10)
    assert not helper.running()
