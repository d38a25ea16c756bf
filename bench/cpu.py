"""W2's CPU, by process: what each process of a system spends on a batch.

W2 says how many tasks a second a system answers. With all of W2's batches
in flight the cores are busy, so the CPU a system spends per batch bounds
its throughput; this splits that CPU by process (amworker's shim, Celery's
main process and its pool processes; each baseline's workers; the stock
worker and its children), over the same timed rounds. A miss can then be
read as where the time goes, in the run that reports it.

The kernel reports CPU time in clock ticks (1/100 s on Linux), so each
round's difference is off by up to a tick or two per process; summed over
W2's rounds that is 1-2 % of what amworker's or in-process's processes
spend, and more of the floor's, which spend little. A process that exits
during a round (a recycled pool process) still counts: once waited for, its
time is in its parent's "children" time, which is read too.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench import memory
from bench.report_more import LABELS, SYSTEMS
from harness import procstat

#: A descendant's share is named after its tree's label with this suffix (as W9 names them).
CHILD = " child"

#: Times a tree is read again when one of its processes was waited for mid-read.
READ_ATTEMPTS = 5


def role(key: str) -> str:
    """A reading's key without a baseline worker's index: ``inprocess-1 child`` -> ``inprocess child``."""
    label, child = (key[: -len(CHILD)], CHILD) if key.endswith(CHILD) else (key, "")
    return re.sub(r"-\d+$", "", label) + child


def read(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each root (by label) and of all its descendants (``<label> child``).

    A root that is gone is left out; :meth:`Meter.measuring` keeps only the
    keys read both before and after.
    """
    found: dict[str, float] = {}
    for label, root in roots.items():
        reading = _read_tree(root)
        if reading is not None:
            found[label], found[label + CHILD] = reading
    return found


def _read_tree(root: int) -> tuple[float, float] | None:
    """The root's own CPU seconds and its descendants', alive or waited for.

    A process waited for while its tree is read would be missed (its parent
    read before, itself read after it was gone). The tree is read parents
    first, then every process's waited-for time again: if one moved, the
    tree is read anew.
    """
    reading = None
    for _ in range(READ_ATTEMPTS):
        pids = memory.tree([root])  # each parent before its children
        times = _times(pids)
        if times[root] is None:
            return None
        reading = _sum(times, root)
        if [_reaped(t) for t in _times(pids).values()] == [_reaped(t) for t in times.values()]:
            return reading
    return reading  # still moving: as good as a single read


Times = dict[int, tuple[float, float] | None]


def _times(pids: list[int]) -> Times:
    """Each process's own and waited-for CPU seconds; None for one that is gone."""
    found: Times = {}
    for pid in pids:
        found[pid] = None
        with contextlib.suppress(OSError, IndexError, ValueError):
            found[pid] = procstat.cpu_times(pid)
    return found


def _sum(times: Times, root: int) -> tuple[float, float]:
    """The root's own seconds, and its descendants' (alive, and every process's waited-for)."""
    own = sum(t[0] for pid, t in times.items() if t is not None and pid == root)
    rest = sum(t[0] for pid, t in times.items() if t is not None and pid != root)
    return own, rest + sum(t[1] for t in times.values() if t is not None)


def _reaped(times: tuple[float, float] | None) -> float | None:
    return None if times is None else times[1]


@dataclass
class Meter:
    """The CPU a system's processes spent over the rounds measured, and how many batches."""

    roots: dict[str, int]
    #: By reading key (root label, and ``<label> child``).
    seconds: dict[str, float] = field(default_factory=dict)
    batches: int = 0

    @contextlib.contextmanager
    def measuring(self, batches: int) -> Iterator[None]:
        """Add what the processes spend inside the block, as ``batches`` batches' worth."""
        before = read(self.roots)
        yield
        after = read(self.roots)
        for key in before.keys() & after.keys():
            self.seconds[key] = self.seconds.get(key, 0.0) + after[key] - before[key]
        self.batches += batches

    def result(self) -> dict[str, Any]:
        """JSON-safe: batches measured and CPU seconds by role (a baseline's workers added up)."""
        by_role: dict[str, float] = {}
        for key, value in self.seconds.items():
            by_role[role(key)] = by_role.get(role(key), 0.0) + value
        return {"batches": self.batches,
                "seconds": {key: round(value, 3) for key, value in sorted(by_role.items())}}


def per_batch_ms(entry: dict[str, Any]) -> dict[str, float]:
    """Milliseconds of CPU per batch by role, roles that spent nothing measurable left out."""
    batches = entry["batches"]
    if not batches:
        return {}
    return {key: 1000 * value / batches for key, value in entry["seconds"].items() if value > 0}


#: What each role is called in the table, in the order a batch meets them.
NAMES = {"shim": "shim", "celery": "Celery main", "celery child": "pool processes",
         "inprocess": "workers", "floor": "workers", "stock": "main process",
         "stock child": "its children"}


#: Each named role's place in the table; others follow, by name.
_ORDER = {key: place for place, key in enumerate(NAMES)}


def _in_path_order(key: str) -> tuple[int, str]:
    return _ORDER.get(key, len(_ORDER)), key


def table(raw: dict[str, Any]) -> str:
    """Markdown: each system's CPU per batch during W2, in all and by process."""
    measured = {name: per_batch_ms(raw[name]) for name in SYSTEMS
                if name in raw and raw[name]["batches"]}
    base = sum(measured.get("inprocess", {}).values())
    lines = ["| system | CPU per batch, all its processes | by process | vs in-process |",
             "|---|---|---|---|"]
    for name, spent in measured.items():
        parts = ", ".join(f"{NAMES.get(key, key)} {spent[key]:.1f} ms"
                          for key in sorted(spent, key=_in_path_order))
        versus = f"{sum(spent.values()) / base:.2f}×" if base and name != "inprocess" else "—"
        lines.append(f"| {LABELS[name]} | {sum(spent.values()):.1f} ms | {parts or '—'} | {versus} |")
    return "\n".join(lines)
