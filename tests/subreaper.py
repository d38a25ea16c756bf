"""Whether the test process is a child subreaper (prctl(2), Linux), and undoing it.

The executor makes the process that runs a script a subreaper
(worker.pool.executor.become_subreaper), so that a script's daemonised
grandchildren are re-parented to it and killed. Tests that run the executor
in the pytest process must hand the flag back (tests/conftest.py).
"""

from __future__ import annotations

import ctypes

#: prctl(2) options: whether orphaned descendants are re-parented to this process.
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


def is_subreaper() -> bool:
    """True when this process adopts its orphaned descendants (Linux; False elsewhere)."""
    flag = ctypes.c_int(0)
    try:
        failed = ctypes.CDLL(None, use_errno=True).prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag),
                                                         0, 0, 0)
    except AttributeError:  # no prctl: not Linux
        return False
    return failed == 0 and flag.value != 0


def set_subreaper(on: bool) -> None:
    """Make this process a subreaper, or stop it being one."""
    if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
