"""Reading the records one side writes and the other reads back, with one error.

Every record that crosses between the shim and the pool (the plan in Redis,
the slice message, the slice's envelope and its stored results) is a frozen
dataclass with ``to_json``/``from_json``. What comes back may be anything:
another release's shape, a value an operator typed into ``redis-cli``, a
truncated write. Each ``from_json`` therefore checks every field it reads and
raises :class:`RecordError` (never a ``KeyError`` or ``TypeError`` from deep
inside), with a message that names the record and the field and is bounded
however large the value was.

Unknown fields are ignored: a record written by a newer release, read during
a rolling upgrade, must still be read for what this release knows of it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TypeVar

from worker.errors import DecodeError

#: Longest excerpt of an offending value an error message shows.
SHOWN_CHARS = 80

T = TypeVar("T")
D = TypeVar("D")


class RecordError(DecodeError):
    """A record read back from Redis or from a message is malformed (permanent)."""


def show(value: object) -> str:
    """``repr(value)``, cut to :data:`SHOWN_CHARS` so no message grows with the value.

    Text and bytes are cut before ``repr``: a stored value can be hundreds
    of megabytes, and its whole ``repr`` (up to four characters a byte)
    would be made only to be thrown away.
    """
    if isinstance(value, str | bytes | bytearray):
        value = value[:SHOWN_CHARS + 1]
    elif isinstance(value, memoryview):
        value = bytes(value[:SHOWN_CHARS + 1])
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def loads(raw: bytes | str, what: str) -> object:
    """Parse stored JSON; :class:`RecordError` if it is not JSON at all."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        # ValueError covers UnicodeDecodeError and JSONDecodeError.
        raise RecordError(f"{what}: not JSON ({type(exc).__name__}): {show(raw)}") from None


def mapping(data: object, what: str) -> Mapping[str, object]:
    """``data`` as a JSON object; :class:`RecordError` for anything else."""
    if not isinstance(data, Mapping):
        raise RecordError(f"{what}: expected an object, got {type(data).__name__}: {show(data)}")
    return data


def field(data: Mapping[str, object], name: str, kind: type[T], what: str) -> T:
    """The required field ``name`` of type ``kind`` (a bool is never an int here)."""
    if name not in data:
        raise RecordError(f"{what}: missing field {name!r}")
    return check(data[name], name, kind, what)


def optional(data: Mapping[str, object], name: str, kind: type[T], what: str, default: D) -> T | D:
    """The field ``name`` of type ``kind``, or ``default`` when it is absent (or null)."""
    value = data.get(name)
    return default if value is None else check(value, name, kind, what)


def check(value: object, name: str, kind: type[T], what: str) -> T:
    """``value`` if it is a ``kind``; :class:`RecordError` naming ``name`` otherwise."""
    if isinstance(value, bool) and kind is not bool:
        # bool is an int subclass; True as a count or a time is a bug somewhere.
        raise RecordError(f"{what}: field {name!r} must be {kind.__name__}, got bool")
    if not isinstance(value, kind):
        raise RecordError(f"{what}: field {name!r} must be {kind.__name__}, "
                          f"got {type(value).__name__}: {show(value)}")
    return value


def seconds(data: Mapping[str, object], name: str, what: str) -> float:
    """A required, finite wall-clock time in seconds (int or float)."""
    value = optional_seconds(data, name, what)
    if value is None:
        raise RecordError(f"{what}: missing field {name!r}")
    return value


def optional_seconds(data: Mapping[str, object], name: str, what: str) -> float | None:
    """A finite wall-clock time in seconds, or ``None`` when it is absent (or null)."""
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{what}: field {name!r} must be a number, got "
                          f"{type(value).__name__}: {show(value)}")
    # json.loads accepts NaN and Infinity; no moment is either.
    if not math.isfinite(value):
        raise RecordError(f"{what}: field {name!r} must be finite, got {show(value)}")
    return float(value)


def count(data: Mapping[str, object], name: str, what: str, *, minimum: int = 0) -> int:
    """A required integer of at least ``minimum``."""
    value = field(data, name, int, what)
    if value < minimum:
        raise RecordError(f"{what}: field {name!r} must be at least {minimum}, got {show(value)}")
    return value
