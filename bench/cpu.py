"""W2's CPU, by process: what each process of a system spends on a batch.

W2 says how many tasks a second a system answers. With all of W2's batches
in flight the host's cores are busy, so that rate follows the CPU a system
spends per batch; this splits that CPU by process (amworker's shim, Celery's
main process and its pool processes; each baseline's workers; the stock
worker and its children), measured over the same timed rounds. A miss can
then be read as where the time goes, in the run that reports it.

The kernel's accounting in ``/proc/<pid>/stat`` counts in clock ticks (10 ms
here); summed over every round of every batch, that step is well under 1 %
of what is measured. A process that exits during a round (a recycled pool
process) still counts: once waited for, its time moves to its parent's
"children" time, which is read too.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench import memory
from harness import procstat

#: A descendant's role: its tree's role and this suffix (as W9 names them).
CHILD = " child"


def role(label: str) -> str:
    """A process's label without its index, so a baseline's workers add up: ``inprocess-1``."""
    return re.sub(r"-\d+$", "", label)


def read(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far by role: each root's own, and all its descendants' (``<role> child``).

    A process that is gone by the time it is read is left out; :meth:`Meter.measuring`
    keeps only roles read both before and after.
    """
    found: dict[str, float] = {}
    for label, root in roots.items():
        name = role(label)
        for pid in memory.tree([root]):
            key = name if pid == root else name + CHILD
            with contextlib.suppress(OSError, IndexError, ValueError):
                found[key] = found.get(key, 0.0) + procstat.cpu_seconds(pid)
            with contextlib.suppress(OSError, IndexError, ValueError):
                reaped = procstat.reaped_children_cpu_seconds(pid)
                found[name + CHILD] = found.get(name + CHILD, 0.0) + reaped
    return found


@dataclass
class Meter:
    """The CPU a system's processes spent over the rounds measured, and how many batches."""

    roots: dict[str, int]
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
        """JSON-safe: batches measured and CPU seconds by role."""
        return {"batches": self.batches,
                "seconds": {key: round(value, 3) for key, value in sorted(self.seconds.items())}}


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

#: Systems in table order, and what the table calls them.
SYSTEMS = {"amworker": "amworker", "inprocess": "in-process", "floor": "floor", "stock": "stock"}


def _in_path_order(key: str) -> tuple[int, str]:
    order = list(NAMES)
    return (order.index(key) if key in NAMES else len(order), key)


def table(raw: dict[str, Any]) -> str:
    """Markdown: each system's CPU per batch during W2, in all and by process."""
    measured = {name: per_batch_ms(entry) for name, entry in raw.items()
                if name in SYSTEMS and entry["batches"]}
    base = sum(measured.get("inprocess", {}).values())
    lines = ["| system | CPU per batch, all its processes | by process | vs in-process |",
             "|---|---|---|---|"]
    for name, label in SYSTEMS.items():
        if name not in measured:
            continue
        total = sum(measured[name].values())
        roles = sorted(measured[name], key=_in_path_order)
        parts = ", ".join(f"{NAMES.get(key, key)} {measured[name][key]:.2f} ms" for key in roles)
        versus = f"{total / base:.2f}×" if base and name != "inprocess" else "—"
        lines.append(f"| {label} | {total:.2f} ms | {parts or '—'} | {versus} |")
    return "\n".join(lines)
