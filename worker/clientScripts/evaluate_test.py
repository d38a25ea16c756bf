"""``test_v0.0``: the GNU ``test`` command (coreutils 9.1), evaluated in Python.

Exit status 0 when the expression is true, 1 when it is false, 2 with a
``test: ...`` message on a malformed expression, like ``/usr/bin/test``.
Supported: the POSIX rules for one to four arguments, ``!``, ``(`` ``)``,
``-a``, ``-o``; unary ``-b -c -d -e -f -g -G -h -k -L -N -O -p -r -s -S -t
-u -w -x -n -z``; binary ``= == !=``, ``-eq -ne -lt -le -gt -ge`` (with
GNU's ``-l STRING`` length operand) and ``-nt -ot -ef``. Like coreutils 9.1
(and unlike bash's builtin), ``<`` and ``>`` are not operators.

Deliberately not supported: the ``[ ... ]`` spelling, ``--help`` and
``--version``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

from worker.clientScripts._common import Report, ScriptJob, UsageError, quote_text, run_jobs

PROG = "test"
#: Exit status of a malformed expression.
SYNTAX_STATUS = 2

#: GNU test's integer syntax: blanks, an optional sign, ASCII digits, blanks.
_INTEGER = re.compile(r"[ \t]*([+-]?[0-9]+)[ \t]*")
_INTEGER_OPS = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})
_FILE_OPS = frozenset({"-nt", "-ot", "-ef"})
_STRING_OPS = frozenset({"=", "==", "!="})
_BINARY = _INTEGER_OPS | _FILE_OPS | _STRING_OPS
_LARGEST_FD = 2**31 - 1


def call(jobs: Iterable[ScriptJob]) -> None:
    """Evaluate each job's arguments as a ``test`` expression."""
    run_jobs(jobs, PROG, _test, usage_status=SYNTAX_STATUS)


def _test(args: list[str], report: Report) -> None:
    if not evaluate(args):
        report.status = 1


def evaluate(args: Sequence[str]) -> bool:
    """The truth of a ``test`` expression; :class:`UsageError` if malformed."""
    parser = _Parser(args)
    value = parser.posix(len(args))
    if parser.pos != len(args):
        parser.syntax_error(f"extra argument {quote_text(args[parser.pos])}")
    return value


class _Parser:
    """A cursor over the arguments, with GNU test's grammar as methods."""

    def __init__(self, args: Sequence[str]) -> None:
        self.args = list(args)
        self.pos = 0

    def syntax_error(self, message: str) -> NoReturn:
        raise UsageError(message, hint=False)

    def beyond(self) -> NoReturn:
        self.syntax_error(f"missing argument after {quote_text(self.args[-1])}")

    def advance(self, *, operand_needed: bool) -> None:
        self.pos += 1
        if operand_needed and self.pos >= len(self.args):
            self.beyond()

    def posix(self, count: int) -> bool:
        """POSIX's argument-count rules; longer expressions go to the full grammar."""
        if count == 0:
            return False
        if count == 1:
            return self.one()
        if count == 2:
            return self.two()
        if count == 3:
            return self.three()
        here = self.args[self.pos :]
        if count == 4 and here[0] == "!":
            self.advance(operand_needed=False)
            return not self.three()
        if count == 4 and here[0] == "(" and here[3] == ")":
            self.advance(operand_needed=False)
            value = self.two()
            self.advance(operand_needed=False)
            return value
        return self.expr()

    def one(self) -> bool:
        value = self.args[self.pos] != ""
        self.pos += 1
        return value

    def two(self) -> bool:
        arg = self.args[self.pos]
        if arg == "!":
            self.advance(operand_needed=False)
            return not self.one()
        if _is_dash_letter(arg):
            return self.unary()
        self.beyond()

    def three(self) -> bool:
        first, middle, last = self.args[self.pos : self.pos + 3]
        if middle in _BINARY:
            return self.binary()
        if first == "!":
            self.advance(operand_needed=False)
            return not self.two()
        if first == "(" and last == ")":
            self.advance(operand_needed=False)
            value = self.one()
            self.advance(operand_needed=False)
            return value
        if middle in ("-a", "-o"):
            return self.expr()
        self.syntax_error(f"{quote_text(middle)}: binary operator expected")

    def expr(self) -> bool:
        """``or``: and-terms joined by ``-o`` (every term is still parsed)."""
        value = self.conjunction()
        while self.pos < len(self.args) and self.args[self.pos] == "-o":
            self.advance(operand_needed=True)
            value = self.conjunction() or value
        return value

    def conjunction(self) -> bool:
        value = self.term()
        while self.pos < len(self.args) and self.args[self.pos] == "-a":
            self.advance(operand_needed=True)
            value = self.term() and value
        return value

    def term(self) -> bool:
        if self.pos >= len(self.args):
            self.beyond()
        negated = False
        while self.args[self.pos] == "!":
            self.advance(operand_needed=True)
            negated = not negated
        here = self.args[self.pos :]
        if here[0] == "(":
            value = self.parenthesised()
        elif len(here) >= 4 and here[0] == "-l" and here[2] in _BINARY:
            value = self.binary(left_is_length=True)
        elif len(here) >= 3 and here[1] in _BINARY:
            value = self.binary()
        elif _is_dash_letter(here[0]):
            value = self.unary()
        else:
            value = self.one()
        return value != negated

    def parenthesised(self) -> bool:
        self.advance(operand_needed=True)
        count = 1
        while self.pos + count < len(self.args) and self.args[self.pos + count] != ")":
            if count == 4:
                count = len(self.args) - self.pos
                break
            count += 1
        value = self.posix(count)
        if self.pos >= len(self.args):
            self.syntax_error(f"{quote_text(')')} expected")
        if self.args[self.pos] != ")":
            found = quote_text(self.args[self.pos])
            self.syntax_error(f"{quote_text(')')} expected, found {found}")
        self.advance(operand_needed=False)
        return value

    def unary(self) -> bool:
        letter = self.args[self.pos][1]
        test = _UNARY.get(letter)
        if test is None:
            self.syntax_error(f"{quote_text(self.args[self.pos])}: unary operator expected")
        self.advance(operand_needed=True)
        operand = self.args[self.pos]
        self.pos += 1
        return test(operand)

    def binary(self, *, left_is_length: bool = False) -> bool:
        if left_is_length:
            self.advance(operand_needed=False)
        op = self.pos + 1
        right_is_length = op < len(self.args) - 2 and self.args[op + 1] == "-l"
        if right_is_length:
            self.advance(operand_needed=False)
        left, operator, right = self.args[op - 1], self.args[op], self.args[op + 1]
        if operator in _INTEGER_OPS:
            lvalue = _length(left) if left_is_length else _integer(left)
            rvalue = _length(self.args[op + 2]) if right_is_length else _integer(right)
            self.pos += 3
            return _compare_integers(operator, lvalue, rvalue)
        self.pos += 3
        if operator in _FILE_OPS:
            return _compare_files(operator, left, right)
        return _compare_strings(operator, left, right)


def _is_dash_letter(arg: str) -> bool:
    return len(arg) == 2 and arg[0] == "-" and arg[1].isascii()


def _length(text: str) -> int:
    return len(os.fsencode(text))


def _integer(text: str) -> int:
    match = _INTEGER.fullmatch(text)
    if match is None:
        raise UsageError(f"invalid integer {quote_text(text)}", hint=False)
    return int(match.group(1))


def _compare_integers(operator: str, left: int, right: int) -> bool:
    return {
        "-eq": left == right,
        "-ne": left != right,
        "-lt": left < right,
        "-le": left <= right,
        "-gt": left > right,
        "-ge": left >= right,
    }[operator]


def _compare_strings(operator: str, left: str, right: str) -> bool:
    return left != right if operator == "!=" else left == right


def _compare_files(operator: str, left: str, right: str) -> bool:
    lstat_, rstat_ = _stat(left), _stat(right)
    if operator == "-ef":
        return bool(lstat_ and rstat_ and os.path.samestat(lstat_, rstat_))
    if lstat_ is None or rstat_ is None:
        # A file that exists is newer (-nt) or older (-ot) than one that doesn't.
        return (lstat_ if operator == "-nt" else rstat_) is not None
    if operator == "-nt":
        return lstat_.st_mtime_ns > rstat_.st_mtime_ns
    return lstat_.st_mtime_ns < rstat_.st_mtime_ns


def _stat(path: str, *, follow: bool = True) -> os.stat_result | None:
    try:
        return os.stat(path, follow_symlinks=follow)
    except (OSError, ValueError):  # ValueError: an embedded NUL, which no file has
        return None


def _file_test(predicate: Callable[[os.stat_result], bool], *, follow: bool = True) -> Callable[[str], bool]:
    def test(path: str) -> bool:
        info = _stat(path, follow=follow)
        return info is not None and predicate(info)

    return test


def _access_test(mode: int) -> Callable[[str], bool]:
    def test(path: str) -> bool:
        try:
            return os.access(path, mode, effective_ids=True)
        except ValueError:
            return False

    return test


def _is_terminal(text: str) -> bool:
    fd = _integer(text)
    return 0 <= fd <= _LARGEST_FD and os.isatty(fd)


def _mode_bit(bit: int) -> Callable[[os.stat_result], bool]:
    return lambda info: bool(info.st_mode & bit)


def _file_type(check: Callable[[int], bool]) -> Callable[[os.stat_result], bool]:
    return lambda info: check(info.st_mode)


#: Unary operators: letter -> predicate on the operand.
_UNARY: dict[str, Callable[[str], bool]] = {
    "b": _file_test(_file_type(stat.S_ISBLK)),
    "c": _file_test(_file_type(stat.S_ISCHR)),
    "d": _file_test(_file_type(stat.S_ISDIR)),
    "e": _file_test(lambda info: True),
    "f": _file_test(_file_type(stat.S_ISREG)),
    "g": _file_test(_mode_bit(stat.S_ISGID)),
    "G": _file_test(lambda info: info.st_gid == os.getegid()),
    "h": _file_test(_file_type(stat.S_ISLNK), follow=False),
    "k": _file_test(_mode_bit(stat.S_ISVTX)),
    "L": _file_test(_file_type(stat.S_ISLNK), follow=False),
    "N": _file_test(lambda info: info.st_mtime_ns > info.st_atime_ns),
    "O": _file_test(lambda info: info.st_uid == os.geteuid()),
    "p": _file_test(_file_type(stat.S_ISFIFO)),
    "r": _access_test(os.R_OK),
    "s": _file_test(lambda info: info.st_size > 0),
    "S": _file_test(_file_type(stat.S_ISSOCK)),
    "t": _is_terminal,
    "u": _file_test(_mode_bit(stat.S_ISUID)),
    "w": _access_test(os.W_OK),
    "x": _access_test(os.X_OK),
    "n": lambda text: text != "",
    "z": lambda text: text == "",
}
