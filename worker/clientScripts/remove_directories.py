"""``removedirectories_v0.0``: ``rm -rf PATH...`` (GNU coreutils 9.1).

Each path is removed with everything under it; a path that does not exist is
fine (exit 0), a symlink is removed itself, never what it points to (as in
rm, ``link/`` with a trailing slash empties the directory it points to). A
path that cannot be removed is reported (``rm: cannot remove 'X':
Permission denied``), the exit status becomes 1 and the next path is still
removed. As rm does, it refuses ``.``/``..`` and anything that is the root
directory (``rm: it is dangerous to operate recursively on '/'``, exit 1).

Deliberate differences from ``rm -rf``: an empty path is refused with exit 1
(``rm -rf ''`` ignores it), since it can only come from a broken template;
the root refusal is not followed by rm's hint to use ``--no-preserve-root``,
which is not supported. ``-r``, ``-R``, ``-f`` are accepted and implied; no
other rm option is supported.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Iterable
from functools import partial
from typing import Any

from worker.clientScripts._common import (
    CommandError,
    OptionSpec,
    Report,
    ScriptJob,
    failure,
    parse_options,
    quote,
    run_jobs,
)
from worker.clientScripts._targets import last_component

PROG = "rm"
_SPEC = OptionSpec(flags="rRf", long={"recursive": "r", "force": "f"})


def call(jobs: Iterable[ScriptJob]) -> None:
    """Run ``rm -rf`` with each job's arguments."""
    run_jobs(jobs, PROG, _remove)


def _remove(args: list[str], report: Report) -> None:
    operands = parse_options(args, _SPEC).operands
    report.each(operands, partial(_remove_one, report))


def _remove_one(report: Report, path: str) -> None:
    if not path:
        raise CommandError("refusing to remove an empty path")
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return  # -f: nothing to remove is not an error
    except OSError as exc:
        raise failure("cannot remove", path, exc) from exc
    _refuse_dangerous(path, info)
    if stat.S_ISDIR(info.st_mode):
        _remove_tree(report, path)
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise failure("cannot remove", path, exc) from exc


def _refuse_dangerous(path: str, info: os.stat_result) -> None:
    if last_component(path) in (".", ".."):
        raise CommandError(f"refusing to remove '.' or '..' directory: skipping {quote(path)}")
    if os.path.samestat(info, os.stat("/")):
        same = "" if path == "/" else " (same as '/')"
        raise CommandError(f"it is dangerous to operate recursively on {quote(path)}{same}")


def _remove_tree(report: Report, path: str) -> None:
    def on_error(function: Any, failed: str, exc: BaseException) -> None:
        # -f ignores what vanished meanwhile; rm also stays silent when "dir/"
        # turns out to be a symlink it could empty but not remove.
        if isinstance(exc, FileNotFoundError | NotADirectoryError):
            return
        if isinstance(exc, OSError):
            report.error(str(failure("cannot remove", failed, exc)))
            return
        raise exc

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=on_error)
    else:
        shutil.rmtree(path, onerror=lambda func, failed, info: on_error(func, failed, info[1]))
