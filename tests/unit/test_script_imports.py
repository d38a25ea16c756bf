"""Unit tests for the import aliases old client scripts rely on."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import worker.client
import worker.client.job
import worker.utils
import worker.utils.custom_handlers
from worker.scripts import imports as script_imports
from worker.scripts.imports import ALIASES, PackageFinder, PinnedFinder

TOP_LEVEL = sorted({name.partition(".")[0] for name in ALIASES})


def _forget_aliases() -> None:
    for name in list(sys.modules):
        if name.partition(".")[0] in TOP_LEVEL:
            del sys.modules[name]


@pytest.fixture(autouse=True)
def clean_imports() -> Iterator[None]:
    """Each test starts and ends with no hook installed and no alias imported."""
    script_imports.uninstall()
    _forget_aliases()
    yield
    script_imports.uninstall()
    _forget_aliases()
    importlib.invalidate_caches()


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_aliases_are_not_importable_before_install(alias: str) -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(alias)


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_each_alias_is_the_real_module(alias: str) -> None:
    script_imports.install()
    module = importlib.import_module(alias)
    assert module is importlib.import_module(ALIASES[alias])
    assert sys.modules[alias] is module


def test_alias_imports_leave_the_real_spec_alone() -> None:
    script_imports.install()
    importlib.import_module("client.job")
    importlib.import_module("custom_handlers")
    importlib.import_module("utils")
    assert worker.client.job.__spec__ is not None
    assert worker.client.job.__spec__.name == "worker.client.job"
    assert worker.utils.custom_handlers.__name__ == "worker.utils.custom_handlers"
    assert worker.utils.__spec__ is not None
    assert worker.utils.__spec__.name == "worker.utils"


def test_script_style_imports_give_the_same_objects() -> None:
    script_imports.install()
    namespace: dict[str, object] = {}
    exec(  # the point is to run import statements as a script would
        textwrap.dedent(
            """
            from client.job import Job
            from custom_handlers import get_script_logger
            from utils.custom_handlers import get_script_logger as utils_logger
            from worker.client.job import Job as NewJob
            import client.job
            import utils.custom_handlers
            """
        ),
        namespace,
    )
    assert namespace["Job"] is worker.client.job.Job is namespace["NewJob"]
    assert namespace["get_script_logger"] is worker.utils.custom_handlers.get_script_logger
    assert namespace["utils_logger"] is worker.utils.custom_handlers.get_script_logger
    assert sys.modules["client.job"] is worker.client.job
    assert sys.modules["client"] is worker.client


def test_submodule_alias_is_never_loaded_twice() -> None:
    script_imports.install()
    importlib.import_module("client")
    importlib.import_module("client.job")
    importlib.import_module("utils")
    importlib.import_module("utils.custom_handlers")
    job_file = worker.client.job.__file__
    loaded = {id(m) for m in list(sys.modules.values()) if getattr(m, "__file__", None) == job_file}
    assert loaded == {id(worker.client.job)}


def test_install_is_idempotent_and_places_hooks() -> None:
    script_imports.install()
    script_imports.install()
    assert isinstance(sys.meta_path[-1], PackageFinder)
    assert isinstance(sys.meta_path[0], PinnedFinder)
    assert sum(isinstance(f, PackageFinder) for f in sys.meta_path) == 1
    assert sum(isinstance(f, PinnedFinder) for f in sys.meta_path) == 1


def test_uninstall_removes_hooks_and_aliases_but_not_targets() -> None:
    script_imports.install()
    importlib.import_module("custom_handlers")
    importlib.import_module("client.job")
    script_imports.uninstall()
    assert not any(isinstance(f, PackageFinder | PinnedFinder) for f in sys.meta_path)
    assert "custom_handlers" not in sys.modules
    assert "client.job" not in sys.modules
    assert sys.modules["worker.client.job"] is worker.client.job
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("custom_handlers")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("client.job")


@pytest.mark.parametrize("name", ["foo", "client.other", "worker.client", "utilsx"])
def test_finders_only_answer_alias_names(name: str) -> None:
    assert PackageFinder().find_spec(name, None) is None
    assert PinnedFinder().find_spec(name, None) is None


def test_front_finder_answers_the_job_api_but_not_packages() -> None:
    assert PinnedFinder().find_spec("client", None) is None
    spec = PinnedFinder().find_spec("custom_handlers", None)
    assert spec is not None and spec.name == "custom_handlers"
    assert PackageFinder().find_spec("client.job", None) is None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _stock_layout(root: Path) -> None:
    """Archivematica's MCPClient/lib and archivematicaCommon/lib, in miniature."""
    _write(root / "client" / "__init__.py", "")
    _write(root / "client" / "job.py", "ORIGIN = 'stock'\n")
    _write(root / "client" / "metrics.py", "ORIGIN = 'stock'\n")
    _write(root / "custom_handlers.py", "ORIGIN = 'stock'\n")
    _write(root / "utils" / "__init__.py", "ORIGIN = 'operator'\n")


def test_next_to_stock_code_the_job_api_is_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found 4: with MCPClient/lib on the path the aliases never fired.
    _stock_layout(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    script_imports.install()
    namespace: dict[str, Any] = {}  # what the exec'd script imported
    exec(
        textwrap.dedent(
            """
            from client.job import Job
            from custom_handlers import get_script_logger
            from utils.custom_handlers import get_script_logger as utils_logger
            from client import metrics
            import client
            import utils
            """
        ),
        namespace,
    )
    assert namespace["Job"] is worker.client.job.Job
    assert namespace["get_script_logger"] is worker.utils.custom_handlers.get_script_logger
    assert namespace["utils_logger"] is worker.utils.custom_handlers.get_script_logger
    # The packages, and their other modules, stay stock's / the operator's.
    assert namespace["metrics"].ORIGIN == "stock"
    assert namespace["client"] is not worker.client
    assert namespace["client"].job is worker.client.job
    assert namespace["utils"].ORIGIN == "operator"
    script_imports.uninstall()
    assert "client.job" not in sys.modules
    assert sys.modules["client.metrics"] is namespace["metrics"]  # not ours: left alone


def test_our_package_submodules_are_never_loaded_twice() -> None:
    script_imports.install()
    importlib.import_module("client")
    output = importlib.import_module("client.output")
    import worker.client.output

    assert output is worker.client.output
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("client.metrics")  # nothing of that name without Archivematica


@pytest.mark.timeout(60)
def test_aliases_in_a_fresh_interpreter() -> None:
    code = textwrap.dedent(
        """
        import sys
        try:
            import client.job
        except ModuleNotFoundError:
            pass
        else:
            sys.exit("client.job importable before install")
        from worker.scripts import imports as script_imports
        script_imports.install()
        from client.job import Job
        from custom_handlers import get_script_logger
        import worker.client.job
        assert Job is worker.client.job.Job
        job = Job("n", "u", ["a"])
        log = get_script_logger("archivematica.mcp.client.t")
        with job.JobContext(logger=log):
            for _ in range(100):
                log.info("hi")
        assert job.output == "hi" * 100, job.output
        print("ok")
        """
    )
    repo = Path(worker.client.__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=50
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
