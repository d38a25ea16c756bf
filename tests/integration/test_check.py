"""``amworker check`` and ``amworker scripts``, run as an operator runs them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from harness.services import ROOT, Stack, free_port, stack
from tests.integration.ops import write_modules

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

GOOD = {"echo_v0.0": "echo_args", "sliced_v0.0": "sliced"}


def amworker(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``amworker`` command line with ``env``."""
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], env=dict(env), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def lines(output: str) -> dict[str, str]:
    """``[ ok ] name: detail`` lines as name -> the whole line."""
    found = {}
    for line in output.splitlines():
        if line.startswith("["):
            name = line[7:].split(": ", 1)[0]
            found[name] = line
    return found


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("check")
    modules = write_modules(workdir / "modules.ini", GOOD)
    with stack(workdir, modules_file=modules) as deployed:
        done = amworker(deployed.env, "init-db")
        assert done.returncode == 0, done.stderr
        yield deployed


def test_check_passes_against_a_working_stack(services: Stack) -> None:
    done = amworker(services.env, "check")

    assert done.returncode == 0, done.stdout + done.stderr
    found = lines(done.stdout)
    assert set(found) == {f"gearmand {services.server}", "broker", "result backend", "database",
                          "Tasks table", "modules file", "script echo_v0.0",
                          "script sliced_v0.0", "workers' scripts", "shared directory",
                          "timeouts"}
    assert all(line.startswith("[ ok ]") for line in found.values()), done.stdout
    assert "concurrent_instances() = 4; slices 4" in found["script sliced_v0.0"]
    assert "no concurrent_instances(); slices 1" in found["script echo_v0.0"]
    assert "writable" in found["shared directory"]
    assert "> visibility timeout" in found["timeouts"]


def test_check_warns_when_the_queue_wait_is_shorter_than_the_visibility_timeout(
    services: Stack,
) -> None:
    env = {**services.env, "AMWORKER_QUEUE_WAIT": "10", "AMWORKER_VISIBILITY_TIMEOUT": "60"}

    done = amworker(env, "check")

    assert done.returncode == 1, done.stdout
    assert "[FAIL] timeouts: AMWORKER_QUEUE_WAIT (10s) should exceed" in done.stdout


def test_check_names_every_failure(services: Stack, tmp_path: Path) -> None:
    dead_gearman, dead_redis = free_port(), free_port()
    modules = write_modules(tmp_path / "modules.ini", {**GOOD, "importfail_v0.0": "import_fails"})
    env = {**services.env,
           "AMWORKER_GEARMAN_SERVERS": f"127.0.0.1:{dead_gearman}",
           "AMWORKER_BROKER_URL": f"redis://127.0.0.1:{dead_redis}/0",
           "AMWORKER_RESULT_BACKEND": f"redis://127.0.0.1:{dead_redis}/1",
           "AMWORKER_DATABASE_URL": f"sqlite:///{tmp_path}/fresh.sqlite3",
           "AMWORKER_MODULES_FILE": str(modules),
           "AMWORKER_SHARED_DIRECTORY": f"{tmp_path}/missing/"}

    done = amworker(env, "check")

    assert done.returncode != 0
    found = lines(done.stdout)
    failed = {name for name, line in found.items() if line.startswith("[FAIL]")}
    assert failed == {f"gearmand 127.0.0.1:{dead_gearman}", "broker", "result backend",
                      "Tasks table", "script importfail_v0.0", "workers' scripts",
                      "shared directory"}, done.stdout
    assert "does not exist" in found["shared directory"]
    assert "amworker init-db" in found["Tasks table"]
    assert "import_fails" in found["script importfail_v0.0"]
    assert found["script echo_v0.0"].startswith("[ ok ]")


def test_check_reports_an_unknown_database_scheme_as_one_line(services: Stack) -> None:
    env = {**services.env, "AMWORKER_DATABASE_URL": "foo://x/y"}

    done = amworker(env, "check")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    found = lines(done.stdout)
    assert found["database"].startswith("[FAIL] database: AMWORKER_DATABASE_URL: cannot use a "
                                        "foo:// URL"), done.stdout
    # Every other check still ran, and passed.
    assert {f"gearmand {services.server}", "broker", "result backend", "modules file",
            "script echo_v0.0", "shared directory", "timeouts"} <= set(found), done.stdout
    assert all(line.startswith("[ ok ]") for name, line in found.items() if name != "database")


def test_shim_refuses_to_start_with_the_same_lines(services: Stack, tmp_path: Path) -> None:
    dead_redis = free_port()
    env = {**services.env, "AMWORKER_BROKER_URL": f"redis://127.0.0.1:{dead_redis}/0"}

    done = amworker(env, "shim")

    assert done.returncode == 2
    assert "refusing to start" in done.stderr
    assert "[FAIL] broker: " in done.stderr


def test_scripts_shows_the_effective_values_from_the_config_file(
        services: Stack, tmp_path: Path) -> None:
    config = tmp_path / "amworker.toml"
    config.write_text('[defaults]\ntime_limit = 900\nmax_output_bytes = 4096\n\n'
                      '[functions."sliced_v0.0"]\nqueue = "heavy"\nslices = 2\n'
                      'soft_time_limit = 30\ntime_limit = 60\nmax_output_bytes = 1024\n',
                      encoding="utf-8")

    done = amworker({**services.env, "AMWORKER_CONFIG_FILE": str(config)}, "scripts")

    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["FUNCTION", "MODULE", "SLICES", "QUEUE", "TIME", "LIMIT", "SOFT",
                              "LIMIT", "MAX", "OUTPUT", "STATUS"]
    table = {row.split()[0]: row.split() for row in rows}
    assert table["sliced_v0.0"] == ["sliced_v0.0", "sliced", "2", "heavy", "60s", "30s", "1024B",
                                    "ok"]
    assert table["echo_v0.0"] == ["echo_v0.0", "echo_args", "1", "amworker", "900s", "-", "4096B",
                                  "ok"]
