"""Unit tests for the script registry: the modules file and importing scripts.

Each test builds its own tiny client-script package under ``tmp_path``, with a
name of its own, puts it on ``sys.path`` and removes it from ``sys.modules``
afterwards, so no test sees another's modules.
"""

from __future__ import annotations

import logging
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from worker.config import FunctionOptions, Settings
from worker.errors import RegistryError
from worker.scripts.registry import (
    ClientScript,
    Registry,
    ScriptEntry,
    import_script,
    load_registry,
    read_modules_file,
)

ScriptPackage = Callable[[dict[str, str]], str]


@pytest.fixture
def script_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptPackage]:
    """Make a package of ``{module_name: source}`` importable; return its name."""
    names: list[str] = []

    def make(modules: dict[str, str]) -> str:
        name = f"amw_test_scripts_{uuid.uuid4().hex}"
        package = tmp_path / name
        package.mkdir()
        (package / "__init__.py").write_text("")
        for module, source in modules.items():
            (package / f"{module}.py").write_text(textwrap.dedent(source))
        names.append(name)
        monkeypatch.syspath_prepend(str(tmp_path))
        return name

    yield make
    for loaded in list(sys.modules):
        if any(loaded == n or loaded.startswith(n + ".") for n in names):
            del sys.modules[loaded]


def modules_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "modules.ini"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def settings_for(package: str, modules: str, **overrides: object) -> Settings:
    return Settings(client_scripts_package=package, modules_file=modules, **overrides)  # type: ignore[arg-type]


def entry(module: object = None, **options: object) -> ScriptEntry:
    return ScriptEntry(function="f_v0.0", module_name="m", options=FunctionOptions(**options),  # type: ignore[arg-type]
                       module=module)  # type: ignore[arg-type]


class Module:
    """Stands in for an imported module in slices_wanted tests: a namespace."""

    def __init__(self, **attributes: object) -> None:
        self.__dict__.update(attributes)


# --- the modules file -------------------------------------------------------


def test_modules_file_keys_are_lower_cased_and_values_stripped(tmp_path: Path) -> None:
    path = modules_file(tmp_path, """
        [supportedBatchCommands]
        CopyThumbnailsToDIPDirectory_v0.0 =   copy_thumbnails
        identifyFileFormat_v0.0 = identify_file_format
        """)

    assert read_modules_file(path) == {
        "copythumbnailstodipdirectory_v0.0": "copy_thumbnails",
        "identifyfileformat_v0.0": "identify_file_format",
    }


def test_modules_file_comments_are_ignored(tmp_path: Path) -> None:
    path = modules_file(tmp_path, """
        # Archivematica's file starts with a comment
        [supportedBatchCommands]
        ; an old-style comment
        echo_v0.0 = echo_args  # what the controller calls "echo"
        #disabled_v0.0 = disabled
        other_v0.0 = other ; trailing
        """)

    assert read_modules_file(path) == {"echo_v0.0": "echo_args", "other_v0.0": "other"}


def test_other_sections_are_ignored(tmp_path: Path) -> None:
    path = modules_file(tmp_path, """
        [somethingElse]
        ignored_v0.0 = ignored
        [supportedBatchCommands]
        echo_v0.0 = echo_args
        """)

    assert read_modules_file(path) == {"echo_v0.0": "echo_args"}


def test_percent_signs_are_not_interpolated(tmp_path: Path) -> None:
    path = modules_file(tmp_path, "[supportedBatchCommands]\nodd_v0.0 = a%(b)s\n")

    assert read_modules_file(path) == {"odd_v0.0": "a%(b)s"}


def test_missing_section_is_a_registry_error(tmp_path: Path) -> None:
    path = modules_file(tmp_path, "[batchCommands]\necho_v0.0 = echo_args\n")

    with pytest.raises(RegistryError, match=r"no \[supportedBatchCommands\] section"):
        read_modules_file(path)


def test_missing_file_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot be read") as caught:
        read_modules_file(str(tmp_path / "absent.ini"))

    assert "absent.ini" in str(caught.value)


def test_unreadable_file_is_a_registry_error(tmp_path: Path) -> None:
    # A directory stands in for a file that cannot be opened (works as root too).
    with pytest.raises(RegistryError, match="cannot be read"):
        read_modules_file(str(tmp_path))


@pytest.mark.parametrize(
    "text",
    [
        "echo_v0.0 = echo_args\n",  # no section header at all
        "[supportedBatchCommands]\necho_v0.0 = a\nECHO_v0.0 = b\n",  # a duplicate once lower-cased
        b"[supportedBatchCommands]\necho = \xff\n".decode("latin-1"),  # not UTF-8 once written
    ],
    ids=["no-header", "duplicate", "not-utf8"],
)
def test_malformed_file_is_a_registry_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "modules.ini"
    path.write_bytes(text.encode("latin-1"))

    with pytest.raises(RegistryError, match="cannot be read"):
        read_modules_file(str(path))


# --- loading the registry -----------------------------------------------------


def test_load_registry_imports_every_module(tmp_path: Path, script_package: ScriptPackage) -> None:
    package = script_package({
        "echo_args": "def call(jobs):\n    pass\n",
        "other": "def call(jobs):\n    pass\n",
    })
    path = modules_file(tmp_path, """
        [supportedBatchCommands]
        Echo_v0.0 = echo_args
        other_v0.0 = other
        """)

    registry = load_registry(settings_for(package, path))

    assert sorted(registry) == ["echo_v0.0", "other_v0.0"]
    echo = registry["echo_v0.0"]
    assert echo.module is sys.modules[f"{package}.echo_args"]
    assert echo.importable and echo.import_error is None
    assert isinstance(echo.module, ClientScript)
    assert registry.failed() == []


def test_import_failure_is_reported_and_the_others_still_load(
    tmp_path: Path, script_package: ScriptPackage, caplog: pytest.LogCaptureFixture
) -> None:
    package = script_package({
        "good": "def call(jobs):\n    pass\n",
        "broken": "import a_module_that_does_not_exist_anywhere\n\ndef call(jobs):\n    pass\n",
        "raises": "raise RuntimeError('configuration missing at import')\n",
    })
    path = modules_file(tmp_path, """
        [supportedBatchCommands]
        good_v0.0 = good
        broken_v0.0 = broken
        raises_v0.0 = raises
        missing_v0.0 = no_such_module
        """)

    with caplog.at_level(logging.ERROR, logger="worker.scripts.registry"):
        registry = load_registry(settings_for(package, path))

    assert registry["good_v0.0"].importable
    assert {e.function for e in registry.failed()} == {"broken_v0.0", "raises_v0.0", "missing_v0.0"}
    broken = registry["broken_v0.0"].import_error or ""
    assert f"cannot import {package}.broken" in broken
    assert "ModuleNotFoundError" in broken and "a_module_that_does_not_exist_anywhere" in broken
    assert "RuntimeError: configuration missing at import" in (registry["raises_v0.0"].import_error or "")
    assert "no_such_module" in (registry["missing_v0.0"].import_error or "")
    assert {r.args[0] for r in caplog.records
            if r.levelno == logging.ERROR and isinstance(r.args, tuple)} >= {
        "broken_v0.0", "raises_v0.0", "missing_v0.0"
    }


def test_sys_exit_at_import_is_reported_not_raised(script_package: ScriptPackage) -> None:
    package = script_package({"exits": "import sys\nsys.exit(2)\n"})

    module, error = import_script(package, "exits")

    assert module is None
    assert error is not None and "SystemExit: 2" in error


def test_django_failing_to_start_is_reported_on_that_script(script_package: ScriptPackage) -> None:
    # The script needs Django; readying it fails (as it does after a script's own
    # django.setup() broke half-way): that script's error, not the probe's end.
    package = script_package({"needs": (
        "from django.core.exceptions import AppRegistryNotReady\n"
        "raise AppRegistryNotReady('Apps aren\\'t loaded yet.')\n")})

    def ready_django() -> None:
        raise RuntimeError("populate() isn't reentrant")

    module, error = import_script(package, "needs", ready_django=ready_django)

    assert module is None
    assert error is not None and "Django could not be set up" in error
    assert "populate() isn't reentrant" in error


def test_keyboard_interrupt_at_import_propagates(script_package: ScriptPackage) -> None:
    package = script_package({"interrupted": "raise KeyboardInterrupt\n"})

    with pytest.raises(KeyboardInterrupt):
        import_script(package, "interrupted")


@pytest.mark.parametrize("source", ["x = 1\n", "call = 'not callable'\n"], ids=["absent", "not-callable"])
def test_module_without_call_is_unusable(script_package: ScriptPackage, source: str) -> None:
    package = script_package({"nocall": source})

    module, error = import_script(package, "nocall")

    assert module is None
    assert error == f"{package}.nocall has no call(jobs) function"


def test_registry_without_importing_keeps_no_modules(tmp_path: Path) -> None:
    path = modules_file(tmp_path, "[supportedBatchCommands]\necho_v0.0 = echo_args\n")

    registry = load_registry(settings_for("no_such_package_anywhere", path), import_modules=False)

    assert registry["echo_v0.0"].module_name == "echo_args"
    assert registry["echo_v0.0"].module is None
    assert registry["echo_v0.0"].import_error is None


def test_empty_section_is_a_registry_error(tmp_path: Path) -> None:
    path = modules_file(tmp_path, "[supportedBatchCommands]\n# nothing yet\n")

    with pytest.raises(RegistryError, match="names no function"):
        load_registry(settings_for("pkg", path), import_modules=False)


def test_entries_carry_the_function_options(tmp_path: Path) -> None:
    path = modules_file(tmp_path, "[supportedBatchCommands]\nHeavy_v0.0 = heavy\nlight_v0.0 = light\n")
    settings = settings_for(
        "pkg", path, functions={"heavy_v0.0": FunctionOptions(slices=4, queue="big")}, time_limit=9.0
    )

    registry = load_registry(settings, import_modules=False)

    assert registry["heavy_v0.0"].options.slices == 4
    assert registry["heavy_v0.0"].options.queue == "big"
    assert registry["heavy_v0.0"].options.time_limit == 9.0
    assert registry["light_v0.0"].options.slices is None
    assert registry["light_v0.0"].options.queue == "amworker"


def test_registry_is_a_read_only_mapping() -> None:
    registry = Registry({"a": entry()})

    assert len(registry) == 1 and "a" in registry and "b" not in registry
    with pytest.raises(KeyError):
        registry["b"]
    with pytest.raises(TypeError):
        registry["b"] = entry()  # type: ignore[index]


# --- slices wanted ------------------------------------------------------------


def test_operator_override_wins_over_the_module() -> None:
    module = Module(call=lambda jobs: None, concurrent_instances=lambda: 8)

    assert entry(module, slices=3).slices_wanted() == 3


def test_concurrent_instances_is_asked_without_an_override() -> None:
    assert entry(Module(call=lambda jobs: None, concurrent_instances=lambda: 5)).slices_wanted() == 5


def test_one_slice_when_neither_says() -> None:
    assert entry(Module(call=lambda jobs: None)).slices_wanted() == 1
    assert entry(None).slices_wanted() == 1


@pytest.mark.parametrize("answer", [0, -4])
def test_too_few_concurrent_instances_means_one(answer: int) -> None:
    assert entry(Module(call=lambda jobs: None, concurrent_instances=lambda: answer)).slices_wanted() == 1


def test_concurrent_instances_as_a_numeric_string_is_accepted() -> None:
    assert entry(Module(call=lambda jobs: None, concurrent_instances=lambda: "6")).slices_wanted() == 6


@pytest.mark.parametrize(
    "hook",
    [lambda: 1 / 0, lambda: "lots", lambda: None],
    ids=["raises", "not-a-number", "none"],
)
def test_broken_concurrent_instances_means_one_and_is_logged(
    hook: Callable[[], object], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="worker.scripts.registry"):
        wanted = entry(Module(call=lambda jobs: None, concurrent_instances=hook)).slices_wanted()

    assert wanted == 1
    assert any("concurrent_instances() failed" in r.getMessage() for r in caplog.records)


def test_real_module_concurrent_instances(script_package: ScriptPackage) -> None:
    package = script_package({
        "sliced": "import os\n\ndef concurrent_instances():\n    return 4\n\ndef call(jobs):\n    pass\n",
    })
    module, error = import_script(package, "sliced")

    assert error is None
    assert entry(module).slices_wanted() == 4


# --- the entry fingerprint (issue 8, item 6) ------------------------------------------


def test_a_slice_planned_for_another_module_is_a_mismatch_naming_both(
    tmp_path: Path,
) -> None:
    path = tmp_path / "modules.ini"
    path.write_text("[supportedBatchCommands]\necho_v0.0 = echo_args\n")
    registry = load_registry(settings_for("pkg", str(path)), import_modules=False)

    assert registry.scripts() == {"echo_v0.0": "pkg.echo_args"}
    assert registry.mismatch("echo_v0.0", "pkg.echo_args") is None
    assert registry.mismatch("echo_v0.0", None) is None  # an older shim sends none
    problem = registry.mismatch("echo_v0.0", "other.echo_args")
    assert problem is not None and "other.echo_args" in problem and "pkg.echo_args" in problem
    unknown = registry.mismatch("copy_v0.0", "pkg.copy")
    assert unknown is not None and "does not name it" in unknown


def test_advertised_differences_name_each_function() -> None:
    from worker.pool.advertise import differences

    ours = {"a": "p.a", "b": "p.b", "c": "p.c"}
    theirs = {"a": "p.a", "b": "q.b", "d": "p.d"}

    assert differences(ours, theirs) == ["b = q.b there, p.b here", "c missing there",
                                         "d = p.d there, unknown here"]
    assert differences(ours, dict(ours)) == []
