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
import shlex
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
    values = {
        "sharedPath": paths.shared_directory,
        "clientAssetsDirectory": paths.client_assets_directory,
        "clientScriptsDirectory": paths.client_scripts_directory,
        "watchDirectory": paths.watch_directory,
        "rejectedDirectory": paths.rejected_directory,
        "date": now.isoformat(),
        "taskUUID": task_uuid,
        "jobCreatedDate": _space_separated(created_date),
    }
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], arguments)


def split_arguments(arguments: str) -> list[str]:
    """Split ``arguments`` with POSIX shell rules, then turn ``\\``` into `````.

    shlex keeps a backslash before a backtick inside double quotes, where bash
    would drop it; templates escape backticks for bash. Raises ArgvError when
    the string cannot be split (an unbalanced quote, a trailing backslash).
    """
    if not isinstance(arguments, str):
        # shlex.split(None) would read standard input: refuse loudly instead.
        raise ArgvError(f"arguments must be a string, not {type(arguments).__name__}")
    words = _fast_split(arguments)
    if words is not None:
        return words
    try:
        words = shlex.split(arguments, posix=True)
    except ValueError as exc:
        raise ArgvError(f"cannot split arguments: {exc}") from exc
    return [word.replace("\\`", "`") for word in words]


#: One word of a string with no backslash: unquoted runs, '…' and "…" glued.
_WORD = r"""(?:[^ \t\r\n'"]+|'[^']*'|"[^"]*")+"""
_WORDS = re.compile(rf"[ \t\r\n]*(?:{_WORD}[ \t\r\n]*)*")
_WORD_RE = re.compile(_WORD)
_PIECE = re.compile(r"([^ \t\r\n'\"]+)|'([^']*)'|\"([^\"]*)\"")


def _fast_split(arguments: str) -> list[str] | None:
    """POSIX splitting for the common case, ten times faster than shlex.

    Without a backslash, a shell word is only unquoted text and quoted
    strings glued together, which two regular expressions take apart. Any
    string this does not cover exactly (a backslash, an unbalanced quote)
    returns None and goes through shlex, the reference; a property test
    checks the two agree.
    """
    if "\\" in arguments or _WORDS.fullmatch(arguments) is None:
        return None
    return [
        "".join(a or b or c for a, b, c in _PIECE.findall(word))
        for word in _WORD_RE.findall(arguments)
    ]


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

    :func:`worker.wire.decode_request` already does this; doing it again here
    keeps this module correct for any caller.
    """
    if len(created_date) > _ISO_SEPARATOR_INDEX and created_date[_ISO_SEPARATOR_INDEX] == "T":
        return f"{created_date[:_ISO_SEPARATOR_INDEX]} {created_date[_ISO_SEPARATOR_INDEX + 1 :]}"
    return created_date
