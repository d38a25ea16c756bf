"""The soak: at least ten minutes of mixed load; the shim's RSS and Redis over time.

Three controllers send batches of 1-256 tasks back to back (mostly no-op
tasks cut into four slices, some with 4 KB outputs, a few CPU-bound ones)
while a sampler records, at a fixed cadence, the shim's resident size,
Redis's ``used_memory`` and its key counts. The result is a time series, a
chart (``soak.png``) and a summary (``soak.md``): first and last values and
the least-squares slope of each series over the second half of the run.
The same sampler and slope decide ``tests/faults/test_soak.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import payloads, systems, workloads
from bench.machine import describe
from bench.systems import BIG_OUTPUT, NOOP, SHA256
from harness import services
from harness.soak import MixedLoad, Sampler, second_half, slope_per_minute, summarise

log = logging.getLogger("bench")

#: The soak's config: no-op batches are cut into four slices (chords), like
#: the busiest real functions; W3's forced single slice is kept.
SOAK_CONFIG = systems.CONFIG_TOML + f'[functions."{NOOP}"]\nslices = 4\n'

#: Samples per run: one every ``seconds / SAMPLES`` seconds (at least 1 s).
SAMPLES = 240


def choose(rng: random.Random, size: int) -> tuple[str, list[str]]:
    """One batch of ``size`` tasks: no-op (80 %), 4 KB outputs (15 %), hashing (5 %)."""
    pick = rng.random()
    if pick < 0.8:
        return NOOP, [payloads.NOOP_ARGUMENTS] * size
    if pick < 0.95:
        return BIG_OUTPUT, ["4096"] * size
    return SHA256, ["1"] * min(size, 16)


def run_soak(seconds: float) -> dict[str, Any]:
    """Run the soak for ``seconds``; JSON-safe raw numbers and the series."""
    every = max(1.0, seconds / SAMPLES)
    with tempfile.TemporaryDirectory(prefix="amworker-soak-") as tmp:
        workdir = Path(tmp)
        config = workdir / "amworker.toml"
        config.write_text(SOAK_CONFIG)
        # Every key a batch leaves in Redis lives as long as its deadlines can
        # matter (queue wait + time limit + 150 s, docs/design.md "What Redis
        # keeps"). With one-minute deadlines that is 4.5 minutes, so the last
        # five minutes of a ten-minute soak show Redis's steady state; at the
        # defaults (an hour's queue wait, six hours' time limit) the same
        # plateau comes hours later, at the same rate.
        env = {"AMWORKER_CONFIG_FILE": str(config), "AMWORKER_LEASE_SECONDS": "10",
               "AMWORKER_QUEUE_WAIT": "60", "AMWORKER_TIME_LIMIT": "60",
               "AMWORKER_LOG_LEVEL": "WARNING"}
        with services.stack(workdir, scripts=systems.SCRIPTS_PACKAGE,
                            modules_file=systems.MODULES_FILE, env=env) as stack:
            machine = describe(stack.redis)
            stack.celery_worker("soak-pool", concurrency=systems.cores())
            shim = stack.shim(functions=len(systems.FUNCTIONS))
            workloads.warm_up(stack.server, NOOP, "x", batches=systems.cores() * 2, tasks=4)
            sampler = Sampler(lambda: shim.pid, stack.redis, every)
            load = MixedLoad(stack.server, choose, controllers=3)
            log.info("soak: %.0f s of mixed load, a sample every %.1f s", seconds, every)
            sampler.start()
            load.run(seconds)
            samples = sampler.stop()
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "seconds": seconds,
        "every": every,
        "controllers": load.controllers,
        "batches": load.batches,
        "tasks": load.tasks,
        "problems": load.problems[:20],
        "sampler_errors": sampler.errors[:20],
        **summarise(samples),
        "series": [dataclasses.asdict(s) for s in samples],
    }


def markdown(raw: dict[str, Any], image: str, command: str) -> str:
    """``soak.md``: what ran, and each series' first, last and second-half slope."""
    slopes = raw["second_half_slope_per_minute"]
    first, last = raw["first"], raw["last"]
    minutes = raw["seconds"] / 60
    rows = [
        ("shim RSS (MiB)", "shim_rss_mb", "{:.1f}", "{:+.3f} MiB/min"),
        ("Redis used_memory (MiB)", "redis_used_mb", "{:.1f}", "{:+.3f} MiB/min"),
        ("Redis keys (DBSIZE)", "keys", "{:.0f}", "{:+.0f} keys/min"),
        ("amworker:* keys", "amworker_keys", "{:.0f}", "{:+.0f} keys/min"),
        ("celery-task-meta-* keys", "meta_keys", "{:.0f}", "{:+.0f} keys/min"),
    ]
    lines = [
        "# Soak: the shim's memory and Redis over time",
        "",
        f"`{command}` on {raw['when']}: {minutes:.1f} minutes of mixed load, "
        f"{raw['controllers']} controllers sending batches of 1-256 tasks back to back "
        f"({raw['batches']:,} batches, {raw['tasks']:,} tasks, "
        f"{raw['tasks'] / raw['seconds']:.0f} tasks/s), a sample every {raw['every']:.1f} s "
        f"({raw['samples']} samples). Machine: {raw['machine'].get('cpu', '?')}, "
        f"{raw['machine'].get('cores', '?')} cores.",
        "",
        "| series | first | last | slope over the second half |",
        "|---|---|---|---|",
    ]
    for label, key, number, slope in rows:
        lines.append(f"| {label} | {number.format(first[key])} | {number.format(last[key])} | "
                     f"{slope.format(slopes[key])} |")
    problems = raw["problems"] + raw["sampler_errors"]
    lines += ["", f"Problems: {len(problems)}" + (":" if problems else "."), *(
        f"- {p}" for p in problems), "", f"![the soak's series]({image})", ""]
    return "\n".join(lines)


def chart(raw: dict[str, Any], path: Path) -> None:
    """Shim RSS and Redis memory against time, with each second-half fit drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.soak import Sample

    samples = [Sample(**s) for s in raw["series"]]
    minutes = [s.seconds / 60 for s in samples]
    fig, (rss_axis, redis_axis) = plt.subplots(1, 2, figsize=(14, 4.5))
    half = second_half(samples)
    for axis, key, label, colour in ((rss_axis, "shim_rss_mb", "shim RSS (MiB)", "#1f77b4"),
                                     (redis_axis, "redis_used_mb", "Redis used_memory (MiB)",
                                      "#d62728")):
        axis.plot(minutes, [getattr(s, key) for s in samples], color=colour, label=label)
        if len(half) >= 2:
            slope = slope_per_minute(half, key)
            xs = [s.seconds / 60 for s in half]
            mean_x = sum(xs) / len(xs)
            mean_y = sum(getattr(s, key) for s in half) / len(half)
            axis.plot([xs[0], xs[-1]], [mean_y + slope * (xs[0] - mean_x),
                                         mean_y + slope * (xs[-1] - mean_x)],
                      linestyle="--", color="black", label=f"second-half fit: {slope:+.3f} MiB/min")
        axis.set_xlabel("minutes")
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
        axis.legend(loc="lower right")
    keys_axis = redis_axis.twinx()
    keys_axis.plot(minutes, [s.keys for s in samples], color="#7f7f7f", linewidth=0.8,
                   label="Redis keys")
    keys_axis.set_ylabel("keys (grey)")
    rss_axis.set_title("Shim resident size under mixed load")
    redis_axis.set_title("Redis memory and keys")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
