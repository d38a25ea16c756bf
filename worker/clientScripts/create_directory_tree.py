"""``createdirectorytree_v0.0``: ``tree DIRECTORY... -o FILE`` (tree 2.1, UTF-8 locale).

Writes the text listing ``tree`` writes: the directory as given, then each
entry under ``├── ``/``└── `` with ``│  ``/``    `` indentation (tree pads the
``│`` with two no-break spaces and a space), names sorted
bytewise, hidden (dot) files left out, symlinks shown as ``name -> target``
and not followed, then a blank line and ``N directories, M files`` (a
symlink to a directory counts as a directory; as tree 2.1 does, a top
directory counts itself only when it lists something). Non-printable
characters in names are written as ``\\ooo`` octal escapes. Without ``-o``
the listing goes to stdout.

Exit status as tree's: 0; 2 when a directory could not be read (it is
marked ``[error opening dir]`` in the listing); 1 on a bad command line or
an output file that cannot be written (``tree: invalid filename 'X'``).
Unlike tree, which is silent, each unreadable directory is also reported
on stderr so the failure shows in the task's output.

Deliberately not supported: every tree option but ``-o`` and ``--``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from worker.clientScripts._common import (
    Report,
    ScriptJob,
    UsageError,
    failure,
    octal_escape,
    quote_text,
    run_jobs,
)

PROG = "tree"
#: Exit status when some directory could not be listed.
OPEN_ERROR_STATUS = 2
_ERROR_MARK = "  [error opening dir]"
_USAGE = "usage: tree [-o filename] [--] [directory ...]"
#: Indentation under a directory that has more entries below (tree's UTF-8
#: line art pads it with two no-break spaces), and under a last entry.
_PIPE = "│\u00a0\u00a0 "
_BLANK = "    "


def call(jobs: Iterable[ScriptJob]) -> None:
    """Run ``tree`` with each job's arguments."""
    run_jobs(jobs, PROG, _tree)


def _tree(args: list[str], report: Report) -> None:
    roots, output = _parse(args)
    if output is None:
        report.job.write_output(_list(roots, report))
        return
    try:
        stream = open(output, "w", encoding="utf-8", newline="\n")
    except OSError as exc:
        raise UsageError(f"invalid filename {quote_text(output)}", hint=False) from exc
    with stream:
        stream.write(_list(roots, report))


def _list(roots: list[str], report: Report) -> str:
    listing = _Listing(report)
    for root in roots:
        listing.add_root(root)
    return listing.text()


def _parse(args: list[str]) -> tuple[list[str], str | None]:
    roots: list[str] = []
    output: str | None = None
    rest = iter(args)
    for arg in rest:
        if arg == "--":
            roots.extend(rest)
        elif arg == "-o":
            output = next(rest, None)
            if output is None:
                raise UsageError("Missing argument to -o option.", hint=False)
        elif arg.startswith("--"):
            raise UsageError(f"Invalid argument `{arg}'.\n{_USAGE}", hint=False)
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"Invalid argument -`{arg[1:2]}'.\n{_USAGE}", hint=False)
        else:
            roots.append(arg)
    return roots or ["."], output


@dataclass
class _Listing:
    """The lines and counts of one tree run."""

    report: Report
    lines: list[str] = field(default_factory=list)
    directories: int = 0
    files: int = 0

    def add_root(self, root: str) -> None:
        try:
            info = os.stat(root)  # a symlinked top directory is followed
        except OSError as exc:
            self.lines.append(_show(root) + _ERROR_MARK)
            self._open_failed(root, exc)
            return
        if not stat.S_ISDIR(info.st_mode):
            self.lines.append(_show(root) + _ERROR_MARK)
            self.files += 1
            return
        entries = self._read(root)
        self.lines.append(_show(root) + ("" if entries is not None else _ERROR_MARK))
        if entries:
            self.directories += 1
            self._render(entries, "")

    def text(self) -> str:
        dirs, files = self.directories, self.files
        summary = f"{dirs} director{'y' if dirs == 1 else 'ies'}, {files} file{'' if files == 1 else 's'}"
        return "\n".join([*self.lines, "", summary]) + "\n"

    def _read(self, path: str) -> list[os.DirEntry[str]] | None:
        try:
            with os.scandir(path) as scan:
                entries = [entry for entry in scan if not entry.name.startswith(".")]
        except OSError as exc:
            self._open_failed(path, exc)
            return None
        return sorted(entries, key=lambda entry: os.fsencode(entry.name))

    def _render(self, entries: list[os.DirEntry[str]], prefix: str) -> None:
        for index, entry in enumerate(entries):
            last = index == len(entries) - 1
            line = prefix + ("└── " if last else "├── ") + _show(entry.name)
            if entry.is_symlink():
                self._count(entry.is_dir())
                self.lines.append(f"{line} -> {_show(os.readlink(entry.path))}")
            elif entry.is_dir(follow_symlinks=False):
                self._count(True)
                children = self._read(entry.path)
                self.lines.append(line + ("" if children is not None else _ERROR_MARK))
                self._render(children or [], prefix + (_BLANK if last else _PIPE))
            else:
                self._count(False)
                self.lines.append(line)

    def _count(self, is_dir: bool) -> None:
        if is_dir:
            self.directories += 1
        else:
            self.files += 1

    def _open_failed(self, path: str, exc: OSError) -> None:
        self.report.error(str(failure("cannot open directory", path, exc)), OPEN_ERROR_STATUS)


def _show(name: str) -> str:
    """``name`` as tree prints it: non-printable characters as octal escapes."""
    return "".join(ch if ch.isprintable() else octal_escape(ch) for ch in name)
