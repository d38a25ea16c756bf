"""W7 on Archivematica itself: its own script, its real stock worker, on MariaDB.

Runs inside ``var/w7am-venv`` (``scripts/w7am-venv``: the requirements
Archivematica pins, PyMySQL, and amworker installed beside them), with
Archivematica's ``settings.common`` from the checkout named by ``AM_SRC``.

``python -m bench.w7_am migrate`` creates Archivematica's schema with its own
migrations (fixtures included); ``build MANIFEST RUNS`` adds the rows the
corpus's batches work on: a transfer, a ``Files`` row per corpus file, and a
``Jobs`` row with the ``Tasks`` rows of every batch the bench will submit,
as the controller inserts them.

The module's constants and :func:`arguments` are standard library only, so
the bench (amworker's venv) imports them too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.w7_a3m import SINGLE, SPLIT, TRANSFER, UNIT, add_batch_rows, uid

#: Archivematica's own client script and the function its workflow calls it by.
MODULE = "update_size_and_checksum"
STOCK = "updatesizeandchecksum_v0.0"
SYSTEMS = {"stock": STOCK, "amworker_split": SPLIT, "amworker_single": SINGLE}
#: The workflow's own date argument: each worker puts the task's time in.
DATE = "%date%"


def arguments(name: str) -> str:
    """One task's arguments, Archivematica's own template for a transfer's files.

    The workflow's template (``ccp-functions.tsv``), with ``--filterSubdir``
    naming one file, so each task of the batch is one file.
    """
    return (f'"%sharedPath%" --transferUUID "{TRANSFER}" --sipDirectory "%sharedPath%{UNIT}" '
            f'--eventIdentifierUUID "%taskUUID%" --date "{DATE}" --filterSubdir "{name}"')


def _migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _build(manifest: Path, runs: int) -> None:
    from main.models import File, Job, Task, Transfer

    from bench import w7_corpus

    entries = w7_corpus.from_json(manifest.read_text())
    Transfer.objects.create(uuid=TRANSFER, currentlocation=f"%sharedPath%{UNIT}",
                            type="Standard", accessionid="", access_system_id="")
    File.objects.bulk_create([
        File(uuid=uid(f"file/{e.name}"), transfer_id=TRANSFER,
             originallocation=f"%transferDirectory%{e.name}".encode(),
             currentlocation=f"%transferDirectory%{e.name}".encode())
        for e in entries])
    add_batch_rows(Job, Task, SYSTEMS, [e.name for e in entries], runs, arguments)


def main(argv: list[str]) -> None:
    """``migrate`` or ``build MANIFEST RUNS``."""
    import django

    parser = argparse.ArgumentParser(prog="python -m bench.w7_am")
    parser.add_argument("command", choices=["migrate", "build"])
    parser.add_argument("manifest", nargs="?", type=Path)
    parser.add_argument("runs", nargs="?", type=int)
    args = parser.parse_args(argv)
    django.setup()
    if args.command == "migrate":
        _migrate()
    else:
        _build(args.manifest, args.runs)


if __name__ == "__main__":
    main(sys.argv[1:])
