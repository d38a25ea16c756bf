"""Helpers shared by the bundled coreutils-style client scripts.

The scripts mirror GNU coreutils 9.1 (Debian bookworm) closely enough that a
workflow cannot tell them from the commands they replace: same exit codes,
same ``program: message`` diagnostics on stderr. Messages are those of the C
locale, except that printable non-ASCII characters in file names are shown
as they are (as a UTF-8 locale would) rather than as octal escapes.

This module holds what more than one script needs: the per-job loop, the
error reporting, GNU's two file-name quoting styles and a getopt-like option
parser (chmod-style modes are in :mod:`._modes`, the ``SOURCE... DEST``
target rule of ``cp`` and ``mv`` in :mod:`._targets`). Nothing here starts a
process or touches a shell.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

_T = TypeVar("_T")


class ScriptJob(Protocol):
    """The part of Archivematica's ``Job`` API these scripts use."""

    @property
    def args(self) -> Sequence[str]:
        """``[function_name] + argv``."""

    def set_status(self, code: int, status_code: str = "success") -> None:
        """Record the exit code (a falsy code leaves it unchanged)."""

    def write_error(self, s: str) -> None:
        """Append ``s`` to the job's stderr."""

    def write_output(self, s: str) -> None:
        """Append ``s`` to the job's stdout."""

    def JobContext(self, logger: Any = None) -> AbstractContextManager[Any]:  # noqa: N802
        """Turn an exception inside the block into exit code 1 plus a traceback."""


class CommandError(Exception):
    """A failure on one operand: reported as ``program: message``, then the command goes on."""


class UsageError(Exception):
    """The command line itself is wrong; the command does nothing else."""

    def __init__(self, message: str, *, hint: bool = True) -> None:
        super().__init__(message)
        #: Whether GNU follows this message with its "Try '... --help'" line.
        self.hint = hint


@dataclass
class Report:
    """Where one command run writes its diagnostics, and its exit status so far."""

    job: ScriptJob
    prog: str
    status: int = 0

    def error(self, message: str, status: int = 1) -> None:
        """Write ``prog: message`` to stderr; the first failure fixes the exit status."""
        self.job.write_error(f"{self.prog}: {message}\n")
        self.status = self.status or status

    def each(self, items: Iterable[_T], action: Callable[[_T], None]) -> None:
        """Run ``action`` on every item, reporting a :class:`CommandError` and going on."""
        for item in items:
            try:
                action(item)
            except CommandError as exc:
                self.error(str(exc))


#: A command body: given argv (without the function name), does the work.
Command = Callable[[list[str], Report], None]


def run_jobs(jobs: Iterable[ScriptJob], prog: str, command: Command, usage_status: int = 1) -> None:
    """The body of every script's ``call(jobs)``: run ``command`` once per job.

    Each job runs inside its own ``JobContext``, so a bug in one job cannot
    stop the others. ``usage_status`` is the exit status of a bad command line
    (2 for ``test``, 1 for the other coreutils).
    """
    for job in jobs:
        with job.JobContext():
            job.set_status(_run_one(job, prog, command, usage_status))


def _run_one(job: ScriptJob, prog: str, command: Command, usage_status: int) -> int:
    report = Report(job, prog)
    try:
        command(list(job.args[1:]), report)
    except UsageError as exc:
        report.error(str(exc), usage_status)
        if exc.hint:
            job.write_error(f"Try '{prog} --help' for more information.\n")
    return report.status


# --- messages -------------------------------------------------------------

#: Characters that make GNU quote a file name wherever they appear in it.
_SHELL_SPECIAL = frozenset("\t\n !\"$&'()*;<=>?[\\]^`{|}")
#: Characters that make GNU quote a file name only when they start it.
_SHELL_SPECIAL_FIRST = frozenset("#~")
#: Characters that stop GNU from wrapping a name containing ``'`` in double quotes.
_DOUBLE_QUOTE_SPECIAL = frozenset('"$`\\!')
#: Control characters GNU writes as a letter escape rather than in octal.
_C_ESCAPES = {"\a": "a", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", "\v": "v"}


def strerror(exc: OSError) -> str:
    """The C library's wording of ``exc`` ("No such file or directory")."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def failure(what: str, path: str, exc: OSError) -> CommandError:
    """``what 'path': strerror``, the shape of most coreutils diagnostics."""
    return CommandError(f"{what} {quote(path)}: {strerror(exc)}")


def quote(name: str, *, always: bool = True) -> str:
    """Quote a file name as GNU's ``quoteaf`` does (``quotef`` if not ``always``).

    The result can be pasted into a POSIX shell: ``'a b'``, ``"it's"``,
    ``'new'$'\\n''line'``.
    """
    printable = name.isprintable()
    if not always and name and printable and not _needs_quotes(name):
        return name
    if "'" in name and printable and not _DOUBLE_QUOTE_SPECIAL.intersection(name):
        return f'"{name}"'
    return _single_quoted(name)


def quote_text(text: str) -> str:
    """Quote an argument as GNU's ``quote`` does in the C locale: ``'it\\'s'``."""
    body = "".join("\\" + ch if ch in "\\'" else ch if ch.isprintable() else _escape(ch) for ch in text)
    return f"'{body}'"


def _needs_quotes(name: str) -> bool:
    return bool(_SHELL_SPECIAL.intersection(name)) or name[0] in _SHELL_SPECIAL_FIRST


def _single_quoted(name: str) -> str:
    parts = ["'"]
    in_dollar = False  # inside a $'...' run of escaped characters
    for ch in name:
        if not ch.isprintable():
            parts.append("" if in_dollar else "'$'")
            parts.append(_escape(ch))
            in_dollar = True
            continue
        if in_dollar:
            parts.append("''")
            in_dollar = False
        parts.append("'\\''" if ch == "'" else ch)
    parts.append("'")
    return "".join(parts)


def _escape(ch: str) -> str:
    return "\\" + _C_ESCAPES[ch] if ch in _C_ESCAPES else octal_escape(ch)


def octal_escape(ch: str) -> str:
    """``\\ooo`` for each UTF-8 byte of ``ch``, undecodable file-name bytes included."""
    try:
        raw = ch.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        raw = ch.encode("utf-8", "surrogatepass")
    return "".join(f"\\{byte:03o}" for byte in raw)


# --- options --------------------------------------------------------------


@dataclass(frozen=True)
class OptionSpec:
    """The options a command accepts, in getopt's terms."""

    #: Short options without a value, e.g. ``"n"``.
    flags: str = ""
    #: Short options that take a value, e.g. ``"m"``.
    valued: str = ""
    #: Long option name -> the short option it stands for.
    long: Mapping[str, str] = field(default_factory=dict)
    #: chmod only: ``-w``, ``-rwx``, ``-0`` … are modes, not options.
    mode_like: bool = False


@dataclass
class Options:
    """A parsed command line."""

    flags: set[str] = field(default_factory=set)
    values: dict[str, str] = field(default_factory=dict)
    operands: list[str] = field(default_factory=list)
    #: The chmod-style mode arguments (``-w``), in order.
    mode_args: list[str] = field(default_factory=list)


#: First characters after ``-`` that make chmod read an argument as a mode.
_MODE_OPTION_CHARS = frozenset("rwxXstugoa,+-=01234567")


def parse_options(argv: Sequence[str], spec: OptionSpec) -> Options:
    """Parse ``argv`` like GNU getopt: options may follow operands; ``--`` ends them.

    Raises :class:`UsageError` with getopt's wording for an unknown option or
    a missing option value.
    """
    result = Options()
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            result.operands.extend(rest)
            break
        if spec.mode_like and _is_mode_option(arg):
            result.mode_args.append(arg)
        elif arg.startswith("--"):
            _long_option(arg, rest, spec, result)
        elif arg.startswith("-") and arg != "-":
            _short_options(arg, rest, spec, result)
        else:
            result.operands.append(arg)
    return result


def _is_mode_option(arg: str) -> bool:
    return len(arg) > 1 and arg[0] == "-" and arg[1] in _MODE_OPTION_CHARS and arg[:2] != "--"


def _long_option(arg: str, rest: list[str], spec: OptionSpec, result: Options) -> None:
    name, has_value, value = arg[2:].partition("=")
    matches = [known for known in spec.long if known.startswith(name)]
    if name in spec.long:
        matches = [name]
    if len(matches) != 1:
        raise UsageError(f"unrecognized option '{arg}'")
    letter = spec.long[matches[0]]
    if letter not in spec.valued:
        if has_value:
            raise UsageError(f"option '--{matches[0]}' doesn't allow an argument")
        result.flags.add(letter)
        return
    if not has_value:
        if not rest:
            raise UsageError(f"option '--{matches[0]}' requires an argument")
        value = rest.pop(0)
    result.values[letter] = value


def _short_options(arg: str, rest: list[str], spec: OptionSpec, result: Options) -> None:
    for index, letter in enumerate(arg[1:], start=2):
        if letter in spec.flags:
            result.flags.add(letter)
        elif letter in spec.valued:
            value = arg[index:]
            if not value:
                if not rest:
                    raise UsageError(f"option requires an argument -- '{letter}'")
                value = rest.pop(0)
            result.values[letter] = value
            return
        else:
            raise UsageError(f"invalid option -- '{letter}'")
