"""``python -m bench.thin_shim``: the shim's memory with a big modules file of heavy scripts.

Issue 9 asks the shim to stay thin whatever the modules file holds: at most
45 MB resident when idle and 80 MB at its W5 peak, with Archivematica's full
modules file. This generates one like it (bench/heavy_scripts.py: 100
functions whose scripts import Django models, XML and e-mail libraries and
carry code of their own), starts a private gearmand, Redis, a Celery worker
and the shim on it, and measures:

* the shim's idle RSS (``VmRSS``, once it has registered and settled);
* its peak RSS (``VmHWM``) after W5 (batches of big outputs all in flight,
  every output checked byte for byte) against the same modules file;
* for comparison, the peak RSS of the script probe, the short-lived child
  that imports every script at the shim's start-up: roughly what the shim
  would hold for good if it imported them itself.

Results go to ``bench/results/thin_shim.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import heavy_scripts, systems, workloads
from bench.sizes import SIZES, Sizes
from harness import services

log = logging.getLogger("bench")
RESULTS = Path(__file__).resolve().parent / "results"
#: Issue 9's ceilings.
IDLE_LIMIT_MB = 45.0
PEAK_LIMIT_MB = 80.0


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """``field`` of /proc/pid/status, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def settled_rss_mb(pid: int, *, timeout: float = 30.0) -> float:
    """VmRSS once two samples a second apart agree within 0.25 MiB."""
    deadline = time.monotonic() + timeout
    previous = rss_mb(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)  # a measurement's sampling interval, not synchronisation
        current = rss_mb(pid)
        if abs(current - previous) < 0.25:
            return current
        previous = current
    return previous


def probe_peak_mb(env: dict[str, str]) -> float:
    """Peak RSS of one script probe run (``python -m worker.scripts.probe``), in MiB."""
    code = ("import resource, subprocess, sys\n"
            "done = subprocess.run([sys.executable, '-m', 'worker.scripts.probe'], capture_output=True)\n"
            "assert done.returncode == 0, done.stderr[-2000:]\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=services.ROOT,
                          capture_output=True, text=True, timeout=600, check=True)
    return int(done.stdout.strip()) / 1024


def measure_archivematica(home: str) -> dict[str, Any]:
    """Idle RSS of a shim serving a real Archivematica install's modules file.

    Run with a Python that has Archivematica's requirements installed (the
    probe imports its scripts). No W5: its modules file has no such script.
    """
    with tempfile.TemporaryDirectory(prefix="amworker-thin-shim-") as tmp:
        with services.stack(Path(tmp), env={"AMWORKER_ARCHIVEMATICA_HOME": home}) as stack:
            for name in ("AMWORKER_MODULES_FILE", "AMWORKER_CLIENT_SCRIPTS_PACKAGE",
                         "AMWORKER_CLIENT_ASSETS_DIRECTORY"):
                stack.env.pop(name)
            probe = probe_peak_mb(stack.env)
            from worker.config import Settings
            from worker.scripts.registry import read_modules_file

            count = len(read_modules_file(Settings.from_env(stack.env).modules_file))
            shim = stack.shim("thin-shim", functions=count)
            idle = settled_rss_mb(shim.pid)
            probed = [line for line in shim.output().splitlines() if "script probe:" in line]
    return {"archivematica_home": home, "functions": count, "probe_peak_mb": round(probe, 1),
            "shim_idle_mb": round(idle, 1), "probe_log": probed[-1:]}


def measure(sizes: Sizes, functions: int) -> dict[str, Any]:
    """Generate the modules file, run the stack, return the numbers."""
    with tempfile.TemporaryDirectory(prefix="amworker-thin-shim-") as tmp:
        workdir = Path(tmp)
        modules = heavy_scripts.generate(workdir / "scripts", functions)
        env = {"PYTHONPATH": os.pathsep.join([str(services.ROOT), str(workdir / "scripts")]),
               "AMWORKER_LEASE_SECONDS": "10", "AMWORKER_LOG_LEVEL": "INFO"}
        with services.stack(workdir, scripts=heavy_scripts.PACKAGE, modules_file=modules,
                            env=env) as stack:
            # W5 inserts the Tasks rows from this process, as the controller does.
            os.environ["AMWORKER_DATABASE_URL"] = stack.env["AMWORKER_DATABASE_URL"]
            from worker import database

            database.ensure_schema()
            probe = probe_peak_mb(stack.env)
            log.info("probe peak %.1f MB", probe)
            stack.celery_worker("thin-pool", concurrency=systems.cores())
            started = time.monotonic()
            shim = stack.shim("thin-shim", functions=functions + 1)
            start_seconds = time.monotonic() - started
            idle = settled_rss_mb(shim.pid)
            log.info("shim idle %.1f MB (ready in %.1f s)", idle, start_seconds)
            w5 = workloads.w5_large_outputs(stack.server, sizes)
            peak = rss_mb(shim.pid, "VmHWM")
            log.info("shim W5 peak %.1f MB in %.1f s, %d error(s)", peak, w5.values[0],
                     len(w5.errors))
            loaded = shim.output()
    return {
        "functions": functions + 1,
        "probe_peak_mb": round(probe, 1),
        "shim_start_seconds": round(start_seconds, 2),
        "shim_idle_mb": round(idle, 1),
        "shim_w5_peak_mb": round(peak, 1),
        "w5_seconds": round(w5.values[0], 2),
        "w5_errors": w5.errors[:10],
        "w5": {"batches": sizes.w5_batches, "tasks": sizes.w5_tasks,
               "output_bytes": sizes.w5_output_bytes},
        "probe_log": [line for line in loaded.splitlines() if "script probe:" in line][-1:],
    }


def markdown(raw: dict[str, Any], command: str) -> str:
    w5 = raw["w5"]
    idle_ok = raw["shim_idle_mb"] <= IDLE_LIMIT_MB
    peak_ok = raw["shim_w5_peak_mb"] <= PEAK_LIMIT_MB and not raw["w5_errors"]
    return "\n".join([
        "# The thin shim: memory with a big modules file of heavy scripts",
        "",
        f"`{command}`: {raw['functions']} functions (bench/heavy_scripts.py), a private gearmand, "
        "Redis, one Celery worker and the shim.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| shim idle RSS | {raw['shim_idle_mb']} MB | ≤ {IDLE_LIMIT_MB:.0f} MB "
        f"{'met' if idle_ok else 'MISSED'} |",
        f"| shim peak RSS after W5 ({w5['batches']} batches × {w5['tasks']} tasks × "
        f"{w5['output_bytes'] // 1024} KB) | {raw['shim_w5_peak_mb']} MB | ≤ {PEAK_LIMIT_MB:.0f} MB, "
        f"every output intact: {'met' if peak_ok else 'MISSED'} |",
        f"| script probe peak RSS (the child that imports the scripts, then exits) | "
        f"{raw['probe_peak_mb']} MB | — |",
        f"| shim start-up, probe included | {raw['shim_start_seconds']} s | — |",
        "",
        "The probe's peak is about what the shim held for good when it imported the scripts "
        "itself.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.thin_shim", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--functions", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--archivematica-home", metavar="PATH",
                        help="measure idle RSS with this real install's modules file instead "
                             "(prints JSON; needs Archivematica's requirements installed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench: %(message)s",
                        stream=sys.stderr)
    if args.archivematica_home:
        print(json.dumps(measure_archivematica(args.archivematica_home), indent=1))
        return 0
    raw = measure(SIZES[args.size], args.functions)
    command = "python -m bench.thin_shim" + ("" if args.size == "full" else f" --size {args.size}")
    text = markdown(raw, command)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "thin_shim.json").write_text(json.dumps(raw, indent=1))
    (args.out / "thin_shim.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
