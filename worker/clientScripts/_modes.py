"""chmod-style modes for the bundled client scripts (``chmod``, ``mkdir -m``).

Compiles an octal (``770``) or symbolic (``u=rwx,g+s,o-w``, ``a+X``,
``g=u``) mode once into :class:`ModeClause` steps, and applies them to a
file's current mode as GNU coreutils 9.1 does, umask and a directory's
set-id bits included (see :mod:`._common` for how closely the scripts follow
coreutils). Pure, except :func:`current_umask`, which reads the process's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

#: Mode bits each "who" letter selects (a=all, including the special bits).
_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o1007, "a": 0o7777}
#: Mode bits each permission letter stands for, before "who" narrows them.
_PERMS = {"r": 0o444, "w": 0o222, "x": 0o111, "s": 0o6000, "t": 0o1000}
#: ``g=u`` style copies: the bits read from the file's current mode.
_COPY_FROM = {"u": 0o700, "g": 0o070, "o": 0o007}
_OCTAL = frozenset("01234567")
_ALL_BITS = 0o7777
_SET_ID_BITS = 0o6000


@dataclass(frozen=True)
class ModeClause:
    """One ``[ugoa]*[-+=]perms`` step of a compiled chmod-style mode."""

    op: str
    #: Bits the "who" part selects; 0 when it was left out (then the umask applies).
    affected: int
    value: int
    #: Bits the mode names explicitly (a directory keeps set-id bits it doesn't name).
    mentioned: int
    #: ``u``/``g``/``o`` after the operator: copy those bits of the current mode.
    copy: bool = False
    #: ``X``: execute only for directories or files already executable by someone.
    if_any_x: bool = False


def compile_mode(text: str) -> tuple[ModeClause, ...] | None:
    """Compile an octal (``770``) or symbolic (``u=rwx,g+s``) mode; ``None`` if invalid."""
    if text and text[0] in _OCTAL:
        if not _OCTAL.issuperset(text) or int(text, 8) > _ALL_BITS:
            return None
        value = int(text, 8)
        # Up to four digits leave a directory's set-id bits alone unless set.
        mentioned = (value & _SET_ID_BITS) | 0o1777 if len(text) < 5 else _ALL_BITS
        return (ModeClause("=", _ALL_BITS, value, mentioned),)
    clauses: list[ModeClause] = []
    for part in text.split(","):
        compiled = _compile_symbolic(part)
        if compiled is None:
            return None
        clauses.extend(compiled)
    return tuple(clauses)


def _compile_symbolic(part: str) -> list[ModeClause] | None:
    index = 0
    affected = 0
    while index < len(part) and part[index] in _WHO:
        affected |= _WHO[part[index]]
        index += 1
    if index == len(part):
        return None  # a mode needs at least one operator
    clauses: list[ModeClause] = []
    while index < len(part):
        if part[index] not in "=+-":
            return None
        step = _compile_step(part, index + 1, part[index], affected)
        if step is None:
            return None
        clause, index = step
        clauses.append(clause)
    return clauses


def _compile_step(part: str, start: int, op: str, affected: int) -> tuple[ModeClause, int] | None:
    rest = part[start:]
    if rest[:1] in _OCTAL and rest:
        if affected or not _OCTAL.issuperset(rest) or int(rest, 8) > _ALL_BITS:
            return None
        return ModeClause(op, _ALL_BITS, int(rest, 8), _ALL_BITS), len(part)
    if rest[:1] in _COPY_FROM and rest:
        value = _COPY_FROM[rest[0]]
        return ModeClause(op, affected, value, _mentioned(affected, value), copy=True), start + 1
    end = start
    while end < len(part) and part[end] in "rwxXst":
        end += 1
    letters = part[start:end]
    value = sum(_PERMS[letter] for letter in set(letters) - {"X"})
    clause = ModeClause(op, affected, value, _mentioned(affected, value), if_any_x="X" in letters)
    return clause, end


def _mentioned(affected: int, value: int) -> int:
    return affected & value if affected else value


def adjust_mode(old: int, is_dir: bool, umask: int, clauses: Sequence[ModeClause]) -> tuple[int, int]:
    """Apply ``clauses`` to mode ``old`` as chmod does.

    Returns the new mode and the mask of bits the clauses decided (bits
    outside it are "don't care", which ``mkdir -m`` relies on).
    """
    mode = old & _ALL_BITS
    decided = 0
    for clause in clauses:
        omit = (_SET_ID_BITS if is_dir else 0) & ~clause.mentioned
        value = clause.value
        if clause.copy:
            value = _spread(value & mode)
        elif clause.if_any_x and (mode & 0o111 or is_dir):
            value |= 0o111
        value &= (clause.affected or ~umask) & ~omit
        if clause.op == "=":
            preserved = (~clause.affected if clause.affected else 0) | omit
            decided |= _ALL_BITS & ~preserved
            mode = (mode & preserved) | value
        else:
            decided |= value
            mode = mode | value if clause.op == "+" else mode & ~value
    return mode & _ALL_BITS, decided & _ALL_BITS


def _spread(bits: int) -> int:
    """Copy each of r, w, x that is set for anyone to all three classes."""
    for mask in (0o444, 0o222, 0o111):
        if bits & mask:
            bits |= mask
    return bits


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # Fallback: set and restore. Racy against threads, which is why it is last.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask

