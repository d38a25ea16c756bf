"""W9: memory of a system's whole process tree, as PSS and RSS, sampled while it works.

PSS (proportional set size, ``/proc/<pid>/smaps_rollup``) charges each page
shared between processes (after ``fork``, say) to each sharer in proportion,
so a tree's PSS sum counts those pages once; RSS counts them in every process.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: How often the sampler reads the tree while a workload runs.
INTERVAL_SECONDS = 0.05


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's children list)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def tree(roots: list[int]) -> list[int]:
    """``roots`` and all their descendants."""
    seen: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.append(pid)
            todo += children(pid)
    return seen


def rollup_kib(pid: int) -> tuple[int, int] | None:
    """``(pss, rss)`` of one process in KiB, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Pss", "Rss"):
            values[key] = int(rest.split()[0])
    return values.get("Pss", 0), values.get("Rss", 0)


def _name(pid: int) -> str:
    try:
        return " ".join(Path(f"/proc/{pid}/cmdline").read_text().split("\0")[:4]).strip()[:80]
    except OSError:
        return "?"


@dataclass
class Sample:
    """One reading of a whole tree: totals and each process, in MiB."""

    pss_mb: float
    rss_mb: float
    processes: list[dict[str, Any]] = field(default_factory=list)


def sample(roots: dict[str, int]) -> Sample:
    """Read the trees under ``roots`` (label -> pid) once."""
    found = Sample(0.0, 0.0)
    for label, root in roots.items():
        for pid in tree([root]):
            rolled = rollup_kib(pid)
            if rolled is None:
                continue
            pss, rss = rolled[0] / 1024, rolled[1] / 1024
            found.pss_mb += pss
            found.rss_mb += rss
            role = label if pid == root else f"{label} child"
            found.processes.append({"role": role, "pid": pid, "pss_mb": round(pss, 1),
                                    "rss_mb": round(rss, 1), "command": _name(pid)})
    return found


class Sampler:
    """Samples trees in a thread while a workload runs; keeps the sample of peak PSS."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.peak: Sample | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="w9-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self._take()
            if self._stop.wait(INTERVAL_SECONDS):
                break
        self._take()

    def _take(self) -> None:
        current = sample(self.roots)
        self.samples += 1
        if self.peak is None or current.pss_mb > self.peak.pss_mb:
            self.peak = current

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def result(self) -> dict[str, Any]:
        """JSON-safe: peak PSS and the RSS of that same sample, per process too."""
        if self.peak is None:
            raise RuntimeError("no memory sample was taken")
        return {"pss_mb": round(self.peak.pss_mb, 1), "rss_mb": round(self.peak.rss_mb, 1),
                "samples": self.samples, "processes": self.peak.processes}
