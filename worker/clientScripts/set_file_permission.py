"""``setfilepermission_v0.0``: ``chmod MODE FILE...`` (GNU coreutils 9.1).

MODE is octal (``775``) or symbolic (``u+x,go=rX``), exactly as chmod reads
it, including chmod's option-looking modes (``-w``, with its "new
permissions are ..., not ..." warning when the umask got in the way).
Symlinks named as operands are followed. A file that cannot be changed is
reported (``chmod: cannot access 'X': No such file or directory``), the exit
status becomes 1 and the next file is still changed. As in chmod, a
directory keeps its set-user/group-ID bits unless the mode names them
(``2775``, ``g-s``) or has five octal digits (``00775``).

Deliberately not supported: ``-R``, ``-c``, ``-f``, ``-v``, ``--reference``,
``--preserve-root``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from worker.clientScripts._common import (
    CommandError,
    OptionSpec,
    Report,
    ScriptJob,
    UsageError,
    failure,
    parse_options,
    quote,
    quote_text,
    run_jobs,
)
from worker.clientScripts._modes import ModeClause, adjust_mode, compile_mode, current_umask

PROG = "chmod"
_SPEC = OptionSpec(mode_like=True)


def call(jobs: Iterable[ScriptJob]) -> None:
    """Run ``chmod`` with each job's arguments."""
    run_jobs(jobs, PROG, _chmod)


def _chmod(args: list[str], report: Report) -> None:
    options = parse_options(args, _SPEC)
    files = options.operands
    if options.mode_args:
        mode_text = ",".join(options.mode_args)
    elif files:
        mode_text, files = files[0], files[1:]
    else:
        raise UsageError("missing operand")
    if not files:
        raise UsageError(f"missing operand after {quote_text(mode_text)}")
    clauses = compile_mode(mode_text)
    if clauses is None:
        raise UsageError(f"invalid mode: {quote_text(mode_text)}")
    change = _ModeChange(clauses, current_umask(), warn_about_umask=bool(options.mode_args))
    report.each(files, change.apply)


@dataclass(frozen=True)
class _ModeChange:
    """A compiled MODE, applied file by file."""

    clauses: Sequence[ModeClause]
    umask: int
    #: chmod checks the umask's effect only for option-looking modes such as ``-w``.
    warn_about_umask: bool

    def apply(self, path: str) -> None:
        info = _stat(path)
        is_dir = stat.S_ISDIR(info.st_mode)
        new, _ = adjust_mode(info.st_mode, is_dir, self.umask, self.clauses)
        if new != stat.S_IMODE(info.st_mode):
            try:
                os.chmod(path, new)
            except OSError as exc:
                raise failure("changing permissions of", path, exc) from exc
        if self.warn_about_umask:
            naive, _ = adjust_mode(info.st_mode, is_dir, 0, self.clauses)
            if new & ~naive:
                raise CommandError(
                    f"{quote(path, always=False)}: new permissions are "
                    f"{_permissions(new)}, not {_permissions(naive)}"
                )


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and os.path.islink(path):
            raise CommandError(f"cannot operate on dangling symlink {quote(path)}") from exc
        raise failure("cannot access", path, exc) from exc


def _permissions(mode: int) -> str:
    """``rwxr-s--T``-style text of the permission bits, as ls shows them."""
    return stat.filemode(mode)[1:]
