"""``python -m bench.roundtrips``: Redis round trips and commands per batch, by process.

Issue 11 asks for the Redis round trips of one batch to be counted on the
shim side and on the worker side, so the ones that are not needed can be
found. Two counts, both exact (counted, not timed, so the machine's noise
does not matter):

* **round trips**: every process of the stack (shim, Celery main, pool
  processes) runs with a ``sitecustomize`` that counts each
  ``send_packed_command`` of redis-py (kombu's Redis transport and Celery's
  result backend use it too). A pipeline is one round trip, however many
  commands it carries. Each process appends one byte per round trip to a
  file of its own, so forked pool processes are counted without any
  shutdown hook.
* **commands**: Redis's ``MONITOR`` stream, each command attributed to the
  process that owns the client's socket (``/proc/net/tcp`` inode → the
  process's ``/proc/PID/fd``).

Batches are submitted one at a time (the W1 shape: 128 no-op tasks), after a
warm-up, so every number divides cleanly by the batch count. Results go to
``bench/results/roundtrips.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from bench import payloads, systems
from bench.workloads import submit
from harness import services

RESULTS = Path(__file__).resolve().parent / "results"

#: Installed as ``sitecustomize`` in every process of the stack. Lazy: the
#: counting file is opened on the first round trip of each process (after a
#: fork the pid differs, so a pool process gets its own file).
COUNTER = '''
import os
_DIR = os.environ.get("BENCH_ROUND_TRIPS_DIR")
if _DIR:
    import redis.connection as _rc
    _original = _rc.AbstractConnection.send_packed_command
    _state = {"pid": None, "fd": None}

    def _counted(self, command, check_health=True):
        pid = os.getpid()
        if _state["pid"] != pid:
            _state["pid"] = pid
            _state["fd"] = os.open(os.path.join(_DIR, str(pid)),
                                   os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(_state["fd"], b".")
        return _original(self, command, check_health)

    _rc.AbstractConnection.send_packed_command = _counted
'''


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from ``/proc/PID/task/*/children``)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets ``pid`` holds open."""
    inodes: set[str] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed since the listing
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def port_owners(roles: dict[int, str]) -> dict[int, str]:
    """Local TCP port → role, for every socket of the processes in ``roles``."""
    by_inode = {inode: role for pid, role in roles.items() for inode in socket_inodes(pid)}
    owners: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            role = by_inode.get(fields[9])
            if role is not None:
                owners[int(fields[1].rsplit(":", 1)[1], 16)] = role
    return owners


@contextmanager
def monitored(client: redis.Redis) -> Iterator[list[tuple[int, str]]]:
    """Collect ``(client port, command name)`` from MONITOR until the block ends."""
    seen: list[tuple[int, str]] = []
    ready, stop = threading.Event(), threading.Event()

    def run() -> None:
        with client.monitor() as monitor:  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            ready.set()
            for event in monitor.listen():
                if stop.is_set() and event["command"].startswith("ECHO bench-stop"):
                    return
                port = event.get("client_port")
                if port and str(port).isdigit():
                    seen.append((int(port), event["command"].split(" ", 1)[0].upper()))

    thread = threading.Thread(target=run, name="monitor", daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield seen
    finally:
        stop.set()
        client.echo("bench-stop")  # the monitor thread's cue to return
        thread.join(timeout=30)


def roles_of(shim: int, celery_main: int) -> dict[int, str]:
    """pid → role for the shim, the Celery main process and its pool processes."""
    roles = {shim: "shim", celery_main: "celery main"}
    roles.update({pid: "pool process" for pid in children(celery_main)})
    return roles


def round_trips(folder: Path, roles: dict[int, str]) -> collections.Counter[str]:
    """Round trips counted so far, summed per role (unknown pids under 'other')."""
    totals: collections.Counter[str] = collections.Counter()
    for path in folder.iterdir():
        totals[roles.get(int(path.name), "other")] += path.stat().st_size
    return totals


def per_batch(counts: collections.Counter[str], batches: int) -> dict[str, float]:
    """Counts divided by the batch count, rounded for the table."""
    return {role: round(value / batches, 1) for role, value in sorted(counts.items())}


def measure(batches: int, tasks: int) -> dict[str, Any]:
    """Run the stack, submit ``batches`` batches one at a time, count."""
    with tempfile.TemporaryDirectory(prefix="amworker-roundtrips-") as tmp:
        workdir = Path(tmp)
        site = workdir / "site"
        counts = workdir / "counts"
        site.mkdir()
        counts.mkdir()
        (site / "sitecustomize.py").write_text(COUNTER)
        env = {"PYTHONPATH": os.pathsep.join([str(site), str(services.ROOT)]),
               "BENCH_ROUND_TRIPS_DIR": str(counts), "AMWORKER_LOG_LEVEL": "WARNING"}
        with services.stack(workdir, scripts=systems.SCRIPTS_PACKAGE,
                            modules_file=systems.MODULES_FILE, env=env) as stack:
            pool = stack.celery_worker("rtt", concurrency=systems.cores())
            shim = stack.shim("rtt-shim", functions=len(systems.FUNCTIONS))
            one = [payloads.make_batch(systems.NOOP, tasks, "x") for _ in range(3)]
            for batch in one:  # warm-up: imports, connections, queues declared
                submit(stack.server, [batch], rows=False)
            roles = roles_of(shim.pid, pool.pid)
            before = round_trips(counts, roles)
            with monitored(stack.redis) as seen:
                for _ in range(batches):
                    _, errors = submit(stack.server, [payloads.make_batch(systems.NOOP, tasks, "x")],
                                       rows=False)
                    if errors:
                        raise RuntimeError(f"a batch went wrong: {errors[:3]}")
            after = round_trips(counts, roles)
            owners = port_owners(roles)
    commands = collections.Counter(owners.get(port, "other") for port, _ in seen)
    names: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for port, name in seen:
        names[owners.get(port, "other")][name] += 1
    return {
        "batches": batches, "tasks": tasks,
        "round_trips_per_batch": per_batch(after - before, batches),
        "commands_per_batch": per_batch(commands, batches),
        "commands_by_name_per_batch": {role: per_batch(counter, batches)
                                       for role, counter in sorted(names.items())},
    }


def rows(table: dict[str, float], roles: Iterable[str]) -> list[str]:
    return [f"| {role} | {table.get(role, 0)} |" for role in roles]


def markdown(raw: dict[str, Any], command: str) -> str:
    """The results as a Markdown page."""
    roles = sorted(set(raw["round_trips_per_batch"]) | set(raw["commands_per_batch"]))
    lines = [
        "# Redis round trips and commands per batch",
        "",
        f"`{command}`: {raw['batches']} batches of {raw['tasks']} no-op tasks, submitted one at a "
        "time after a warm-up, on a private gearmand and Redis, one Celery worker with "
        f"{systems.cores()} pool processes and the shim. Counted, not timed.",
        "",
        "| process | round trips per batch | commands per batch |",
        "|---|---|---|",
    ]
    for role in roles:
        lines.append(f"| {role} | {raw['round_trips_per_batch'].get(role, 0)} | "
                     f"{raw['commands_per_batch'].get(role, 0)} |")
    lines += ["", "## Commands by name, per batch", ""]
    for role, by_name in raw["commands_by_name_per_batch"].items():
        top = sorted(by_name.items(), key=lambda item: -item[1])
        lines.append(f"- **{role}**: " + ", ".join(f"{name} {count}" for name, count in top))
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.roundtrips", description=__doc__)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=128)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    raw = measure(args.batches, args.tasks)
    command = "python -m bench.roundtrips" + (f" --batches {args.batches}" if args.batches != 20 else "")
    text = markdown(raw, command)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "roundtrips.json").write_text(json.dumps(raw, indent=1))
    (args.out / "roundtrips.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
