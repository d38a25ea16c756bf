"""``copy_v0.0``: ``cp SOURCE DEST`` and ``cp SOURCE... DIRECTORY`` (GNU coreutils 9.1).

Options (before, between or after operands, as GNU getopt allows):
``-n``/``--no-clobber`` skips an existing target and still exits 0, as
coreutils 9.1 does (9.2-9.3 made that exit 1; 9.4 reverted it);
``-R``/``-r``/``--recursive`` copies directories, see ``copy_recursive``.

Like ``cp`` without ``-p``: a new file gets the source's permission bits less
the umask and a fresh timestamp; an existing file keeps its mode and is
overwritten in place (through a symlink, but never through a dangling one).
Diagnostics and exit status 1 follow cp (``cp: cannot stat 'X': No such
file or directory``); a failed operand does not stop the next one.

Deliberately not supported: every other cp option (``-p``, ``-a``, ``-f``,
``-i``, ``-l``, ``-s``, ``-u``, ``-t``, ``--backup``...), and copying device
files or sockets (reported as an error). A fifo is copied as a new fifo even
without ``-R``, where GNU cp would read from it and could block the worker
forever. ``cp -R`` refuses to copy a directory into itself before writing
anything, where GNU cp copies part of it first.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

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

PROG = "cp"
_SPEC = OptionSpec(flags="nRr", long={"no-clobber": "n", "recursive": "R"})
#: Read/write chunk size for file contents.
_CHUNK = 1024 * 1024
_OWNER_RWX = 0o700


def call(jobs: Iterable[ScriptJob]) -> None:
    """Run ``cp`` with each job's arguments."""
    run_jobs(jobs, PROG, copy_command)


def copy_command(args: list[str], report: Report, *, recursive: bool = False) -> None:
    """``cp [-n] [-R] SOURCE... DEST``; ``recursive`` acts as an implied ``-R``."""
    options = parse_options(args, _SPEC)
    copier = _Copier(
        report,
        recursive=recursive or bool(options.flags & {"R", "r"}),
        no_clobber="n" in options.flags,
    )
    report.each(destinations(options.operands), copier.copy)


@dataclass
class _Copier:
    """One cp run's settings, applied to each (source, target) pair."""

    report: Report
    recursive: bool
    no_clobber: bool

    def copy(self, pair: tuple[str, str]) -> None:
        source, target = pair
        try:
            # cp -R copies symlinks as symlinks, even when named on the command line.
            info = os.lstat(source) if self.recursive else os.stat(source)
        except OSError as exc:
            raise failure("cannot stat", source, exc) from exc
        if not stat.S_ISDIR(info.st_mode):
            self._copy_entry(source, target, info)
        elif not self.recursive:
            raise CommandError(f"-r not specified; omitting directory {quote(source)}")
        else:
            _refuse_copy_into_itself(source, target)
            self._copy_directory(source, target, info)

    def _copy_entry(self, source: str, target: str, info: os.stat_result) -> None:
        """Copy anything but a directory onto ``target``."""
        is_link = stat.S_ISLNK(info.st_mode)
        existing = _existing(target, follow=not is_link)
        if self.no_clobber and os.path.lexists(target):
            return
        if existing is not None:
            check_replaceable(source, target, info, existing)
        if is_link:
            _copy_symlink(source, target, replace=existing is not None)
        elif stat.S_ISREG(info.st_mode):
            if existing is None and os.path.islink(target):
                raise CommandError(f"not writing through dangling symlink {quote(target)}")
            _copy_file(source, target, info.st_mode)
        elif stat.S_ISFIFO(info.st_mode):
            _make_fifo(target, info.st_mode, replace=existing is not None)
        else:
            raise CommandError(f"cannot copy special file {quote(source)}: not supported")

    def _copy_directory(self, source: str, target: str, info: os.stat_result) -> None:
        existing = _existing(target, follow=False)
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            raise CommandError(
                f"cannot overwrite non-directory {quote(target)} with directory {quote(source)}"
            )
        restore = None if existing is not None else _make_directory(target, info.st_mode)
        try:
            self._copy_children(source, target)
        finally:
            if restore is not None:
                os.chmod(target, restore)

    def _copy_children(self, source: str, target: str) -> None:
        try:
            names = sorted(os.listdir(source))
        except OSError as exc:
            raise failure("cannot access", source, exc) from exc
        pairs = [(os.path.join(source, name), os.path.join(target, name)) for name in names]
        self.report.each(pairs, self._copy_child)

    def _copy_child(self, pair: tuple[str, str]) -> None:
        source, target = pair
        try:
            info = os.lstat(source)
        except OSError as exc:
            raise failure("cannot stat", source, exc) from exc
        if stat.S_ISDIR(info.st_mode):
            self._copy_directory(source, target, info)
        else:
            self._copy_entry(source, target, info)


def _existing(path: str, *, follow: bool) -> os.stat_result | None:
    """``path``'s status, or ``None`` when nothing is there to overwrite."""
    try:
        return os.stat(path, follow_symlinks=follow)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise failure("cannot stat", path, exc) from exc


def _refuse_copy_into_itself(source: str, target: str) -> None:
    real_source = os.path.realpath(source)
    real_target = os.path.realpath(target)
    if real_target == real_source:
        raise CommandError(f"{quote(source)} and {quote(target)} are the same file")
    if real_target.startswith(real_source.rstrip("/") + "/"):
        raise CommandError(f"cannot copy a directory, {quote(source)}, into itself, {quote(target)}")


def _copy_file(source: str, target: str, mode: int) -> None:
    """Copy contents; a new file gets ``mode``'s permission bits less the umask."""
    if target.endswith("/"):
        # Only reached when target is not a directory.
        reason = os.strerror(errno.ENOTDIR)
        raise CommandError(f"cannot create regular file {quote(target)}: {reason}")
    with _open_source(source) as reader:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        try:
            descriptor = os.open(target, flags, stat.S_IMODE(mode) & 0o777)
        except OSError as exc:
            raise failure("cannot create regular file", target, exc) from exc
        try:
            with open(descriptor, "wb", closefd=True) as writer:
                shutil.copyfileobj(reader, writer, _CHUNK)
        except OSError as exc:
            raise failure("error writing", target, exc) from exc


def _open_source(source: str) -> BinaryIO:
    try:
        return open(source, "rb")
    except OSError as exc:
        raise CommandError(f"cannot open {quote(source)} for reading: {strerror(exc)}") from exc


def _copy_symlink(source: str, target: str, *, replace: bool) -> None:
    try:
        link = os.readlink(source)
        if replace:
            os.unlink(target)
        os.symlink(link, target)
    except OSError as exc:
        raise failure("cannot create symbolic link", target, exc) from exc


def _make_fifo(target: str, mode: int, *, replace: bool) -> None:
    try:
        if replace:
            os.unlink(target)
        os.mkfifo(target, stat.S_IMODE(mode) & 0o777)
    except OSError as exc:
        raise failure("cannot create fifo", target, exc) from exc


def _make_directory(target: str, mode: int) -> int | None:
    """Create ``target`` like cp -R; return the mode to restore once it is filled.

    The new directory gets the source's permission bits less the umask. If
    those deny its owner access, it stays owner-accessible until filled.
    """
    try:
        os.mkdir(target, stat.S_IMODE(mode) & 0o777)
        made = stat.S_IMODE(os.stat(target).st_mode)
        if made & _OWNER_RWX == _OWNER_RWX:
            return None
        os.chmod(target, made | _OWNER_RWX)
    except OSError as exc:
        raise failure("cannot create directory", target, exc) from exc
    return made
