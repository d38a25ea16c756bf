"""What one request may cost once decoded, not only what it weighs on the wire.

``AMWORKER_MAX_PAYLOAD_BYTES`` bounds the bytes that arrive. It does not bound
what they decode to: a pickle's memo lets a 45-byte entry refer to a task of
any size again, and a payload of tiny values (``[[],[],…]``, ``{"a":0,…}``)
decodes to twenty or seventy times its size in Python objects. Two bounds
close that gap:

* before decoding, the payload's *structure* is counted (JSON values, pickle
  operations) and refused beyond :attr:`Limits.max_values`, so parsing itself
  runs in bounded time and memory (a :class:`~worker.errors.DecodeError`: the
  task UUIDs cannot be read within bounds);
* after decoding, :mod:`worker.batch.intake` holds the batch to the task count and
  argument sizes below (task UUIDs count as argument bytes too), every
  reference counted, and answers each task over a cap with ``payload
  refused`` (its UUID was read, so it gets an answer); a task UUID over
  :data:`MAX_TASK_UUID_CHARS` is refused alone, and so is a task whose
  ``createdDate`` is over :data:`MAX_CREATED_DATE_CHARS` (:mod:`worker.codec.wire`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from worker.errors import DecodeError

#: The most tasks one batch may hold. The controller sends 128 by default
#: (its batch size setting); a payload can declare millions of tiny tasks, and
#: each costs the shim memory and an answer, so more than this is refused.
DEFAULT_MAX_BATCH_TASKS = 4096
#: The longest ``arguments`` string of one task, in UTF-8 bytes, as received and
#: again once placeholders are substituted. Real ones are under 64 KB.
DEFAULT_MAX_ARGUMENT_BYTES = 1024 * 1024
#: The most argument bytes (task UUIDs included) one batch may decode to,
#: every task counted, even tasks that share one string through a pickle's
#: memo (which is how a 1 MB payload could otherwise become gigabytes of argv).
DEFAULT_MAX_BATCH_ARGUMENT_BYTES = 16 * 1024 * 1024

#: Values (JSON) or operations (pickle) one task may take. The controller's
#: tasks take about 13 JSON values and 35 pickle operations (a pickled
#: ``createdDate`` is a small program of its own); three times that leaves room
#: for unknown keys a newer controller may add.
VALUES_PER_TASK = 96
#: The envelope and whatever else a request holds besides its tasks.
VALUES_SLACK = 1024
#: The longest task UUID (the key of the ``tasks`` mapping) a task may run
#: with, in characters. A controller's is ``str(uuid4())``, 36; a longer key
#: is answered ``payload refused`` and is never dispatched: it reaches only the
#: answer and the answer's record (for a re-delivery).
MAX_TASK_UUID_CHARS = 256

#: The longest ``createdDate`` string parsed, in characters. A controller's
#: is ``datetime.isoformat()``, at most 32; a longer one fails its task
#: unparsed. Parsing scans the whole string, and a pickle can hand one
#: megabytes-long string to every task of a batch through its memo.
MAX_CREATED_DATE_CHARS = 64


@dataclass(frozen=True)
class Limits:
    """The decoded-size caps of one batch (see docs/operations.md)."""

    max_tasks: int = DEFAULT_MAX_BATCH_TASKS
    max_argument_bytes: int = DEFAULT_MAX_ARGUMENT_BYTES
    max_batch_argument_bytes: int = DEFAULT_MAX_BATCH_ARGUMENT_BYTES

    @property
    def max_values(self) -> int:
        """The most values or operations a request may decode (see :data:`VALUES_PER_TASK`).

        Derived from the task cap so that a batch of the largest allowed size
        always decodes, and so that one over it still decodes far enough for
        its tasks to be answered ``payload refused``, while a payload of
        millions of tiny values is refused before it is built.
        """
        return self.max_tasks * VALUES_PER_TASK + VALUES_SLACK


#: The structure bound when the caller names none: the default caps' (the
#: one default of :func:`worker.codec.wire.decode_request` and
#: :func:`worker.codec.safe_pickle.loads`).
DEFAULT_MAX_VALUES = Limits().max_values


def argument_bytes(text: str) -> int:
    """The UTF-8 size of an arguments string (lone surrogates count as 3 bytes)."""
    if text.isascii():  # the common case, and free: str knows it is ASCII
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


# Structural characters of JSON: each value a document holds is the root, or
# follows one of "[", "{", "," or ":" (a key and its value are both counted).
_JSON_VALUE_MARKS = (b"[", b"{", b",", b":")
# Searches used to count them outside strings. Each is one character class or
# possessive (never backtracking), so the count is linear in the payload.
_JSON_STRUCTURE = re.compile(rb'["\[{,:]')
_JSON_STRING_REST = re.compile(rb'(?:[^"\\]++|\\.)*+"', re.DOTALL)


def check_json_values(data: bytes, max_values: int) -> None:
    """Raise DecodeError if the JSON document ``data`` holds more than ``max_values`` values.

    Every value takes at least one byte, so a short payload needs no look.
    Next, counting the structural characters anywhere (C speed) is an upper
    bound. Only when that is over the limit are they counted again outside
    strings, by a loop that stops as soon as the limit is passed.
    """
    if len(data) <= max_values:
        return
    if 1 + sum(data.count(mark) for mark in _JSON_VALUE_MARKS) <= max_values:
        return
    values, pos = 1, 0
    while (found := _JSON_STRUCTURE.search(data, pos)) is not None:
        if found.group() == b'"':
            rest = _JSON_STRING_REST.match(data, found.end())
            if rest is None:
                return  # an unterminated string: the parser refuses it anyway
            pos = rest.end()
            continue
        values += 1
        if values > max_values:
            raise DecodeError(
                f"payload refused before parsing: more than {max_values} JSON values "
                "(the limit follows AMWORKER_MAX_BATCH_TASKS)"
            )
        pos = found.end()
