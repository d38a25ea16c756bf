"""The main worker process sets Django up before the pool forks (W9: shared pages).

Each case runs in a fresh interpreter: Django's setup is once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.services import ROOT

pytestmark = pytest.mark.timeout(60)

PROBE = """
import gc, json, logging, sys
logging.basicConfig(stream=sys.stderr)
from worker.pool import runtime
done = runtime.preload_shared()
from django.apps import apps
from django.db import connections
print(json.dumps({
    "done": done,
    "ready": apps.ready,
    "frozen": gc.get_freeze_count(),
    "connected": [c.alias for c in connections.all() if c.connection is not None] if done else None,
    "scripts": sorted(m for m in sys.modules if m.startswith("tests.fixture_scripts.")),
}))
"""


def _run(tmp_path: Path, **env: str) -> tuple[dict[str, object], str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AMWORKER_", "DJANGO_"))}
    base.update({"PYTHONPATH": str(ROOT), "AMWORKER_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
                 "AMWORKER_CLIENT_SCRIPTS_PACKAGE": "tests.fixture_scripts",
                 "AMWORKER_MODULES_FILE": str(ROOT / "tests/fixture_scripts/modules.ini"), **env})
    done = subprocess.run([sys.executable, "-c", PROBE], env=base, cwd=tmp_path,
                          capture_output=True, text=True, timeout=50, check=True)
    return json.loads(done.stdout), done.stderr


def test_django_is_ready_and_frozen_with_no_connection_and_no_script(tmp_path: Path) -> None:
    facts, _ = _run(tmp_path)

    assert facts["done"] is True
    assert facts["ready"] is True
    # Frozen: the pool processes' collections leave these objects' pages shared.
    assert isinstance(facts["frozen"], int) and facts["frozen"] > 10_000
    # A connection made here would be inherited by every pool process.
    assert facts["connected"] == []
    # A script crashing the interpreter at import must only kill a pool process.
    assert facts["scripts"] == []


def test_a_django_that_cannot_start_is_left_to_the_pool_processes(tmp_path: Path) -> None:
    facts, stderr = _run(tmp_path, AMWORKER_DJANGO_SETTINGS="amworker_no_such_settings")

    assert facts["done"] is False
    assert facts["ready"] is False
    assert facts["frozen"] == 0
    assert "Django was not set up before the pool forked" in stderr
    assert "amworker_no_such_settings" in stderr
