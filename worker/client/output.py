"""Bounded job output: :class:`OutputBuffer` and the UTF-8 helpers it needs.

A job's stdout and stderr each keep at most ``max_output_bytes`` of UTF-8 and
then record how much they dropped, so a runaway script cannot exhaust a
worker's memory or the result payload. The stock worker keeps everything;
this bound is one of amworker's documented differences (docs/migrating.md).
"""

from __future__ import annotations

from typing import TypeAlias

DEFAULT_MAX_OUTPUT_BYTES = 8 * 1024 * 1024
"""Default bound, in UTF-8 bytes, on each of a job's stdout and stderr (8 MiB).

Archivematica stores both in ``Tasks`` text columns and ships them back over
Gearman; a few MiB is far beyond any useful script output, and the bound keeps
one chatty script from exhausting a worker or a result payload.
"""

TRUNCATION_MARKER = (
    "\n[amworker: output truncated after {kept} bytes; {dropped} more bytes dropped]\n"
)
"""Appended (once) to a stream that went over its bound; filled in on reading."""

_COMPACT_EVERY = 256
"""Join this many buffered pieces into one, so tiny writes cost no per-object memory."""

_COUNT_CHUNK_CHARS = 64 * 1024
"""Non-ASCII text is measured in slices this long, bounding temporary memory."""

NOTE_BYTES = 64 * 1024
"""Room past the bound for amworker's own notes (:meth:`OutputBuffer.write_note`)."""

Writable: TypeAlias = str | bytes | bytearray | memoryview
"""What ``write_output``/``write_error`` accept: text, or UTF-8 bytes."""


def utf8_size(text: str) -> int:
    """Return how many bytes ``text`` takes as UTF-8 (lone surrogates as 3 bytes).

    ASCII text (checked in O(1) by CPython) is measured by its length; other
    text is encoded slice by slice, never all at once.
    """
    if text.isascii():
        return len(text)
    return sum(
        len(text[i : i + _COUNT_CHUNK_CHARS].encode("utf-8", "surrogatepass"))
        for i in range(0, len(text), _COUNT_CHUNK_CHARS)
    )


def _utf8_prefix(text: str, limit: int) -> str:
    """Return the longest prefix of ``text`` whose UTF-8 form fits in ``limit`` bytes."""
    head = text[:limit]  # every code point takes at least one byte
    data = head.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return head
    cut = limit
    while cut > 0 and data[cut] & 0xC0 == 0x80:  # back off to a character boundary
        cut -= 1
    return data[:cut].decode("utf-8", "surrogatepass")


def as_text(value: object, what: str) -> str:
    """Accept what scripts write: any ``str`` as-is, bytes decoded leniently."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    raise TypeError(f"{what} expects str or bytes, not {type(value).__name__}")


class OutputBuffer:
    """An append-only text buffer that keeps at most ``limit_bytes`` of UTF-8.

    Writes are cheap: a piece is appended to a list and measured (O(1) for
    ASCII). Once a write would pass the bound, the part that fits is kept,
    the rest is counted but dropped, and so is everything written after it.
    Reading renders the kept text followed by one :data:`TRUNCATION_MARKER`
    saying how much was dropped; the result is cached until the next write.
    """

    def __init__(self, limit_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> None:
        if limit_bytes < 0:
            raise ValueError(f"limit_bytes must be >= 0, not {limit_bytes}")
        self.limit_bytes = limit_bytes
        self.clear()

    def clear(self) -> None:
        """Forget all content, kept and dropped."""
        self._pieces: list[str] = []
        self._compacted = 0  # pieces before this index are already joined runs
        self._kept_bytes = 0
        self._dropped_bytes = 0
        self._notes: list[str] = []
        self._note_bytes = 0
        self._rendered: str | None = ""

    @property
    def kept_bytes(self) -> int:
        """UTF-8 bytes kept so far (never more than ``limit_bytes``)."""
        return self._kept_bytes

    @property
    def dropped_bytes(self) -> int:
        """UTF-8 bytes written past the bound and dropped."""
        return self._dropped_bytes

    @property
    def truncated(self) -> bool:
        """Whether anything was dropped."""
        return self._dropped_bytes > 0

    def write(self, text: str) -> None:
        """Append ``text``, or as much of it as the bound allows."""
        if not text:
            return
        if self._notes:  # after a note, in order, under the notes' bound
            self._note(text)
            return
        self._rendered = None
        size = utf8_size(text)
        if self._dropped_bytes:
            self._dropped_bytes += size
            return
        room = self.limit_bytes - self._kept_bytes
        if size > room:
            text = _utf8_prefix(text, room)
            kept = utf8_size(text)
            self._dropped_bytes = size - kept
            size = kept
            if not text:
                return
        self._kept_bytes += size
        self._pieces.append(text)
        if len(self._pieces) - self._compacted >= _COMPACT_EVERY:
            run = "".join(self._pieces[self._compacted :])
            del self._pieces[self._compacted :]
            self._pieces.append(run)
            self._compacted = len(self._pieces)

    def write_note(self, text: str) -> None:
        """Append amworker's own ``text``: like :meth:`write` while it fits, else past the bound.

        A failure's cause written when the script has already filled the
        stream would otherwise be counted among the dropped bytes and never
        seen. Past the bound it follows what was kept (and the truncation
        marker, if the script's own output was cut), and the notes together
        keep at most :data:`NOTE_BYTES` more.
        """
        if not self._notes and not self._dropped_bytes and (
                utf8_size(text) <= self.limit_bytes - self._kept_bytes):
            self.write(text)
            return
        self._note(text)

    def _note(self, text: str) -> None:
        self._rendered = None
        kept = _utf8_prefix(text, NOTE_BYTES - self._note_bytes)
        if kept:
            self._notes.append(kept)
            self._note_bytes += utf8_size(kept)

    def replace(self, text: str) -> None:
        """Make ``text`` (bounded like any write) the whole content."""
        self.clear()
        self.write(text)

    def ends_with_newline(self) -> bool:
        """Whether what is read back is empty or ends with a line break."""
        if self._notes:
            return self._notes[-1].endswith("\n")
        if self._dropped_bytes:
            return True  # the truncation marker ends its line
        return not self._pieces or self._pieces[-1].endswith("\n")

    def getvalue(self) -> str:
        """Return the kept text, plus the truncation marker if anything was dropped."""
        if self._rendered is None:
            body = "".join(self._pieces)
            self._pieces = [body] if body else []
            self._compacted = len(self._pieces)
            if self._dropped_bytes:
                body += TRUNCATION_MARKER.format(kept=self._kept_bytes, dropped=self._dropped_bytes)
            self._rendered = body + "".join(self._notes)
        return self._rendered

    def __str__(self) -> str:
        return self.getvalue()

    def __len__(self) -> int:
        return len(self.getvalue())


def assign(buffer: OutputBuffer, value: str) -> None:
    """Replace a buffer's content, treating ``x += y`` as an append of ``y``."""
    current = buffer.getvalue()
    if value.startswith(current):
        buffer.write(value[len(current) :])
    else:
        buffer.replace(value)
