"""From raw numbers to the results: the table, targets met or missed, the chart."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: The stock worker's numbers quoted in issue 5 (Archivematica 1.17, 2 cores,
#: SQLite). Reference only: they were not measured in this run.
STOCK = {
    "W1": "170 ms", "W2": "≈ 630 tasks/s", "W3": "0.96×", "W4": "—",
    "W5": "128 MB (process tree)", "W6": "≥ 128 (one UPDATE per task)",
}

#: The systems W1 and W2 measure, in table and chart order.
_SYSTEMS = ("amworker", "inprocess", "floor")

#: Hand-written analysis, included in latest.md when present.
ANALYSIS = Path(__file__).resolve().parent / "analysis.md"


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    id: str
    metric: str
    amworker: str
    inprocess: str
    floor: str
    ratio: str
    target: str
    met: bool | None

    @property
    def verdict(self) -> str:
        """``met``, ``MISSED`` or ``n/a``."""
        return "n/a" if self.met is None else "met" if self.met else "**MISSED**"


def rows(raw: dict[str, Any]) -> list[Row]:
    """Every workload's row, with its target checked."""
    heavy = raw["sizes"]["w3_heavy_mebibytes"]
    return [_w1(raw), _w2(raw), _w3(raw, "w3", raw["sizes"]["w3_mebibytes"]),
            _w3(raw, "w3_heavy", heavy), _w4(raw, "w4", raw["sizes"]["w3_mebibytes"]),
            _w4(raw, "w4_heavy", heavy), _w5(raw), *_w6(raw)]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def _latency(values: list[float]) -> str:
    return f"{_ms(statistics.median(values))} [{_ms(min(values))} – {_ms(max(values))}]"


def _medians(results: dict[str, Any], keys: tuple[str, ...]) -> list[float]:
    """The median of each named list of measurements, in ``keys`` order."""
    return [statistics.median(results[key]) for key in keys]


def _w1(raw: dict[str, Any]) -> Row:
    w1 = raw["w1"]
    am, ip, fl = _medians(w1, _SYSTEMS)
    sizes = raw["sizes"]
    return Row(
        "W1", f"latency of one {sizes['w1_tasks']}-task no-op batch, median [min – max] "
        f"of {sizes['w1_runs']} runs",
        *(_latency(w1[system]) for system in _SYSTEMS),
        f"{am / ip:.2f}× in-process; floor + {_ms(am - fl)}",
        "≤ 2× in-process and ≤ floor + 40 ms",
        am <= 2 * ip and am <= fl + 0.040 and not raw["errors"].get("amworker"),
    )


def _w2(raw: dict[str, Any]) -> Row:
    am, ip, fl = _medians(raw["w2"], _SYSTEMS)
    sizes = raw["sizes"]
    return Row(
        "W2", f"{sizes['w2_batches']} × {sizes['w2_tasks']} no-op tasks in flight, tasks/s "
        f"(median of {sizes['w2_rounds']} rounds)",
        f"{am:.0f}", f"{ip:.0f}", f"{fl:.0f}",
        f"{am / ip:.2f}× in-process; {am / fl:.2f}× floor",
        "≥ 0.9× in-process", am >= 0.9 * ip,
    )


def _w3(raw: dict[str, Any], key: str, mebibytes: int) -> Row:
    split, single, ip = _medians(raw[key], ("amworker_split", "amworker_single", "inprocess"))
    sizes = raw["sizes"]
    return Row(
        "W3", f"{sizes['w3_tasks']} tasks × SHA-256 of {mebibytes} MiB, "
        f"concurrent_instances() = cores, 2 pool processes: speedup vs slices = 1",
        f"{single / split:.2f}× ({split:.2f} s vs {single:.2f} s)",
        f"1.00× ({ip:.2f} s: one process per batch)", "—",
        f"{ip / split:.2f}× faster than in-process",
        "≥ 1.85×", single / split >= 1.85,
    )


def _w4(raw: dict[str, Any], key: str, mebibytes: int) -> Row:
    one, two = _medians(raw[key], ("one_worker", "two_workers"))
    return Row(
        "W4", f"the W3 batch ({mebibytes} MiB per task) on 2 Celery workers of concurrency 1 "
        "(2 hosts): speedup vs 1",
        f"{one / two:.2f}× ({two:.2f} s vs {one:.2f} s)", "— (one host only)", "—", "—",
        "≥ 1.85×", one / two >= 1.85,
    )


def _w5(raw: dict[str, Any]) -> Row:
    am, ip = raw["w5"]["amworker"], raw["w5"]["inprocess"]
    sizes = raw["sizes"]

    def cell(entry: dict[str, Any], what: str) -> str:
        state = "all intact" if entry["intact"] else "**DAMAGED**"
        return f"{what} {entry['rss_mb']:.0f} MB, {state} ({entry['seconds']:.1f} s)"

    return Row(
        "W5", f"{sizes['w5_batches']} batches × {sizes['w5_tasks']} tasks × "
        f"{sizes['w5_output_bytes'] // 1024} KB output in flight: peak RSS",
        cell(am, "shim"), cell(ip, "largest worker"), "—", "—",
        "shim ≤ 80 MB, every result intact", am["rss_mb"] <= 80 and am["intact"],
    )


def _w6(raw: dict[str, Any]) -> list[Row]:
    found = []
    for name, label in (("sqlite", "SQLite"), ("mariadb", "MariaDB")):
        counted = raw["w6"][name]
        jobs = " / ".join(str(n) for n in raw["sizes"]["w6_jobs"])
        metric = f"SQL statements of one slice's rows on {label} ({jobs} jobs)"
        if "error" in counted:
            found.append(Row("W6", metric, counted["error"], "—", "—", "—",
                             "constant, ≤ 10", None))
            continue
        django = [counted[str(n)]["django"] for n in raw["sizes"]["w6_jobs"]]
        server = [counted[str(n)]["server"] for n in raw["sizes"]["w6_jobs"]]
        kinds = counted[str(raw["sizes"]["w6_jobs"][-1])]["kinds"]
        found.append(Row(
            "W6", metric,
            f"{' / '.join(map(str, django))} ({kinds}); {max(server)} with transaction control",
            "same bookkeeping code", "0 (writes no rows)", "—",
            "constant, ≤ 10", len(set(django)) == 1 and max(django) <= 10,
        ))
    return found


def table(found: list[Row]) -> str:
    """The results as a markdown table."""
    lines = [
        "| id | workload | amworker | in-process | floor | amworker vs baselines "
        "| stock (issue, not measured here) | target | |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in found:
        lines.append(f"| {row.id} | {row.metric} | {row.amworker} | {row.inprocess} | "
                     f"{row.floor} | {row.ratio} | {STOCK[row.id]} | {row.target} | "
                     f"{row.verdict} |")
    return "\n".join(lines)


def markdown(raw: dict[str, Any], found: list[Row], chart: str, command: str) -> str:
    """The whole results file."""
    machine = raw["machine"]
    parts = [
        "# amworker benchmark results",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}`; every number below "
        "comes from this one run.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in machine.items()),
        "",
        "## Results",
        "",
        table(found),
        "",
        f"![chart of the results]({chart})",
        "",
        "## Targets",
        "",
        *(f"- {row.id} ({row.target}): {row.verdict}" for row in found),
        "",
    ]
    errors = {k: v for k, v in raw["errors"].items() if v}
    if errors:
        parts += ["## Errors seen during the run", ""]
        parts += [f"- {system}: {e}" for system, errs in errors.items() for e in errs]
        parts.append("")
    parts += [
        "## How it is measured",
        "",
        "- One private gearmand and Redis on free loopback ports, one SQLite database "
        "(WAL, `synchronous=NORMAL`) whose `Tasks` rows are inserted before each batch is "
        "submitted, as the controller does; floor, in-process and amworker take turns on them.",
        "- Every batch is submitted by `worker.gearman_client.GearmanClient` (`submit_many` "
        "when several are in flight), JSON-encoded like Archivematica 1.17's controller.",
        f"- floor and in-process run one Gearman worker process per core "
        f"({machine['cores']}); amworker runs the shim (up to 16 batches on one gearmand "
        f"connection) and one Celery worker of "
        f"{machine['cores']} pool processes (W4: one, then two, of concurrency 1).",
        "- Each system gets warm-up batches before it is measured. W5's shim RSS is VmHWM: "
        "the peak over the shim's whole life, W1–W3 included.",
        "",
    ]
    if ANALYSIS.exists():
        parts += [ANALYSIS.read_text().rstrip(), ""]
    return "\n".join(parts)


def chart(raw: dict[str, Any], path: Path) -> None:
    """A PNG of the table: one panel per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ("amworker", "in-process", "floor")
    colours = ("#1f77b4", "#ff7f0e", "#7f7f7f")
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    (w1, w2, w3), (w4, w5, w6) = axes

    _bars(w1, labels, [median * 1000 for median in _medians(raw["w1"], _SYSTEMS)], colours,
          "W1 latency, median (ms)", target=None)
    _bars(w2, labels, _medians(raw["w2"], _SYSTEMS), colours,
          "W2 throughput (tasks/s)", target=None)
    sizes = raw["sizes"]
    small, heavy = f"{sizes['w3_mebibytes']} MiB", f"{sizes['w3_heavy_mebibytes']} MiB"
    _bars(w3, (f"amworker\n{small}", f"amworker\n{heavy}", "in-process"),
          [_ratio(raw["w3"], "amworker_single", "amworker_split"),
           _ratio(raw["w3_heavy"], "amworker_single", "amworker_split"), 1.0],
          (colours[0], colours[0], colours[1]), "W3 speedup within one batch (×)", target=1.85)
    _bars(w4, (f"amworker\n{small}", f"amworker\n{heavy}"),
          [_ratio(raw["w4"], "one_worker", "two_workers"),
           _ratio(raw["w4_heavy"], "one_worker", "two_workers")],
          colours[:1] * 2, "W4 speedup, 2 workers vs 1 (×)", target=1.85)
    _bars(w5, ("amworker shim", "in-process worker"),
          [raw["w5"]["amworker"]["rss_mb"], raw["w5"]["inprocess"]["rss_mb"]], colours[:2],
          "W5 peak RSS (MB)", target=80)
    jobs = raw["sizes"]["w6_jobs"]
    for name, marker in (("sqlite", "o"), ("mariadb", "s")):
        counted = raw["w6"][name]
        if "error" not in counted:
            w6.plot(jobs, [counted[str(n)]["django"] for n in jobs], marker=marker,
                    label=f"amworker, {name}")
    w6.plot(jobs, [n + 1 for n in jobs], linestyle="--", color="#d62728",
            label="one UPDATE per task (stock)")
    w6.set_xscale("log")
    w6.set_yscale("log")
    w6.set_xlabel("jobs in the slice")
    w6.set_title("W6 SQL statements per slice")
    w6.legend(fontsize=8)
    fig.suptitle(f"amworker benchmarks ({raw['machine']['cores']} cores, "
                 f"{raw['machine']['cpu']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _ratio(data: dict[str, list[float]], slow: str, fast: str) -> float:
    return statistics.median(data[slow]) / statistics.median(data[fast])


def _bars(axis: Any, labels: tuple[str, ...], values: list[float], colours: tuple[str, ...],
          title: str, *, target: float | None) -> None:
    bars = axis.bar(labels, values, color=colours)
    axis.bar_label(bars, fmt="%.3g")
    axis.set_title(title)
    if target is not None:
        axis.axhline(target, color="#d62728", linestyle="--", label=f"target {target:g}")
        axis.legend(fontsize=8)
