"""The wire codec: the controller's request bytes in, our result bytes out.

Pure functions over the frozen records of :mod:`worker.codec.records`; no
sockets, Celery or Django. The format is fixed by the controller
(docs/design.md, "The controller contract"): a request is
``{"tasks": {uuid: {...}}}`` as UTF-8 JSON (Archivematica >= 1.17) or as a
protocol-0 pickle (<= 1.16), and the result goes back in the same encoding.

Failures are kept in two tiers, because the controller fails a whole batch
when the worker fails the Gearman job:

* the payload as a whole cannot be read -> :class:`~worker.errors.DecodeError`
  (permanent; nothing can be answered per task);
* one task cannot be run -> its :attr:`TaskSpec.problem` is set and the rest
  of the batch goes ahead, so that task alone is answered with exit code 1.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from worker.codec import safe_pickle
from worker.codec.limits import (
    DEFAULT_MAX_VALUES,
    MAX_CREATED_DATE_CHARS,
    MAX_TASK_UUID_CHARS,
    check_json_values,
)
from worker.codec.records import Batch, Encoding, TaskResult, TaskSpec, Timestamps, sanitize_text
from worker.errors import DecodeError

# Key names of the wire format, in one place. The spellings (camelCase, the
# snake_case "wants_output", the misspelt "stderror") are the controller's.
TASKS_KEY = "tasks"  #: request envelope: the mapping of task UUID to task
UUID_KEY = "uuid"  #: inside a task; ignored in favour of the mapping key
CREATED_DATE_KEY = "createdDate"  #: inside a task: when the controller made it
ARGUMENTS_KEY = "arguments"  #: inside a task: the shell-quoted arguments string
WANTS_OUTPUT_KEY = "wants_output"  #: inside a task: send stdout/stderr back?
RESULTS_KEY = "task_results"  #: result envelope: mapping of task UUID to result
EXIT_CODE_KEY = "exitCode"
FINISHED_KEY = "finishedTimestamp"
STDOUT_KEY = "stdout"
STDERROR_KEY = "stderror"  #: what every worker release sends (sic)
STDERR_KEY = "stderr"  #: what the 1.17 controller reads; we send both

#: Default ceiling on a request payload, in bytes. A batch of 128 tasks is a
#: few hundred kilobytes at most; 64 MiB leaves room for very long argument
#: strings while keeping a hostile or corrupt payload from exhausting memory.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

#: Default for a task that has no ``wants_output`` key (the contract's rule).
DEFAULT_WANTS_OUTPUT = True

# ASCII whitespace a JSON sender may put before the opening brace. Compiled
# once: detection runs on every payload.
_LEADING_WHITESPACE = re.compile(rb"[ \t\r\n]*")

# First bytes of a pickle: "(" (MARK, protocol 0: "(dp0"), "}" (EMPTY_DICT,
# protocol 1) and "\x80" (PROTO, protocol 2 and later).
_PICKLE_FIRST_BYTES = frozenset(b"(}\x80")

# How much of a hostile value an error message may quote.
_QUOTE_LIMIT = 64


def detect_encoding(data: bytes) -> Encoding:
    """Tell a JSON request from a pickled one by its first bytes.

    JSON is an object, so its first byte after ASCII whitespace is ``{``. A
    pickle starts with ``(`` (protocol 0 writes ``(dp0``), ``}`` or ``\\x80``.
    Raises DecodeError for anything else.
    """
    match = _LEADING_WHITESPACE.match(data)
    start = match.end() if match else 0
    if data[start : start + 1] == b"{":
        return Encoding.JSON
    if data and data[0] in _PICKLE_FIRST_BYTES:
        return Encoding.PICKLE
    if start == len(data):
        raise DecodeError("empty payload: expected a JSON object or a pickle")
    raise DecodeError(
        f"unrecognised payload: expected a JSON object or a pickle, "
        f"got bytes starting {data[start : start + 16]!r}"
    )


def decode_request(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_values: int = DEFAULT_MAX_VALUES
) -> Batch:
    """Decode a request payload into a :class:`Batch`.

    Raises DecodeError, and nothing else, when the payload cannot be read as a
    whole, including one of more than ``max_values`` JSON values or pickle
    operations (see :mod:`worker.codec.limits`). A task that can be read but not run
    is returned with its ``problem`` set. Unknown keys are ignored; task order
    is kept.
    """
    _check_size(data, max_bytes)
    encoding = detect_encoding(data)
    tasks = _envelope(_load(data, encoding, max_values), TASKS_KEY)
    dates: dict[str, str] = {}  # createdDate as sent -> as scripts get it, per batch
    return Batch(
        tasks=tuple(_read_task(uuid, task, dates) for uuid, task in tasks.items()),
        encoding=encoding,
    )


def encode_result(results: Iterable[TaskResult], encoding: Encoding) -> bytes:
    """Encode results as the controller expects them, in ``encoding``.

    ``stdout``, ``stderror`` and ``stderr`` are included only for tasks that
    want output. Text is sanitised here, so this never raises on text.
    """
    pickled = Encoding(encoding) is Encoding.PICKLE
    document = {RESULTS_KEY: _task_results(results, pickled=pickled)}
    if pickled:
        return pickle.dumps(document, protocol=0)
    return _json_bytes(document)


def _task_results(results: Iterable[TaskResult], *, pickled: bool) -> dict[str, dict[str, object]]:
    """The ``task_results`` mapping of an answer: each result as the controller reads it."""
    stamps = Timestamps()
    task_results: dict[str, dict[str, object]] = {}
    for result in results:
        entry: dict[str, object] = {
            EXIT_CODE_KEY: int(result.exit_code),
            # Pickle senders unpickle a datetime; JSON senders parse a string.
            FINISHED_KEY: result.finished_at if pickled else stamps.text(result.finished_at),
        }
        if result.wants_output:
            stderr = sanitize_text(result.stderr)
            entry[STDOUT_KEY] = sanitize_text(result.stdout)
            entry[STDERROR_KEY] = stderr
            entry[STDERR_KEY] = stderr
        task_results[result.uuid] = entry
    return task_results


def json_answer_part(results: Iterable[TaskResult]) -> bytes | None:
    """The members of a JSON answer's ``task_results`` object for ``results``, as UTF-8.

    A pool process writes this beside a slice's results, so the shim can
    answer a JSON request by joining the parts of its slices
    (:func:`join_json_answer`) instead of decoding every result and encoding
    it again. The joined bytes are exactly :func:`encode_result`'s. ``None``
    when the part could not be sent as UTF-8 (a lone surrogate in a task
    UUID): :func:`encode_result` escapes the whole answer to ASCII then, so
    such a batch is answered the long way.
    """
    text = json.dumps(_task_results(results, pickled=False), ensure_ascii=False,
                      separators=(",", ":"))
    try:
        return text[1:-1].encode("utf-8")  # the object's members, without its braces
    except UnicodeEncodeError:
        return None


def join_json_answer(parts: Iterable[bytes | memoryview]) -> bytes:
    """A JSON answer from the UTF-8 :func:`json_answer_part` of each slice, in request order.

    One copy of the parts, whatever their number: they may be views of
    large stored values.
    """
    pieces: list[bytes | memoryview] = [_ANSWER_HEAD]
    for part in parts:
        if part:  # an empty slice has no members
            pieces += (part, b",")
    if len(pieces) > 1:
        pieces.pop()  # the last separator
    pieces.append(b"}}")
    return b"".join(pieces)


_ANSWER_HEAD = b'{"' + RESULTS_KEY.encode() + b'":{'


def encode_request(tasks: Mapping[str, Mapping[str, object]], encoding: Encoding) -> bytes:
    """Encode a request as the controller would (for clients, benchmarks, tests).

    ``tasks`` maps each task UUID to ``{"uuid", "createdDate", "arguments",
    "wants_output"}``; it is wrapped as ``{"tasks": ...}``. For JSON a datetime
    ``createdDate`` is written with ``isoformat()``, as the 1.17 controller does.
    """
    document = {TASKS_KEY: {uuid: dict(task) for uuid, task in tasks.items()}}
    if Encoding(encoding) is Encoding.PICKLE:
        return pickle.dumps(document, protocol=0)
    return _json_bytes(document, default=_datetime_to_json)


def decode_result(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_values: int = DEFAULT_MAX_VALUES
) -> dict[str, dict[str, object]]:
    """Decode a result payload (either encoding) into its ``task_results`` mapping.

    Pickles go through the same restricted unpickler as requests. Raises
    DecodeError when the payload or any task result is not a mapping.
    """
    _check_size(data, max_bytes)
    results = _envelope(_load(data, detect_encoding(data), max_values), RESULTS_KEY)
    decoded: dict[str, dict[str, object]] = {}
    for uuid, entry in results.items():
        if not isinstance(entry, dict) or not all(isinstance(key, str) for key in entry):
            raise DecodeError(f"task result {uuid!r} is not a mapping with string keys")
        decoded[uuid] = entry
    return decoded


# --- helpers -----------------------------------------------------------------


def _check_size(data: bytes, max_bytes: int) -> None:
    """Refuse payloads over ``max_bytes`` before any parsing work is done."""
    if len(data) > max_bytes:
        raise DecodeError(f"payload of {len(data)} bytes exceeds the limit of {max_bytes} bytes")


def _load(data: bytes, encoding: Encoding, max_values: int) -> object:
    """Parse ``data`` into Python objects; every failure is a DecodeError."""
    if encoding is Encoding.PICKLE:
        return safe_pickle.loads(data, max_ops=max_values)
    check_json_values(data, max_values)
    try:
        # Decoded here rather than by json.loads, which would also accept
        # UTF-16 and UTF-32; the contract says UTF-8.
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"JSON payload is not valid UTF-8: {exc}") from exc
    try:
        return json.loads(text)
    except (ValueError, RecursionError, MemoryError) as exc:
        # ValueError covers malformed JSON and over-long integer literals;
        # RecursionError comes from very deep nesting.
        raise DecodeError(f"malformed JSON payload: {type(exc).__name__}: {exc}") from exc


def _envelope(document: object, key: str) -> dict[str, object]:
    """Return ``document[key]`` if both are mappings with string keys."""
    if not isinstance(document, dict):
        raise DecodeError(f"payload is a {type(document).__name__}, not a mapping")
    if key not in document:
        raise DecodeError(f"payload has no {key!r} key")
    inner = document[key]
    if not isinstance(inner, dict):
        raise DecodeError(f"payload's {key!r} is a {type(inner).__name__}, not a mapping")
    for name in inner:
        if not isinstance(name, str):
            raise DecodeError(f"payload's {key!r} has a {type(name).__name__} key, not a string")
    return inner


def _read_task(uuid: str, task: object, dates: dict[str, str]) -> TaskSpec:
    """Read one task; a task that cannot be run gets ``problem`` instead of raising."""
    if len(uuid) > MAX_TASK_UUID_CHARS:
        # No controller sends one (its keys are str(uuid4()), 36 characters).
        # Refused so it never reaches Celery, a slice's outcome or the Tasks
        # query; the contract still wants it back in the answer (docs/design.md,
        # "Bounded decoding"). Checked first: the check below copies the key.
        return TaskSpec(
            uuid=uuid,
            arguments="",
            created_date="",
            wants_output=DEFAULT_WANTS_OUTPUT,
            problem=f"task UUID too long: {len(uuid)} characters, more than the "
                    f"{MAX_TASK_UUID_CHARS} allowed (a controller's has 36)",
        )
    if not _utf8_encodable(uuid):
        # A lone surrogate ("\ud800" in JSON, or in a pickle) cannot reach
        # Redis or a log line; answered as it came, it still gets its result.
        return TaskSpec(
            uuid=uuid,
            arguments="",
            created_date="",
            wants_output=DEFAULT_WANTS_OUTPUT,
            problem="the task UUID is not valid Unicode (it holds a lone surrogate)",
        )
    if not isinstance(task, dict):
        return TaskSpec(
            uuid=uuid,
            arguments="",
            created_date="",
            wants_output=DEFAULT_WANTS_OUTPUT,
            problem=f"the task is a {type(task).__name__}, not a mapping",
        )
    problems: list[str] = []
    arguments = task.get(ARGUMENTS_KEY)
    if not isinstance(arguments, str):
        problems.append(_wrong_type(ARGUMENTS_KEY, arguments, "a string", task))
        arguments = ""
    created_date, date_problem = _read_created_date(task, dates)
    if date_problem:
        problems.append(date_problem)
    wants_output = task.get(WANTS_OUTPUT_KEY, DEFAULT_WANTS_OUTPUT)
    if not isinstance(wants_output, bool):
        problems.append(_wrong_type(WANTS_OUTPUT_KEY, wants_output, "a boolean", task))
        # Send the output back, so the controller records why the task failed.
        wants_output = True
    return TaskSpec(
        uuid=uuid,
        arguments=arguments,
        created_date=created_date,
        wants_output=wants_output,
        problem="; ".join(problems) or None,
    )


def _utf8_encodable(text: str) -> bool:
    """True unless ``text`` holds a lone surrogate (the only str UTF-8 cannot encode)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_created_date(task: dict[object, object], dates: dict[str, str]) -> tuple[str, str | None]:
    """Return (createdDate with a space separator, problem or None).

    ``dates`` keeps the batch's dates already read: its tasks often share one.
    """
    raw = task.get(CREATED_DATE_KEY)
    if isinstance(raw, datetime):
        return raw.isoformat(" "), None
    if not isinstance(raw, str):
        return "", _wrong_type(CREATED_DATE_KEY, raw, "an ISO 8601 string", task)
    if len(raw) > MAX_CREATED_DATE_CHARS:
        # Checked before anything reads the text: parsing (and hashing it for
        # ``dates``) would scan all of it, once per task sharing it.
        return "", (f"{CREATED_DATE_KEY!r} is {len(raw)} characters, more than the "
                    f"{MAX_CREATED_DATE_CHARS} of any ISO 8601 date: {raw[:_QUOTE_LIMIT]!r}")
    known = dates.get(raw)
    if known is not None:
        return known, None
    try:
        # Parsing (rather than swapping "T" for " ") both validates the date
        # and gives scripts one canonical form, whatever ISO variant arrived.
        dates[raw] = known = _space_separated_date(raw)
        return known, None
    except ValueError:
        return "", f"{CREATED_DATE_KEY!r} is not an ISO 8601 date: {raw[:_QUOTE_LIMIT]!r}"


def _space_separated_date(raw: str) -> str:
    """``raw``, an ISO 8601 date, parsed and written with a space separator; ValueError if not one."""
    return datetime.fromisoformat(raw).isoformat(" ")


def _wrong_type(key: str, value: object, expected: str, task: dict[object, object]) -> str:
    """Describe a missing or mistyped task field (by type only: values may be huge)."""
    if key not in task:
        return f"{key!r} is missing"
    return f"{key!r} is a {type(value).__name__}, not {expected}"


def _datetime_to_json(value: object) -> str:
    """``json.dumps`` fallback: datetimes as ISO 8601 strings, as the 1.17 controller."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json_bytes(document: object, default: Callable[[object], object] | None = None) -> bytes:
    """Serialise ``document`` as compact UTF-8 JSON."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=default)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Text values are sanitised, so only a lone surrogate in a key (a task
        # UUID the controller sent as a "\ud800" escape) gets here. ASCII-only
        # JSON carries it back exactly, as an escape again.
        ascii_text = json.dumps(document, ensure_ascii=True, separators=(",", ":"), default=default)
        return ascii_text.encode("ascii")
