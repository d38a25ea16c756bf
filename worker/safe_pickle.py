"""A restricted unpickler for the controller's protocol-0 payloads.

Archivematica 1.16 and older send ``pickle.dumps(data, protocol=0)`` of plain
data. A pickle is a small program that can import and call anything, so the
stock :func:`pickle.loads` must never see a payload from the network. This
module loads pickles with an allow-list of globals that can build dates and
times and nothing else, then checks that the result is plain data.

Two lines of defence:

1. :meth:`_RestrictedUnpickler.find_class` is the only way a pickle can reach
   a Python callable (``GLOBAL``, ``STACK_GLOBAL``, ``INST`` and the ``EXT*``
   opcodes all go through it). Anything off the allow-list raises before it is
   looked up, let alone called, so ``REDUCE``/``OBJ``/``INST``/``NEWOBJ`` can
   only ever call the date and time constructors.
2. :func:`_check_plain` walks the loaded object and refuses any type that is
   not plain data (a stray ``timedelta`` or ``timezone`` included).
"""

from __future__ import annotations

import _codecs
import datetime
import io
import pickle
from collections.abc import Callable

from worker.errors import DecodeError

#: Encodings ``_codecs.encode`` may be called with. Protocol 0 cannot write
#: bytes, so it writes a datetime's byte state as ``_codecs.encode(str,
#: "latin1")``; every other codec is refused because some codecs (``rot13``,
#: ``hex``, ``zlib``…) do work we have no reason to allow.
_LATIN1_NAMES = frozenset({"latin1", "latin-1"})


def _latin1_encode(text: object, encoding: object) -> bytes:
    """Stand-in for ``_codecs.encode`` that only turns a str into latin-1 bytes."""
    if not isinstance(text, str) or not isinstance(encoding, str):
        raise DecodeError("refused _codecs.encode call: arguments must be two strings")
    if encoding.lower() not in _LATIN1_NAMES:
        raise DecodeError(f"refused _codecs.encode with the codec {encoding[:40]!r}")
    result: bytes = _codecs.encode(text, "latin1")
    return result


#: The only globals a payload may name, keyed by (module, name) exactly as they
#: appear in the pickle. Dotted names and other spellings are refused, so no
#: attribute of these classes (``datetime.datetime.fromtimestamp``…) is reachable.
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., object]] = {
    ("datetime", "datetime"): datetime.datetime,
    ("datetime", "date"): datetime.date,
    ("datetime", "time"): datetime.time,
    ("datetime", "timezone"): datetime.timezone,
    ("datetime", "timedelta"): datetime.timedelta,
    ("_codecs", "encode"): _latin1_encode,
}

#: Types the loaded object may consist of. Lists and tuples are allowed: they
#: are plain, inert containers (a tuple is what a Python 2 or hand-written
#: pickle may hold), and the decoder refuses them wherever it needs a mapping
#: or a string anyway. ``timedelta``/``timezone`` are deliberately absent: they
#: may only appear inside a datetime, which the walk does not enter.
_PLAIN_SCALARS: frozenset[type] = frozenset(
    {str, bytes, bool, int, float, type(None), datetime.datetime, datetime.date, datetime.time}
)
_CONTAINERS: frozenset[type] = frozenset({dict, list, tuple})


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`_ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Callable[..., object]:
        """Return an allowed global, or raise before anything is imported."""
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            # Truncated so a hostile payload cannot make the message huge.
            raise DecodeError(f"refused pickle global {module[:80]}.{name[:80]}")
        return allowed

    def persistent_load(self, pid: object) -> object:
        """Refuse persistent ids: the controller never sends them."""
        raise DecodeError("refused pickle persistent id")


def loads(data: bytes) -> object:
    """Unpickle ``data`` if it holds only plain data, else raise DecodeError.

    Plain data is dicts, lists, tuples, str, bytes, bool, int, float, None and
    ``datetime``/``date``/``time`` objects (aware datetimes included).
    """
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the payload boundary, see below
        # The C unpickler raises a wide and undocumented set of exceptions on
        # hostile input (UnpicklingError, EOFError, ValueError, TypeError,
        # AttributeError, OverflowError, MemoryError, RecursionError,
        # UnicodeDecodeError…). Each one means "this payload cannot be read";
        # the original is chained for the log.
        raise DecodeError(f"cannot unpickle payload: {type(exc).__name__}: {exc}") from exc
    _check_plain(obj)
    return obj


def _check_plain(root: object) -> None:
    """Raise DecodeError unless ``root`` is made of plain data only.

    Iterative, and each container is visited once, because a pickle's memo can
    build self-referencing or very deeply nested structures cheaply.
    """
    seen: set[int] = set()
    pending: list[object] = [root]
    while pending:
        obj = pending.pop()
        kind = type(obj)  # exact types: the unpickler cannot build subclasses
        if kind in _PLAIN_SCALARS:
            continue
        if kind not in _CONTAINERS:
            raise DecodeError(f"refused a {kind.__name__} object in the pickle")
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            pending.extend(obj.keys())
            pending.extend(obj.values())
        elif isinstance(obj, list | tuple):
            pending.extend(obj)
