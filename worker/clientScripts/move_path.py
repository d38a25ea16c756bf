"""``move_v0.0``: ``mv SOURCE DEST`` and ``mv SOURCE... DIRECTORY`` (GNU coreutils 9.1).

A rename where possible; across file systems, a copy that keeps modes,
timestamps and symlinks (``shutil.move``) followed by removal of the source.
An existing file target is replaced, as is an empty directory when moving a
directory; diagnostics and exit status 1 follow mv (``mv: cannot stat 'X':
No such file or directory``, ``mv: cannot move 'A' to 'B': Directory not
empty``, ``mv: 'A' and 'B' are the same file``...). A failed operand does not
stop the next one.

Deliberately not supported: every mv option (``-f``, ``-i``, ``-n``, ``-u``,
``-t``, ``-T``, ``--backup``...).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterable

from worker.clientScripts._common import (
    CommandError,
    OptionSpec,
    Report,
    ScriptJob,
    failure,
    parse_options,
    quote,
    run_jobs,
    strerror,
)
from worker.clientScripts._targets import check_replaceable, destinations

PROG = "mv"


def call(jobs: Iterable[ScriptJob]) -> None:
    """Run ``mv`` with each job's arguments."""
    run_jobs(jobs, PROG, _move)


def _move(args: list[str], report: Report) -> None:
    operands = parse_options(args, OptionSpec()).operands
    report.each(destinations(operands), _move_one)


def _move_one(pair: tuple[str, str]) -> None:
    source, target = pair
    try:
        info = os.lstat(source)
    except OSError as exc:
        raise failure("cannot stat", source, exc) from exc
    existing = _existing(target)
    if existing is not None:
        check_replaceable(source, target, info, existing)
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise _rename_error(source, target, exc) from exc
        _move_across_devices(source, target, existing)


def _existing(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None  # rename() will say what is wrong, if anything


def _rename_error(source: str, target: str, exc: OSError) -> CommandError:
    if exc.errno == errno.EINVAL:
        return CommandError(f"cannot move {quote(source)} to a subdirectory of itself, {quote(target)}")
    return CommandError(f"cannot move {quote(source)} to {quote(target)}: {strerror(exc)}")


def _move_across_devices(source: str, target: str, existing: os.stat_result | None) -> None:
    """Copy then delete; the target that rename() would have replaced goes first."""
    if existing is not None:
        try:
            if stat.S_ISDIR(existing.st_mode):
                os.rmdir(target)
            else:
                os.unlink(target)
        except OSError as exc:
            raise CommandError(
                f"inter-device move failed: {quote(source)} to {quote(target)}; "
                f"unable to remove target: {strerror(exc)}"
            ) from exc
    try:
        shutil.move(source, target)
    except OSError as exc:
        raise _rename_error(source, target, exc) from exc
