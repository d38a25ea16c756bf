"""A restricted unpickler for the controller's protocol-0 payloads.

Archivematica 1.16 and older send ``pickle.dumps(data, protocol=0)`` of plain
data. A pickle is a small program that can import and call anything, so the
stock :func:`pickle.loads` must never see a payload from the network. This
module loads pickles with an allow-list of globals that can build dates and
times and nothing else, then checks that the result is plain data.

Three lines of defence:

0. :func:`_check_program` reads the pickle's operations once, without
   building anything, and refuses a pickle of more than ``max_ops`` of them
   or one that stores into its memo at an index it has not reached. The C
   unpickler grows its memo to twice any index it is given: ``p100000000``
   alone took 1.5 GB and 5 seconds. The operation count bounds the objects a
   load builds; what bounds their *size* is that no operation copies: a
   string or number is decoded from its own bytes of the payload (so all of
   them together are about the payload's size), a memo fetch, ``DUP`` or a
   container operation adds a reference, and each allowed callable (below)
   returns an object of a few dozen bytes whatever its arguments, because
   ``_codecs.encode`` takes no more text than a date or time state needs.
   Without that cap, ``encode`` of a 1 MB string kept once in the memo made
   a new 1 MB copy for every 16 bytes of pickle: 1,000 copies, 1 GB, from a
   1 MB payload.

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
import functools
import io
import pickle
import pickletools
import re
from collections.abc import Callable

from worker.codec.limits import DEFAULT_MAX_VALUES
from worker.errors import DecodeError

#: Encodings ``_codecs.encode`` may be called with. Protocol 0 cannot write
#: bytes, so it writes a datetime's byte state as ``_codecs.encode(str,
#: "latin1")``; every other codec is refused because some codecs (``rot13``,
#: ``hex``, ``zlib``…) do work we have no reason to allow.
_LATIN1_NAMES = frozenset({"latin1", "latin-1"})


#: The longest byte state of a date or time: a datetime's is 10 bytes (a date's
#: 4, a time's 6), a tzinfo travelling beside it, never inside. Protocol 0
#: writes each byte as one character, so longer text is not a state.
MAX_STATE_CHARS = 10


def _latin1_encode(text: object, encoding: object) -> bytes:
    """Stand-in for ``_codecs.encode`` that only turns a date or time state into bytes.

    Any longer text is refused: the only reason a controller's pickle calls
    ``encode`` is a datetime's state, and a longer call would let one string
    in the memo be copied again and again (see the module's docstring).
    """
    if not isinstance(text, str) or not isinstance(encoding, str):
        raise DecodeError("refused _codecs.encode call: arguments must be two strings")
    if encoding.lower() not in _LATIN1_NAMES:
        raise DecodeError(f"refused _codecs.encode with the codec {encoding[:40]!r}")
    if len(text) > MAX_STATE_CHARS:
        raise DecodeError(f"refused _codecs.encode of {len(text)} characters: a date or time "
                          f"state has at most {MAX_STATE_CHARS}")
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


#: Operations that store into the memo at an index written in the pickle. A
#: pickler numbers its memo entries in order from 0, so a real pickle's index
#: is always below the count of operations read so far.
_INDEXED_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})

#: How much of an error's message a DecodeError repeats.
_MESSAGE_LIMIT = 200



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


def loads(data: bytes, *, max_ops: int = DEFAULT_MAX_VALUES) -> object:
    """Unpickle ``data`` if it holds only plain data, else raise DecodeError.

    Plain data is dicts, lists, tuples, str, bytes, bool, int, float, None and
    ``datetime``/``date``/``time`` objects (aware datetimes included). A pickle
    of more than ``max_ops`` operations is refused before anything is built.
    """
    try:
        _check_program(data, max_ops)
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the payload boundary, see below
        # The C unpickler raises a wide and undocumented set of exceptions on
        # hostile input (UnpicklingError, EOFError, ValueError, TypeError,
        # AttributeError, OverflowError, MemoryError, RecursionError,
        # UnicodeDecodeError…). Each one means "this payload cannot be read";
        # the original is chained for the log. The message is cut short:
        # pickletools quotes the offending bytes, which may be megabytes.
        detail = str(exc)[:_MESSAGE_LIMIT]
        raise DecodeError(f"cannot unpickle payload: {type(exc).__name__}: {detail}") from exc
    _check_plain(obj)
    return obj


# Protocol 0, the controller's, as text: each operation is one byte, or one
# byte and a line (strings escape their newlines), or one byte and two lines
# (GLOBAL, INST). Tokenising it takes no backtracking, so a regular
# expression reads the whole program at C speed. _PUT_OR_OP yields a PUT's
# index, and b"" for any other operation.
_NO_ARGUMENT = rb"[(012NRabdelostu)\]}]"
_ONE_LINE = rb"[FILPSVg][^\n]*+\n"
_TWO_LINES = rb"[ci][^\n]*+\n[^\n]*+\n"
_TEXT_PROGRAM = re.compile(rb"(?:%s|%s|p[^\n]*+\n|%s)*+\." % (_NO_ARGUMENT, _ONE_LINE, _TWO_LINES))
_PUT_OR_OP = re.compile(rb"%s|%s|p([^\n]*+)\n|%s|\." % (_NO_ARGUMENT, _ONE_LINE, _TWO_LINES))


def _check_program(data: bytes, max_ops: int) -> None:
    """Raise DecodeError if the pickle is too long a program or aims its memo too far.

    A pickle never has more operations than bytes, so a short one cannot be
    too long; if it is plain protocol-0 text, its PUT indexes are read with
    regular expressions. Anything else is read by ``pickletools.genops``,
    which decodes each operation's argument and builds nothing, stopping at
    the first STOP as the unpickler does (and here at ``max_ops``).
    """
    if len(data) <= max_ops and (program := _TEXT_PROGRAM.match(data)) is not None:
        if _far_puts(len(str(max_ops))).search(data, 0, program.end()) is None:
            return  # nothing that could be a PUT that far, even inside a string
        # Perhaps only text in a string that looks like one: tokenise to be sure.
        operations = _PUT_OR_OP.findall(data, 0, program.end())
        indexes = [int(index) for index in operations if index]
        if indexes and max(indexes) >= len(operations):
            raise DecodeError(f"refused a pickle memo index of {max(indexes)} in a pickle of "
                              f"{len(operations)} operations")
        return
    _check_operations(data, max_ops)


@functools.cache
def _far_puts(digits: int) -> re.Pattern[bytes]:
    """Finds every PUT whose index may have ``digits`` digits, and some text besides.

    The unpickler reads a PUT's index as ``int()`` does: leading blanks, a
    sign and underscores are accepted (``p 100000000``, ``p0_100000000``),
    so a "p" before any of those counts, and so does a run of ``digits``
    digits and underscores. An index written in fewer characters is below
    ``10 ** (digits - 1)``.
    """
    return re.compile(rb"p(?:[ \t\r\x0b\x0c+\-]|[0-9_]{%d})" % digits)


def _check_operations(data: bytes, max_ops: int) -> None:
    """:func:`_check_program` for any pickle, one operation at a time."""
    for count, (opcode, argument, _position) in enumerate(pickletools.genops(data), 1):
        if count > max_ops:
            raise DecodeError(
                f"payload refused before unpickling: more than {max_ops} pickle operations "
                "(the limit follows AMWORKER_MAX_BATCH_TASKS)"
            )
        if opcode.name in _INDEXED_PUTS and isinstance(argument, int) and argument >= count:
            raise DecodeError(f"refused a pickle memo index of {argument} at operation {count}")


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
