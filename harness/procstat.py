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
    return cpu_times(pid)[0]


def cpu_times(pid: int) -> tuple[float, float]:
    """CPU seconds of a process so far, and of its children that exited and were waited for.

    Both from one read of ``/proc/<pid>/stat``, so a child waited for in
    between is never in both or neither. A child's own reaped children are
    in its share: the kernel adds them up the tree as each one is waited for.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3 of proc(5), so utime (14),
    # stime (15), cutime (16) and cstime (17) are 11 to 14 here.
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick
