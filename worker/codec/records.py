"""The wire format as data: a request's tasks and a task's result, as frozen records.

:mod:`worker.codec.wire` turns the controller's bytes into these and back;
everything past the codec (the shim's plan, the pool's runtime, the answer)
works on them, never on the payload's dicts. Pure: no I/O, no settings.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from worker.errors import DecodeError


class Encoding(enum.StrEnum):
    """How a request was encoded; the result must use the same encoding."""

    JSON = "json"
    PICKLE = "pickle"


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task of a request, as read from the payload.

    ``uuid`` is the key of the ``tasks`` mapping (the inner ``"uuid"`` is
    ignored: the controller matches results by key). ``arguments`` is the raw
    string, before placeholder substitution and splitting. ``created_date`` is
    ISO 8601 with a space separator, as scripts expect. When the task can be
    read but not run, ``problem`` says why (for the task's stderr) and the
    other fields hold harmless defaults.
    """

    uuid: str
    arguments: str
    created_date: str
    wants_output: bool
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """The tasks of one request, in payload order, and how it was encoded."""

    tasks: tuple[TaskSpec, ...]
    encoding: Encoding


@dataclass(frozen=True, slots=True)
class TaskResult:
    """The outcome of one task, ready to be encoded for the controller.

    ``finished_at`` is normalised to an aware UTC datetime on construction (a
    naive value is taken to be UTC already), so every encoder can rely on it.
    """

    uuid: str
    exit_code: int
    finished_at: datetime
    stdout: str = ""
    stderr: str = ""
    wants_output: bool = True

    def __post_init__(self) -> None:
        """Normalise ``finished_at`` to timezone-aware UTC."""
        if not isinstance(self.finished_at, datetime):
            raise TypeError(f"finished_at must be a datetime, not {type(self.finished_at)}")
        utc = _as_utc(self.finished_at)
        if utc is not self.finished_at:
            # Frozen dataclass: this is the documented way to set a field here.
            object.__setattr__(self, "finished_at", utc)

    def to_json(self, stamps: Timestamps | None = None) -> dict[str, object]:
        """Return a JSON-safe dict (for Celery's JSON serializer).

        Text is sanitised so that a later UTF-8 encode cannot fail. A caller
        encoding many results passes one ``stamps`` for all of them.
        """
        return {
            "uuid": self.uuid,
            "exit_code": self.exit_code,
            "finished_at": (stamps or Timestamps()).text(self.finished_at),
            "stdout": sanitize_text(self.stdout),
            "stderr": sanitize_text(self.stderr),
            "wants_output": self.wants_output,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object], stamps: Timestamps | None = None) -> TaskResult:
        """Rebuild a result from :meth:`to_json` output; raises DecodeError.

        A caller decoding many results passes one ``stamps`` for all of them.
        """
        uuid = data.get("uuid")
        exit_code = data.get("exit_code")
        finished_at = data.get("finished_at")
        stdout = data.get("stdout", "")
        stderr = data.get("stderr", "")
        wants_output = data.get("wants_output", True)
        if not isinstance(uuid, str):
            raise DecodeError("task result: 'uuid' must be a string")
        # bool is an int subclass; an exit code of True is a bug somewhere.
        if not isinstance(exit_code, int) or isinstance(exit_code, bool):
            raise DecodeError(f"task result {uuid}: 'exit_code' must be an integer")
        if not isinstance(finished_at, str):
            raise DecodeError(f"task result {uuid}: 'finished_at' must be an ISO 8601 string")
        if not isinstance(stdout, str) or not isinstance(stderr, str):
            raise DecodeError(f"task result {uuid}: 'stdout' and 'stderr' must be strings")
        if not isinstance(wants_output, bool):
            raise DecodeError(f"task result {uuid}: 'wants_output' must be a boolean")
        try:
            finished = (stamps or Timestamps()).moment(finished_at)
        except ValueError as exc:
            raise DecodeError(f"task result {uuid}: bad 'finished_at': {exc}") from exc
        return cls(
            uuid=uuid,
            exit_code=exit_code,
            finished_at=finished,
            stdout=stdout,
            stderr=stderr,
            wants_output=wants_output,
        )


class Timestamps:
    """ISO 8601 text of datetimes, and datetimes of text, each distinct value converted once.

    The results of a slice mostly share one finishing time (every job that
    set none ends when ``call(jobs)`` returns), and the tasks of a batch
    often share one creation time: without this, a 128-task batch formatted
    or parsed the same moment about 380 times on its way through (about an
    eighth of the shim's and pool's own codec time). Meant to live for one
    payload: it keeps every value it converted.
    """

    def __init__(self) -> None:
        self._texts: dict[datetime, str] = {}
        self._moments: dict[str, datetime] = {}

    def text(self, moment: datetime) -> str:
        """``moment.isoformat()``.

        Kept only for UTC moments (every ``TaskResult.finished_at``): datetimes
        in other zones compare equal across zones while their text differs.
        """
        if moment.tzinfo is not UTC:
            return moment.isoformat()
        found = self._texts.get(moment)
        if found is None:
            found = self._texts[moment] = moment.isoformat()
        return found

    def moment(self, text: str) -> datetime:
        """``datetime.fromisoformat(text)``; raises ValueError as it does."""
        found = self._moments.get(text)
        if found is None:
            found = self._moments[text] = datetime.fromisoformat(text)
        return found


def sanitize_text(text: str | bytes) -> str:
    """Return ``text`` as a str that can always be encoded as UTF-8.

    Bytes are decoded as UTF-8 with invalid sequences replaced by U+FFFD. In a
    str, each lone surrogate (as left by ``surrogateescape`` or a bad ``\\ud800``
    JSON escape) becomes U+FFFD, while a valid surrogate pair becomes the
    character it encodes. Clean text is returned unchanged.
    """
    if isinstance(text, bytes | bytearray):
        return bytes(text).decode("utf-8", "replace")
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Only surrogates fail to encode. UTF-16 with "surrogatepass" writes
        # them as they are; decoding joins valid pairs and replaces lone ones.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def storable_text(text: str | bytes, vendor: str) -> str:
    """``text`` as the database ``vendor`` can store it: UTF-8-clean, and no NUL on PostgreSQL.

    PostgreSQL refuses a NUL character in any text column ("text fields
    cannot contain NUL"), and a tool's binary output can hold one: it becomes
    U+FFFD there, as undecodable bytes do. MySQL and SQLite store it as it is,
    as the stock worker's rows do.
    """
    clean = sanitize_text(text)
    if vendor == "postgresql" and "\x00" in clean:
        return clean.replace("\x00", "\ufffd")
    return clean


def _as_utc(moment: datetime) -> datetime:
    """Return ``moment`` as an aware UTC datetime (naive means UTC already)."""
    if moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    if moment.tzinfo is UTC:
        return moment
    return moment.astimezone(UTC)
