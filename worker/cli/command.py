"""The ``amworker`` command. Thin: parse arguments, build settings, call one function."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence

from worker import logs
from worker.config import Settings, current_settings
from worker.errors import AmworkerError

log = logging.getLogger("amworker")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``amworker`` console script."""
    parser = _parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" is the task's argv for `submit`,
    # taken verbatim (argparse would otherwise parse options in it).
    tail: list[str] = []
    if "--" in words:
        cut = words.index("--")
        words, tail = words[:cut], words[cut + 1:]
    args, extra = parser.parse_known_args(words)
    if extra and args.command is not cmd_flower:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.flower_args = extra
    if tail:
        if args.command is not cmd_submit:
            parser.error("only `amworker submit` takes arguments after --")
        args.arguments = [*args.arguments, *tail]
    try:
        # The process's one object: Django's settings module (init-db) takes it too.
        settings = current_settings()
        logs.configure(args.log_level or settings.log_level, args.log_format or settings.log_format)
        return int(args.command(settings, args))
    except AmworkerError as exc:
        print(f"amworker: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amworker", description=__doc__)
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", choices=["text", "json"])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    shim = sub.add_parser("shim", help="run the Gearman shim")
    shim.set_defaults(command=cmd_shim)

    run = sub.add_parser("run", help="run the shim and a Celery worker together")
    run.add_argument("--concurrency", type=int, help="Celery pool processes (default: cores)")
    run.set_defaults(command=cmd_run)

    submit = sub.add_parser("submit", help="act as the controller: submit one batch")
    submit.add_argument("function")
    submit.add_argument("--tasks", type=int, default=1, help="tasks in the batch (default 1)")
    submit.add_argument("--encoding", choices=["json", "pickle"], default="json")
    submit.add_argument("--wants-output", action="store_true", help="ask for stdout/stderr")
    submit.add_argument("--timeout", type=float, default=300.0)
    submit.add_argument("arguments", nargs="*", help="after --: the task's argv")
    submit.set_defaults(command=cmd_submit)

    scripts = sub.add_parser("scripts", help="list functions, modules, slices, import status")
    scripts.set_defaults(command=cmd_scripts)

    check = sub.add_parser("check", help="check gearmand, Redis, the database and scripts")
    check.set_defaults(command=cmd_check)

    init_db = sub.add_parser("init-db", help="create the Tasks table if it does not exist")
    init_db.set_defaults(command=cmd_init_db)

    flower = sub.add_parser(
        "flower", help="run Flower on 127.0.0.1 unless --address is given (Flower's options "
        "pass through; an address off the loopback needs --basic-auth or --auth)")
    flower.set_defaults(command=cmd_flower)
    return parser


def cmd_shim(settings: Settings, _args: argparse.Namespace) -> int:
    """``amworker shim``."""
    from worker.scripts.probe import keep_django_out, probe_registry

    # The scripts are imported in a child (worker.scripts.probe), never here: the
    # shim holds no script code and no Django.
    keep_django_out()
    from worker.batch.service import run_shim
    from worker.cli.checks import require_healthy

    registry = probe_registry(settings)
    require_healthy(settings, with_database=False, registry=registry)
    return run_shim(settings, registry=registry)


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """``amworker run``: a Celery worker in a child process, the shim in this one."""
    from worker.scripts.probe import keep_django_out, run_probe

    keep_django_out()  # this process becomes the shim
    from worker.batch.service import run_shim
    from worker.cli.checks import require_healthy

    # The database too is checked in the probe: this process becomes the shim.
    registry, database_checks = run_probe(settings, database=True)
    require_healthy(settings, with_database=False, registry=registry, extra=database_checks)
    command = [sys.executable, "-m", "celery", "-A", "worker", "worker",
               "--loglevel", settings.log_level, "-Q", ",".join(settings.queues())]
    concurrency = args.concurrency or settings.worker_concurrency
    if concurrency:
        command += ["--concurrency", str(concurrency)]
    log.info("starting Celery worker: %s", shlex.join(command))
    celery = subprocess.Popen(command, env=os.environ.copy())
    try:
        return run_shim(settings, registry=registry)
    finally:
        celery.terminate()
        try:
            celery.wait(timeout=60)
        except subprocess.TimeoutExpired:
            celery.kill()


def cmd_submit(settings: Settings, args: argparse.Namespace) -> int:
    """``amworker submit``: prints each task's exit code and output."""
    from worker.cli.gearman_client import GearmanClientError
    from worker.cli.submit import render, submit
    from worker.codec.records import Encoding

    server = settings.gearman_servers[0]
    try:
        results = submit(server, args.function, shlex.join(args.arguments), count=args.tasks,
                         encoding=Encoding(args.encoding), wants_output=args.wants_output,
                         timeout=args.timeout)
    except (OSError, GearmanClientError) as exc:
        print(f"amworker: cannot submit to gearmand at {server}: {exc}", file=sys.stderr)
        return 2
    if results is None:
        print("the worker answered WORK_FAIL (payload refused; see the shim's log)")
        return 1
    print(render(results))
    return 0 if all(r.exit_code == 0 for r in results) else 1


def cmd_scripts(settings: Settings, _args: argparse.Namespace) -> int:
    """``amworker scripts``: the registry as the shim and workers see it."""
    from worker.scripts.probe import probe_registry

    # As the shim sees them: imported in the probe child, not here.
    registry = probe_registry(settings)
    rows = [("FUNCTION", "MODULE", "SLICES", "QUEUE", "TIME LIMIT", "SOFT LIMIT", "MAX OUTPUT",
             "STATUS")]
    for function in sorted(registry):
        entry = registry[function]
        options = entry.options
        status = "ok" if entry.importable else "IMPORT FAILED: " + (
            (entry.import_error or "").strip().splitlines()[-1])
        rows.append((function, entry.module_name, str(entry.slices_wanted()),
                     options.queue or "", _seconds(options.time_limit),
                     _seconds(options.soft_time_limit), f"{options.max_output_bytes or 0}B",
                     status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 1 if registry.failed() else 0


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:g}s"


def cmd_check(settings: Settings, _args: argparse.Namespace) -> int:
    """``amworker check``: one line per dependency; non-zero on any failure."""
    from worker.cli.checks import run_checks

    ok = True
    for check in run_checks(settings):
        print(check.line())
        ok = ok and check.ok
    return 0 if ok else 1


def cmd_init_db(settings: Settings, _args: argparse.Namespace) -> int:
    """``amworker init-db``: the embedded database's schema."""
    from worker.database import ensure_schema

    created = ensure_schema()
    print("created the Tasks table" if created else "the Tasks table already exists")
    return 0


def cmd_flower(_settings: Settings, args: argparse.Namespace) -> int:
    """``amworker flower``: exec Flower with a safe address (see worker.cli.flower)."""
    from worker.cli.flower import flower_argv

    argv = flower_argv(args.flower_args, os.environ)
    log.info("starting Flower: %s", shlex.join(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
