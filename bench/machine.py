"""The machine a run was measured on, for the results file."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

from harness.services import GEARMAND


def describe(redis_client: Any) -> dict[str, str]:
    """Cores, CPU, memory and the versions of everything measured."""
    return {
        "cores": str(os.cpu_count()),
        "cpu": _cpuinfo("model name") or platform.processor() or "unknown",
        "memory": f"{_meminfo_kib('MemTotal') / 1024 / 1024:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "celery": version("celery"),
        "redis": str(redis_client.info("server").get("redis_version", "?")),
        "gearmand": _gearmand_version(),
        "django": version("django"),
        "sqlite": sqlite3.sqlite_version,
    }


def _cpuinfo(key: str) -> str | None:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(key):
            return line.split(":", 1)[1].strip()
    return None


def _meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _gearmand_version() -> str:
    try:
        done = subprocess.run([GEARMAND, "--version"], capture_output=True, text=True, timeout=10,
                              check=False)
    except OSError:
        return "?"
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout or done.stderr else "?"
