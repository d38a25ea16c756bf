"""``createdirectory_v0.0``: ``mkdir [-m MODE] DIRECTORY...`` (GNU coreutils 9.1).

Directories are made in argument order, so ``-m 770 sip/DIP/ sip/DIP/objects/``
makes both. With ``-m`` (``-mMODE``, ``--mode=MODE``; octal like ``770`` or
symbolic like ``u=rwx,g=rx``, ``a+t``) each directory ends up with exactly
the mode GNU mkdir gives it, whatever the worker's umask: GNU computes the
mode with the umask only where a symbolic clause leaves out "who" (``+x``),
and a directory inside a set-group-ID directory keeps that bit unless the
mode names it. Without ``-m`` the mode is ``a=rwx`` less the umask.

An invalid mode is ``mkdir: invalid mode 'X'`` (exit 1, nothing made). A
directory that cannot be made is reported (``mkdir: cannot create directory
'X': File exists``), the exit status becomes 1 and the next one is still made.

Deliberately not supported: ``-p`` (parents are never made implicitly),
``-v``, ``-Z``/``--context``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable

from worker.clientScripts._common import (
    CommandError,
    OptionSpec,
    Report,
    ScriptJob,
    UsageError,
    parse_options,
    quote_text,
    run_jobs,
    strerror,
)
from worker.clientScripts._modes import adjust_mode, compile_mode, current_umask

PROG = "mkdir"
_SPEC = OptionSpec(valued="m", long={"mode": "m"})
#: Bits that make GNU mkdir create the directory without group/other write first.
_SPECIAL = 0o6000
_STICKY = 0o1000
_GROUP_OTHER_WRITE = 0o022
#: Bits mkdir(2) honours on Linux; set-user/group-ID need a chmod.
_MKDIR_BITS = 0o1777


def call(jobs: Iterable[ScriptJob]) -> None:
    """Run ``mkdir`` with each job's arguments."""
    run_jobs(jobs, PROG, _mkdir)


def _mkdir(args: list[str], report: Report) -> None:
    options = parse_options(args, _SPEC)
    if not options.operands:
        raise UsageError("missing operand")
    mode_text = options.values.get("m")
    make = _plain_maker if mode_text is None else _mode_maker(mode_text)
    report.each(options.operands, make)


def _plain_maker(path: str) -> None:
    try:
        os.mkdir(path, 0o777)
    except OSError as exc:
        raise _cannot("create directory", path, exc) from exc


def _mode_maker(mode_text: str) -> Callable[[str], None]:
    clauses = compile_mode(mode_text)
    if clauses is None:
        raise UsageError(f"invalid mode {quote_text(mode_text)}", hint=False)
    mode, decided = adjust_mode(0o777, True, current_umask(), clauses)
    return lambda path: make_directory(path, mode, decided)


def make_directory(path: str, mode: int, decided: int) -> None:
    """Make ``path`` with the mode GNU ``mkdir -m`` would give it.

    GNU creates it with the process umask cleared and then chmods only the
    bits in ``decided`` that came out wrong; we create it under whatever
    umask the worker has and then set the mode GNU would have ended up with.
    """
    special = bool(decided & _SPECIAL or mode & _STICKY)
    initial = mode & ~_GROUP_OTHER_WRITE if special else mode
    try:
        os.mkdir(path, initial)
        actual = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as exc:
        raise _cannot("create directory", path, exc) from exc
    # What mkdir(2) gives under umask 0; S_ISGID can only be inherited from the parent.
    wanted = (initial & _MKDIR_BITS) | (actual & stat.S_ISGID)
    if (special or mode & decided & 0o777) and (wanted ^ mode) & decided:
        wanted = mode | (wanted & ~decided)
    if wanted != actual:
        _chmod(path, wanted)


def _chmod(path: str, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError as exc:
        raise _cannot("change permissions of", path, exc) from exc


def _cannot(what: str, path: str, exc: OSError) -> CommandError:
    # mkdir quotes names with quote(), not quoteaf() as cp and mv do.
    return CommandError(f"cannot {what} {quote_text(path)}: {strerror(exc)}")
