"""The environment the stock worker sets up before scripts run (issue 9, Found 3's exit code)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.config import Settings
from worker.pool import runtime


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import values

    # ensure_multiproc_dir re-picks the value class; the rest of the session
    # must keep in-memory values.
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.delenv("XML_CATALOG_FILES", raising=False)
    monkeypatch.delenv(runtime.MULTIPROC_ENV, raising=False)
    monkeypatch.setattr(runtime, "_made_multiproc_dir", None)


def test_xml_catalog_points_into_the_client_assets(tmp_path: Path) -> None:
    runtime.prepare_script_environment(Settings(client_assets_directory=f"{tmp_path}/assets/"))
    assert os.environ["XML_CATALOG_FILES"] == f"{tmp_path}/assets/catalog/catalog.xml"
    runtime._remove_multiproc_dir()


def test_a_multiproc_dir_is_made_and_removed_at_shutdown() -> None:
    directory = runtime.ensure_multiproc_dir()
    assert os.environ[runtime.MULTIPROC_ENV] == directory
    assert os.path.isdir(directory)
    assert runtime.ensure_multiproc_dir() == directory  # made once
    from prometheus_client import CollectorRegistry, Counter

    # A stock script's counter (client.metrics) now writes to the directory.
    Counter("amworker_test_jobs", "test", registry=CollectorRegistry()).inc()
    assert os.listdir(directory)
    runtime._remove_multiproc_dir()
    assert not os.path.exists(directory)


def test_an_operators_multiproc_dir_is_created_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = tmp_path / "prom" / "multiproc"
    monkeypatch.setenv(runtime.MULTIPROC_ENV, str(wanted))
    assert runtime.ensure_multiproc_dir() == str(wanted)
    assert wanted.is_dir()
    runtime._remove_multiproc_dir()
    assert wanted.is_dir()
