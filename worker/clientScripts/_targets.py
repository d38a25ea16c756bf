"""The ``SOURCE... DEST`` target rule of ``cp`` and ``mv``.

Which name each source ends up under, and which replacements the two
commands refuse. Like the rest of the package's helpers, nothing here starts
a process or touches a shell.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

from worker.clientScripts._common import CommandError, UsageError, quote, strerror


def last_component(path: str) -> str:
    """The final name of ``path``, ignoring trailing slashes (``a/b/`` -> ``b``)."""
    return os.path.basename(path.rstrip("/")) or path


def destinations(operands: Sequence[str]) -> list[tuple[str, str]]:
    """Pair each source with its target, by ``cp``'s and ``mv``'s rule.

    With an existing directory as last operand, each source goes inside it
    under its own name; otherwise there must be exactly one source and the
    last operand is its new name.
    """
    if not operands:
        raise UsageError("missing file operand")
    if len(operands) == 1:
        raise UsageError(f"missing destination file operand after {quote(operands[0])}")
    *sources, dest = operands
    if os.path.isdir(dest):
        return [(source, os.path.join(dest, last_component(source))) for source in sources]
    if len(sources) > 1:
        try:
            os.stat(dest)
            reason = os.strerror(errno.ENOTDIR)
        except OSError as exc:
            reason = strerror(exc)
        raise UsageError(f"target {quote(dest)}: {reason}", hint=False)
    return [(sources[0], dest)]


def check_replaceable(source: str, target: str, info: os.stat_result, existing: os.stat_result) -> None:
    """Refuse, as ``cp`` and ``mv`` do, to put ``source`` (``info``) over ``existing``.

    A file may not replace itself, and a directory and a non-directory may
    not replace each other.
    """
    if os.path.samestat(info, existing):
        raise CommandError(f"{quote(source)} and {quote(target)} are the same file")
    source_is_dir = stat.S_ISDIR(info.st_mode)
    target_is_dir = stat.S_ISDIR(existing.st_mode)
    if source_is_dir and not target_is_dir:
        raise CommandError(f"cannot overwrite non-directory {quote(target)} with directory {quote(source)}")
    if target_is_dir and not source_is_dir:
        raise CommandError(f"cannot overwrite directory {quote(target)} with non-directory")
