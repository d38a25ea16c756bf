"""W1 and W2 of amworker with Redis and with RabbitMQ as the broker, by turns.

``make bench`` runs this after the other workloads (the "Brokers" section of
``latest.md``); ``python -m bench.brokers`` runs it alone, printing one
Markdown table of medians and writing the raw numbers as JSON.

Each broker gets a stack of its own (a private gearmand and Redis, results
and coordination in both runs) on one database, with the same bench scripts
and worker size; only ``AMWORKER_BROKER_URL`` changes. Both stacks run at
once, and W1's runs and W2's rounds go to them by turns. RabbitMQ is the
machine's own (127.0.0.1:5672, guest/guest), in a private virtual host (see
harness/services.py).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import statistics
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import payloads, systems, workloads
from bench.sizes import SIZES, Sizes
from bench.systems import NOOP
from bench.turns import take_turns
from harness import services

log = logging.getLogger("bench.brokers")

BROKERS = ("redis", "rabbitmq")


def run(sizes: Sizes) -> dict[str, Any]:
    """W1 (seconds per run) and W2 (tasks/s per round) on each broker, on a database of its own."""
    with tempfile.TemporaryDirectory(prefix="amworker-bench-brokers-") as tmp:
        workdir = Path(tmp)
        database_url = f"sqlite:///{workdir}/amworker.sqlite3"
        payloads.use_database(database_url)
        return measure(sizes, workdir, database_url)


def measure(sizes: Sizes, workdir: Path, database_url: str,
            env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """W1 and W2 on each broker, in stacks under ``workdir``, on ``database_url``.

    ``database_url`` must be the database this process's Django already uses:
    this process inserts the Tasks rows the controller would, and Django is
    configured once per process. ``env`` is the amworker settings of both
    stacks (``make bench`` passes its main run's). Without RabbitMQ, says why
    instead.
    """
    missing = services.rabbitmq_missing()
    if missing is not None:
        return {"reason": missing}
    raw: dict[str, Any] = {"w1": {}, "w2": {}, "errors": {}}
    if env is None:
        config = workdir / "amworker-brokers.toml"
        config.write_text(systems.CONFIG_TOML)
        env = {"AMWORKER_CONFIG_FILE": str(config), "AMWORKER_LEASE_SECONDS": "10"}
    with contextlib.ExitStack() as stacks:
        deployed: dict[str, services.Stack] = {}
        for broker in BROKERS:
            run_dir = workdir / f"broker-{broker}"
            run_dir.mkdir()
            deployed[broker] = stacks.enter_context(services.stack(
                run_dir, scripts=systems.SCRIPTS_PACKAGE, modules_file=systems.MODULES_FILE,
                env=env, database_url=database_url, broker=broker))
            _start(deployed[broker], broker)
        _by_turns(deployed, sizes, raw)
    return raw


def _start(stack: services.Stack, broker: str) -> None:
    log.info("%s: shim and a Celery worker of %d pool process(es)", broker, systems.cores())
    stack.celery_worker(f"bench-{broker}", concurrency=systems.cores())
    stack.shim(functions=len(systems.FUNCTIONS))
    workloads.warm_up(stack.server, NOOP, "x", batches=systems.cores() * 2, tasks=4)


def _by_turns(deployed: dict[str, services.Stack], sizes: Sizes, raw: dict[str, Any]) -> None:
    """W1's runs and W2's rounds, broker after broker, the order changing: a slow minute hits both."""
    one_run = dataclasses.replace(sizes, w1_runs=1)
    one_round = dataclasses.replace(sizes, w2_rounds=1)
    for broker in deployed:
        raw["w1"][broker], raw["w2"][broker], raw["errors"][broker] = [], [], []
    take_turns(list(deployed), sizes.w1_runs, lambda broker: _note(
        raw, broker, "w1", workloads.w1_latency(deployed[broker].server, one_run, rows=True)))
    take_turns(list(deployed), sizes.w2_rounds, lambda broker: _note(
        raw, broker, "w2", workloads.w2_throughput(deployed[broker].server, one_round, rows=True)))


def _note(raw: dict[str, Any], broker: str, workload: str, measured: workloads.Measured) -> None:
    raw[workload][broker] += measured.values
    raw["errors"][broker] = (raw["errors"][broker] + measured.errors)[:20]


def table(raw: dict[str, Any]) -> str:
    """Markdown: W1 median [min - max] (ms) and W2 median (tasks/s) per broker, and errors."""
    if "reason" in raw:
        return f"Not measured in this run: {raw['reason']}."
    lines = ["| broker | W1, ms: median [min – max] | W2, tasks/s: median [min – max] | "
             "W1, W2 vs Redis | errors |", "|---|---|---|---|---|"]
    base_w1, base_w2 = (statistics.median(raw[w][BROKERS[0]]) for w in ("w1", "w2"))
    for broker in BROKERS:
        w1, w2 = raw["w1"][broker], raw["w2"][broker]
        versus = ("—" if broker == BROKERS[0] else
                  f"{statistics.median(w1) / base_w1:.2f}× the latency, "
                  f"{statistics.median(w2) / base_w2:.2f}× the throughput")
        lines.append(f"| {broker} | {statistics.median(w1) * 1000:.1f} [{min(w1) * 1000:.1f} – "
                     f"{max(w1) * 1000:.1f}] | {statistics.median(w2):,.0f} [{min(w2):,.0f} – "
                     f"{max(w2):,.0f}] | {versus} | {len(raw['errors'][broker])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.brokers", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--out", type=Path, help="write the raw numbers here (JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench: %(message)s",
                        stream=sys.stderr)
    raw = run(SIZES[args.size])
    if args.out:
        args.out.write_text(json.dumps(raw, indent=1))
    print(table(raw))
    return 1 if "reason" in raw or any(raw["errors"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
