"""What /proc says of a process: its peak memory and the CPU time it used.

Tests bound an attack's cost by these rather than by the wall clock: on a
loaded two-core CI machine, a payload the shim refuses in 50 ms of CPU can
still take over a second to come back while neighbouring tests hold the
cores.
"""

from __future__ import annotations

import os
from pathlib import Path


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM) so far, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM")


def reset_peak_rss(pid: int) -> int:
    """Reset the process's VmHWM to its current RSS (``clear_refs`` 5); that RSS, in KiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_rss_kib(pid)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far, all its threads."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reaped_children_cpu_seconds(pid: int) -> float:
    """User and system CPU time of the process's children that exited and were waited for.

    A child's own reaped children are in it too: the kernel adds them up the
    tree as each one is waited for.
    """
    fields = _stat_fields(pid)
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` after the command name (which may hold spaces and parentheses)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
