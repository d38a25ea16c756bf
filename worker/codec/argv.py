"""Turning one task's ``arguments`` string into the argv its script sees.

The controller has already replaced its own placeholders (``%SIPUUID%``,
``%SIPDirectory%``…); a few are left for the worker, because only the worker
knows its paths and the time it ran the task. The steps, from the contract:

1. substitute the worker's placeholders in the string;
2. split it with POSIX shell rules and unescape backticks.

Substitution comes first, so a path with spaces stays one word when the
template quotes it (``"%sharedPath%foo"``). A value is not re-quoted, so a
path containing a double quote would break the split; Archivematica's own
worker behaves the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from worker.errors import ArgvError


@dataclass(frozen=True)
class Paths:
    """The worker's directories, as configured (a trailing slash is kept).

    Templates write ``"%sharedPath%watchedDirectories/…"``, so the configured
    value must end in ``/`` for those paths to come out right; that is the
    operator's setting to get right, not ours to fix.
    """

    shared_directory: str
    client_assets_directory: str
    client_scripts_directory: str = ""
    watch_directory: str = ""  # %watchDirectory%, older releases only
    rejected_directory: str = ""  # %rejectedDirectory%, older releases only


# Every placeholder the worker replaces, in one alternation compiled once.
# The closing "%" is part of the match, so "%watchDirectoryPath%" (a
# controller-side variable) is not mistaken for "%watchDirectory%", and any
# other %foo% is left exactly as it is.
_PLACEHOLDER = re.compile(
    r"%(sharedPath|clientAssetsDirectory|clientScriptsDirectory|watchDirectory"
    r"|rejectedDirectory|date|taskUUID|jobCreatedDate)%"
)

# Position of the date/time separator in an ISO 8601 timestamp.
_ISO_SEPARATOR_INDEX = 10


def substitute(
    arguments: str, *, task_uuid: str, created_date: str, paths: Paths, now: datetime
) -> str:
    """Replace the worker's placeholders in ``arguments``.

    ``%date%`` becomes ``now.isoformat()``; ``now`` is a parameter so callers
    and tests control the clock. ``%jobCreatedDate%`` becomes ``created_date``
    with a space separator. Unknown ``%foo%`` tokens are left as they are.
    Replacement is a single pass, so a value that itself contains a
    placeholder (a directory named ``%date%``) is not expanded again.
    """
    if "%" not in arguments:  # the common case for many templates: no work
        return arguments

    values: dict[str, str] = {}

    def value(match: re.Match[str]) -> str:
        # Each value is computed when first named, then looked up: a batch
        # substitutes thousands of strings, most naming one or two
        # placeholders, and a string repeating one costs a lookup per repeat.
        name = match.group(1)
        found = values.get(name)
        if found is None:
            found = values[name] = _value(name, task_uuid, created_date, paths, now)
        return found

    return _PLACEHOLDER.sub(value, arguments)


#: The configured directory each path placeholder stands for (a Paths field).
_PATH_FIELDS = {
    "sharedPath": "shared_directory",
    "clientAssetsDirectory": "client_assets_directory",
    "clientScriptsDirectory": "client_scripts_directory",
    "watchDirectory": "watch_directory",
    "rejectedDirectory": "rejected_directory",
}


def _value(name: str, task_uuid: str, created_date: str, paths: Paths, now: datetime) -> str:
    """What the placeholder ``%name%`` stands for."""
    if name == "taskUUID":
        return task_uuid
    if name == "date":
        return now.isoformat()
    if name == "jobCreatedDate":
        return _space_separated(created_date)
    return str(getattr(paths, _PATH_FIELDS[name]))


def split_arguments(arguments: str) -> list[str]:
    """Split ``arguments`` with POSIX shell rules, then turn ``\\``` into `````.

    The result and the errors are those of ``shlex.split(arguments,
    posix=True)``; shlex keeps a backslash before a backtick inside double
    quotes, where bash would drop it, and templates escape backticks for bash.
    Raises ArgvError when the string cannot be split (an unbalanced quote, a
    trailing backslash). Linear time for every input (see :func:`_scan`).
    """
    if not isinstance(arguments, str):
        # shlex.split(None) would read standard input: refuse loudly instead.
        raise ArgvError(f"arguments must be a string, not {type(arguments).__name__}")
    try:
        words = _scan(arguments)
    except _Unsplittable as exc:
        raise ArgvError(f"cannot split arguments: {exc}") from None
    if "`" not in arguments:
        return words
    return [word.replace("\\`", "`") for word in words]


# The scanner's searches. Each is one character class (or one character), so
# a search examines the characters from where it starts to where it stops,
# once, and never backtracks: the scan as a whole looks at each character of
# the string a bounded number of times. A test replaces these with counting
# wrappers to check exactly that.
_BLANKS = re.compile(r"[ \t\r\n]+")  #: POSIX shlex's whitespace, nothing more
_UNQUOTED_STOP = re.compile(r"[ \t\r\n'\"\\]")  #: ends a run of plain text
_SINGLE_QUOTE = re.compile(r"'")  #: ends a single-quoted run (no escapes in it)
_DOUBLE_QUOTED_STOP = re.compile(r'["\\]')  #: ends a run inside double quotes

#: Inside double quotes a backslash escapes only these; before anything else
#: it stays (shlex's ``escapedquotes`` rule).
_ESCAPABLE_IN_DOUBLE_QUOTES = '"\\'


class _Unsplittable(Exception):
    """The string ends inside a quote or right after a backslash (shlex's wording)."""


def _scan(text: str) -> list[str]:
    """Split ``text`` exactly as ``shlex.split(text, posix=True)`` does, in one pass.

    A hand-written scanner instead of a regular expression: any pattern that
    takes a whole word apart has nested repetition, and Python's ``re``
    backtracks on it exponentially when a quote is unbalanced (one stray
    apostrophe froze the shim). Here every step moves forward: plain text,
    quoted runs and blanks are each found with a single-class search from the
    current position, so the work is linear in ``len(text)``.
    """
    words: list[str] = []
    parts: list[str] = []  # pieces of the word being read
    in_word = False  # a word has started (it may still be empty: '')
    pos, end = 0, len(text)
    while pos < end:
        char = text[pos]
        if char in " \t\r\n":
            if in_word:
                words.append("".join(parts))
                parts, in_word = [], False
            blanks = _BLANKS.match(text, pos)
            assert blanks is not None  # text[pos] is a blank: the pattern matches it
            pos = blanks.end()
            continue
        in_word = True
        if char == "'":
            close = _SINGLE_QUOTE.search(text, pos + 1)
            if close is None:
                raise _Unsplittable("No closing quotation")
            parts.append(text[pos + 1 : close.start()])
            pos = close.end()
        elif char == '"':
            pos = _double_quoted(text, pos + 1, parts)
        elif char == "\\":
            if pos + 1 == end:
                raise _Unsplittable("No escaped character")
            parts.append(text[pos + 1])  # outside quotes a backslash escapes anything
            pos += 2
        else:
            stop = _UNQUOTED_STOP.search(text, pos)
            stop_at = stop.start() if stop else end
            parts.append(text[pos:stop_at])
            pos = stop_at
    if in_word:
        words.append("".join(parts))
    return words


def _double_quoted(text: str, pos: int, parts: list[str]) -> int:
    """Read a double-quoted run starting after its quote; return the position after it."""
    end = len(text)
    while True:
        stop = _DOUBLE_QUOTED_STOP.search(text, pos)
        if stop is None:
            raise _Unsplittable("No closing quotation")
        at = stop.start()
        parts.append(text[pos:at])
        if text[at] == '"':
            return at + 1
        if at + 1 == end:
            raise _Unsplittable("No escaped character")
        escaped = text[at + 1]
        parts.append(escaped if escaped in _ESCAPABLE_IN_DOUBLE_QUOTES else "\\" + escaped)
        pos = at + 2


def prepare_argv(
    arguments: str, *, task_uuid: str, created_date: str, paths: Paths, now: datetime
) -> list[str]:
    """Substitute, then split: the argv the script gets after its function name.

    The caller builds ``job.args = [function_name] + prepare_argv(...)``.
    Raises ArgvError when the substituted string cannot be split.
    """
    substituted = substitute(
        arguments, task_uuid=task_uuid, created_date=created_date, paths=paths, now=now
    )
    return split_arguments(substituted)


def _space_separated(created_date: str) -> str:
    """Return an ISO 8601 timestamp with " " instead of "T" between date and time.

    :func:`worker.codec.wire.decode_request` already does this; doing it again here
    keeps this module correct for any caller.
    """
    if len(created_date) > _ISO_SEPARATOR_INDEX and created_date[_ISO_SEPARATOR_INDEX] == "T":
        return f"{created_date[:_ISO_SEPARATOR_INDEX]} {created_date[_ISO_SEPARATOR_INDEX + 1 :]}"
    return created_date
