"""The stock worker's turn in a bench run: W1, W2 (+ W9), W3, W5 and W8, like the others."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

from bench import cpu, memory, scale, stock, systems, workloads
from bench.sizes import Sizes
from bench.systems import NOOP, SHA256
from harness.services import Stack

log = logging.getLogger("bench")

#: What the stock column says when no checkout was given.
NOT_MEASURED = "not measured in this run"


def measure(stack: Stack, sizes: Sizes, raw: dict[str, Any], am_src: Path | None,
            w3_sizes: list[tuple[str, int]]) -> None:
    """Measure the stock worker into ``raw`` (``raw["stock"]`` says whether and how)."""
    if am_src is None:
        raw["stock"] = {"measured": False, "reason": NOT_MEASURED + " (no AM_SRC)"}
        return
    try:
        setup = stock.prepare(am_src, stack.workdir)
        proc = stock.start(setup, stack, systems.cores())
    except (OSError, RuntimeError, TimeoutError) as exc:
        log.warning("stock worker not measured: %s", exc)
        raw["stock"] = {"measured": False, "reason": f"{NOT_MEASURED}: {str(exc)[:300]}"}
        return
    raw["stock"] = {"measured": True, "am_src": str(am_src), "version": _version(am_src)}
    log.info("stock: archivematicaClient.py from %s, pid %d", am_src, proc.pid)
    errors = raw["errors"].setdefault("stock", [])
    workloads.warm_up(stack.server, NOOP, "x", batches=1, tasks=4)
    w1 = workloads.w1_latency(stack.server, sizes, rows=True)
    raw["w1"]["stock"] = w1.values
    meter = cpu.Meter({"stock": proc.pid})
    with meter.measuring(sizes.w2_batches * sizes.w2_rounds):
        w2 = workloads.w2_throughput(stack.server, sizes, rows=True)
    raw["w2"]["stock"] = w2.values
    raw.setdefault("w2_cpu", {})["stock"] = meter.result()
    # W9 in rounds of its own, as for the other systems (bench.run._by_turns).
    with memory.Sampler({"stock": proc.pid}) as sampler:
        w9 = workloads.w2_throughput(stack.server, dataclasses.replace(
            sizes, w2_rounds=sizes.w9_rounds), rows=True)
    raw.setdefault("w9", {})["stock"] = sampler.result()
    for key, mib in w3_sizes:
        w3 = workloads.w3_batch_seconds(stack.server, SHA256, sizes, mib)
        raw[key]["stock"] = w3.values
        errors += w3.errors[:20]
    with memory.Sampler({"stock": proc.pid}) as w5_sampler:
        w5 = workloads.w5_large_outputs(stack.server, sizes)
    raw["w5"]["stock"] = {"seconds": w5.values[0], "rss_mb": w5_sampler.result()["rss_mb"],
                          "intact": not w5.errors, "tree": True}
    curve, w8_errors = scale.w8_batch_sizes(stack.server, sizes, rows=True)
    raw.setdefault("w8", {})["stock"] = curve
    errors += (w1.errors + w2.errors + w9.errors + w5.errors + w8_errors)[:20]
    systems.stop([proc])


def _version(am_src: Path) -> str:
    """Archivematica's version as its checkout states it (``ARCHIVEMATICA_VERSION``)."""
    found = re.search(r"ARCHIVEMATICA_VERSION\s*=\s*\(([\d, ]+)\)", _read(
        am_src / "src" / "archivematicaCommon" / "lib" / "version.py"))
    return ".".join(p.strip() for p in found.group(1).split(",")) if found else "?"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
