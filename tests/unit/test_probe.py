"""The script probe: a real child process imports the scripts, the caller learns the facts."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from worker.config import FunctionOptions, Settings
from worker.scripts.probe import keep_django_out, probe_registry

SCRIPTS = {
    "chatty": "print('printed while importing')\n\ndef concurrent_instances():\n    return 5\n\n"
              "def call(jobs):\n    pass\n",
    "plain": "def call(jobs):\n    pass\n",
    "broken": "import amworker_no_such_dependency\n",
    "buggy_hook": "def concurrent_instances():\n    raise RuntimeError('no')\n\ndef call(jobs):\n    pass\n",
}


def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: dict[str, str],
                 name: str = "probed_pkg") -> Settings:
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module, text in scripts.items():
        (package / f"{module}.py").write_text(text)
    modules = tmp_path / "modules.ini"
    modules.write_text("[supportedBatchCommands]\n" + "".join(
        f"{m}_v0.0 = {m}\n" for m in scripts))
    for key in [k for k in os.environ if k.startswith("AMWORKER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *sys.path]))
    monkeypatch.setenv("AMWORKER_MODULES_FILE", str(modules))
    monkeypatch.setenv("AMWORKER_CLIENT_SCRIPTS_PACKAGE", name)
    monkeypatch.setenv("AMWORKER_DATABASE_URL", f"sqlite:///{tmp_path}/db.sqlite3")
    return Settings.from_env()


@pytest.mark.timeout(60)
def test_the_probe_reports_imports_and_slices_without_importing_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_package(tmp_path, monkeypatch, SCRIPTS)

    with caplog.at_level(logging.WARNING, logger="worker.scripts.probe"):
        registry = probe_registry(settings)

    assert any("concurrent_instances() raised RuntimeError: no; using 1 slice" in r.getMessage()
               for r in caplog.records)

    assert "probed_pkg.chatty" not in sys.modules
    assert registry["chatty_v0.0"].importable and registry["chatty_v0.0"].slices_wanted() == 5
    assert registry["plain_v0.0"].importable and registry["plain_v0.0"].slices_wanted() == 1
    assert registry["buggy_hook_v0.0"].importable and registry["buggy_hook_v0.0"].slices_wanted() == 1
    broken = registry["broken_v0.0"]
    assert not broken.importable and "amworker_no_such_dependency" in (broken.import_error or "")
    assert registry["chatty_v0.0"].module is None


@pytest.mark.timeout(60)
def test_an_operator_slice_count_still_wins_over_the_probed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_package(tmp_path, monkeypatch, {"chatty": SCRIPTS["chatty"]})
    settings = Settings(**{**settings.__dict__,
                           "functions": {"chatty_v0.0": FunctionOptions(slices=2)}})

    assert probe_registry(settings)["chatty_v0.0"].slices_wanted() == 2


@pytest.mark.timeout(60)
def test_a_probe_that_dies_fails_every_function_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_package(tmp_path, monkeypatch, {
        "plain": SCRIPTS["plain"], "dies": "import os\nos._exit(7)\n"})

    registry = probe_registry(settings)

    for entry in registry.values():
        assert not entry.importable
        assert "the script probe exited with code 7" in (entry.import_error or "")


@pytest.mark.timeout(60)
def test_a_probe_that_hangs_is_given_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_package(tmp_path, monkeypatch, {
        "hangs": "import threading\nthreading.Event().wait()\n"})

    registry = probe_registry(settings, timeout=3)

    assert "did not finish importing the scripts within 3s" in (registry["hangs_v0.0"].import_error or "")


def test_keep_django_out_refuses_django_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    for name in [n for n in sys.modules if n == "django" or n.startswith("django.")]:
        monkeypatch.delitem(sys.modules, name)
    keep_django_out()

    with pytest.raises(ModuleNotFoundError, match="not imported in the shim"):
        import django  # noqa: F401
