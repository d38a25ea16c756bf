"""AMWORKER_ARCHIVEMATICA_HOME: one setting, everything else derived from it.

Against a small Archivematica-like tree in both layouts (tests/am_tree.py),
and against a real checkout when ``AM_SRC`` names one.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import am_tree
from worker import archivematica
from worker import settings as django_settings
from worker.cli import checks
from worker.config import DATABASE_EMBEDDED, Settings
from worker.errors import ConfigError
from worker.scripts.registry import load_registry, read_modules_file

AM_SRC = os.environ.get("AM_SRC", "")


@pytest.fixture
def clean_imports() -> Iterator[None]:
    """Undo what importing the tree's modules does to sys.path, sys.modules, PYTHONPATH."""
    path, modules = list(sys.path), set(sys.modules)
    pythonpath = os.environ.get("PYTHONPATH")
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    if pythonpath is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = pythonpath


@pytest.mark.parametrize("layout", ["package", "source"])
def test_everything_is_derived_from_the_home(tmp_path: Path, layout: str) -> None:
    home, mcpclient = am_tree.build(tmp_path, layout)
    settings = Settings.from_env({"AMWORKER_ARCHIVEMATICA_HOME": str(home)})

    if layout == "package":
        common = tmp_path / "usr/lib/archivematica/archivematicaCommon"
        dashboard = tmp_path / "usr/share/archivematica/dashboard"
    else:
        common = tmp_path / "checkout/src/archivematicaCommon/lib"
        dashboard = tmp_path / "checkout/src/dashboard/src"
    assert settings.import_paths == (str(mcpclient), str(mcpclient / "clientScripts"),
                                     str(common), str(dashboard))
    assert settings.modules_file == str(mcpclient / "archivematicaClientModules")
    assert settings.client_scripts_package == "clientScripts"
    assert settings.client_assets_directory == f"{mcpclient / 'assets'}/"
    assert settings.django_settings == "settings.common"
    assert settings.derived == {"import_paths", "modules_file", "client_scripts_package",
                                "client_assets_directory", "django_settings"}


@pytest.mark.parametrize("layout", ["package", "source"])
def test_the_mcpclient_directory_and_src_are_accepted_as_the_home(tmp_path: Path, layout: str) -> None:
    home, mcpclient = am_tree.build(tmp_path, layout)
    expected = Settings.from_env({"AMWORKER_ARCHIVEMATICA_HOME": str(home)}).import_paths
    others = [mcpclient] + ([home / "src"] if layout == "source" else [])

    for other in others:
        assert Settings.from_env({"AMWORKER_ARCHIVEMATICA_HOME": str(other)}).import_paths == expected


def test_each_derived_value_can_be_overridden(tmp_path: Path) -> None:
    home, _ = am_tree.build(tmp_path, "package")
    settings = Settings.from_env({
        "AMWORKER_ARCHIVEMATICA_HOME": str(home),
        "AMWORKER_MODULES_FILE": "/etc/mine.ini",
        "AMWORKER_CLIENT_SCRIPTS_PACKAGE": "my.scripts",
        "ARCHIVEMATICA_MCPCLIENT_MCPCLIENT_CLIENTASSETSDIRECTORY": "/assets/",
        "AMWORKER_IMPORT_PATHS": f"/a{os.pathsep}/b",
        "AMWORKER_DJANGO_SETTINGS": "my.settings",
    })

    assert (settings.modules_file, settings.client_scripts_package, settings.client_assets_directory,
            settings.import_paths, settings.django_settings) == (
        "/etc/mine.ini", "my.scripts", "/assets/", ("/a", "/b"), "my.settings")
    assert settings.derived == frozenset()


def test_a_directory_that_is_no_archivematica_is_refused_with_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no Archivematica MCPClient found.*clientScripts"):
        Settings.from_env({"AMWORKER_ARCHIVEMATICA_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="no such directory"):
        Settings.from_env({"AMWORKER_ARCHIVEMATICA_HOME": str(tmp_path / "missing")})


def test_a_package_install_without_its_dashboard_names_the_missing_directory(tmp_path: Path) -> None:
    home, _ = am_tree.build(tmp_path, "package")
    (tmp_path / "usr/share/archivematica/dashboard/main/__init__.py").unlink()
    (tmp_path / "usr/share/archivematica/dashboard/main").rmdir()
    (tmp_path / "usr/share/archivematica/dashboard").rmdir()

    with pytest.raises(ConfigError, match="no dashboard at .*usr/share/archivematica/dashboard"):
        Settings.from_env({"AMWORKER_ARCHIVEMATICA_HOME": str(home)})


def test_the_stock_workers_django_settings_module_means_archivematicas_settings() -> None:
    settings = Settings.from_env({"DJANGO_SETTINGS_MODULE": "settings.common"})

    assert settings.django_settings == "settings.common"
    assert Settings.from_env({"DJANGO_SETTINGS_MODULE": "mysite.settings"}).django_settings == ""


@pytest.mark.parametrize("layout", ["package", "source"])
def test_scripts_that_import_their_siblings_import(tmp_path: Path, layout: str,
                                                   clean_imports: None) -> None:
    home, mcpclient = am_tree.build(tmp_path, layout)
    registry = load_registry(Settings.from_env({"AMWORKER_ARCHIVEMATICA_HOME": str(home)}))

    entry = registry["greet_v0.0"]
    assert entry.import_error is None and entry.importable
    assert entry.script == "clientScripts.greet"
    assert entry.slices_wanted() == 3
    assert str(mcpclient / "clientScripts") in os.environ["PYTHONPATH"].split(os.pathsep)


def test_django_settings_extend_archivematicas_without_doubling_logging(
    tmp_path: Path, clean_imports: None
) -> None:
    home, _ = am_tree.build(tmp_path, "source")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    built = django_settings.build(Settings.from_env({"AMWORKER_ARCHIVEMATICA_HOME": str(home)}))

    assert built["INSTALLED_APPS"] == ["django.contrib.contenttypes", "django.contrib.auth", "main",
                                       django_settings.APP]
    assert built["SHARED_DIRECTORY"] == "/var/archivematica/sharedDirectory/"
    assert built["LOGGING_CONFIG"] is None
    # The stand-in's dictConfig replaced the root handlers and set WARNING: undone.
    assert root.handlers == handlers and root.level == level
    assert logging.getLogger("archivematica").level == logging.DEBUG
    # Nothing names a database: Archivematica's settings keep theirs.
    assert built["DATABASES"]["default"]["NAME"] == "MCP"


def test_an_empty_client_password_stays_empty(tmp_path: Path, clean_imports: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    home, _ = am_tree.build(tmp_path, "package")
    env = {"AMWORKER_ARCHIVEMATICA_HOME": str(home), "ARCHIVEMATICA_MCPCLIENT_CLIENT_PASSWORD": "",
           "ARCHIVEMATICA_MCPCLIENT_CLIENT_HOST": "db.example"}
    monkeypatch.setenv("ARCHIVEMATICA_MCPCLIENT_CLIENT_PASSWORD", "")
    settings = Settings.from_env(env)

    database = django_settings.build(settings)["DATABASES"]["default"]

    assert settings.database_from == "ARCHIVEMATICA_MCPCLIENT_CLIENT_*"
    assert database["PASSWORD"] == "" and database["HOST"] == "db.example"
    # What Archivematica's own reading made of it (Found 6 of issue 9).
    assert django_settings.base_settings("settings.common")["DATABASES"]["default"]["PASSWORD"] == "demo"


def test_amworkers_database_url_wins_over_archivematicas(tmp_path: Path, clean_imports: None) -> None:
    home, _ = am_tree.build(tmp_path, "package")
    settings = Settings.from_env({"AMWORKER_ARCHIVEMATICA_HOME": str(home),
                                  "AMWORKER_DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"})

    database = django_settings.build(settings)["DATABASES"]["default"]

    assert database["ENGINE"].endswith("sqlite3") and database["NAME"] == f"{tmp_path}/x.sqlite3"
    assert Settings.from_env({}).database_from == DATABASE_EMBEDDED


def test_check_reports_what_was_derived_and_what_was_set(tmp_path: Path) -> None:
    home, mcpclient = am_tree.build(tmp_path, "package")
    settings = Settings.from_env({"AMWORKER_ARCHIVEMATICA_HOME": str(home),
                                  "AMWORKER_MODULES_FILE": "/etc/mine.ini"})

    line = checks.check_archivematica(settings)

    assert line is not None and line.ok
    assert "modules file /etc/mine.ini (set)" in line.detail
    assert f"client assets {mcpclient / 'assets'}/;" in line.detail
    assert "Django settings settings.common + amworker's app;" in line.detail
    assert "database from the Django settings" in line.detail
    assert checks.check_archivematica(Settings.from_env({})) is None


def test_install_import_paths_is_idempotent_and_goes_first(clean_imports: None) -> None:
    archivematica.install_import_paths(["/x/one", "/x/two"])
    archivematica.install_import_paths(["/x/one", "/x/two"])

    assert sys.path[:2] == ["/x/one", "/x/two"]
    assert os.environ["PYTHONPATH"].split(os.pathsep)[:2] == ["/x/one", "/x/two"]
    assert os.environ["PYTHONPATH"].count("/x/one") == 1


# -- the real thing ------------------------------------------------------------------


def bare_imports(path: Path) -> set[str]:
    """Top-level names a module imports absolutely."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.skipif(not AM_SRC, reason="AM_SRC names no Archivematica checkout")
def test_a_real_checkout_derives_and_every_script_finds_its_siblings(clean_imports: None) -> None:
    settings = Settings.from_env({"AMWORKER_ARCHIVEMATICA_HOME": AM_SRC})
    src = Path(AM_SRC).absolute() / "src"
    scripts = src / "MCPClient/lib/clientScripts"

    assert settings.import_paths == (str(src / "MCPClient/lib"), str(scripts),
                                     str(src / "archivematicaCommon/lib"), str(src / "dashboard/src"))
    assert Path(settings.client_assets_directory, "catalog", "catalog.xml").is_file()
    modules = read_modules_file(settings.modules_file)
    assert len(modules) > 100
    # Found 1 of issue 9: scripts import siblings by bare name.
    siblings = {name for module in set(modules.values()) if (scripts / f"{module}.py").is_file()
                for name in bare_imports(scripts / f"{module}.py")
                if (scripts / f"{name}.py").is_file() or (scripts / name).is_dir()}
    assert {"change_names", "create_mets_v2", "has_packages", "move_or_merge"} <= siblings
    archivematica.install_import_paths(settings.import_paths)
    for name in siblings:
        spec = importlib.util.find_spec(name)
        assert spec is not None and str(spec.origin).startswith(str(scripts)), name
    handlers = list(logging.getLogger().handlers)
    built = django_settings.build(settings)
    assert django_settings.APP in built["INSTALLED_APPS"] and "main" in built["INSTALLED_APPS"]
    assert logging.getLogger().handlers == handlers
