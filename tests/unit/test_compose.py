"""compose.yaml is a valid Compose file that runs amworker's real commands and settings.

No Docker engine runs on these machines, so ``docker compose config`` cannot
be the judge. Instead:

* the file is validated against the Compose specification's JSON schema by a
  real validator: ``check-jsonschema --builtin-schema vendor.compose-spec``
  (the schema is vendored in the check-jsonschema package, so no network is
  needed at test time);
* every ``AMWORKER_*`` variable must be one :mod:`worker.config` accepts, and
  the environment each service gets must build a valid :class:`Settings`;
* every ``amworker`` command must parse with amworker's own argument parser,
  and every ``celery`` command with Celery's own click commands;
* the ``worker`` service must scale (no ``container_name``, no host ports);
* every long-running service has a healthcheck, the shim and every worker
  mount the shared directory at the same path, and the workers consume every
  queue the config file routes a function to;
* one build serves every amworker service, gearmand is published, and
  compose.archivematica.yaml leaves out the stack's own gearmand, MariaDB and
  shared volume for the pipeline's.

``scripts/test-compose`` (``make test-compose``) brings both files up for real.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from ruamel.yaml import YAML

from worker.cli.command import _parser
from worker.config import KNOWN_VARIABLES, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
OVERRIDE = ROOT / "compose.archivematica.yaml"
SHARED_MOUNT = "/var/archivematica/sharedDirectory"
#: Services that run amworker's image and must see the shared directory.
AMWORKER_SERVICES = ("shim", "worker", "worker-heavy")
#: Every service that runs amworker's image.
IMAGE_SERVICES = ("init-db", "shim", "worker", "worker-heavy", "flower")
#: Archivematica mode's setting, added by its own change; the override only
#: passes it through when the shell sets it.
PASSED_THROUGH = {"AMWORKER_ARCHIVEMATICA_HOME"}
CELERY_SUBCOMMANDS = {"worker", "flower", "inspect"}


def check_jsonschema() -> str:
    """The check-jsonschema executable installed beside this Python."""
    beside = Path(sys.executable).with_name("check-jsonschema")
    found = str(beside) if beside.exists() else shutil.which("check-jsonschema")
    if found is None:
        pytest.fail("check-jsonschema is not installed: pip install -e '.[test]'")
    return found


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = YAML(typ="safe").load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def commands(compose: dict[str, Any]) -> Iterator[tuple[str, list[str]]]:
    """Every command line in the file: service commands and healthcheck tests."""
    for name, service in services(compose).items():
        command = service.get("command")
        if command is not None:
            yield name, shlex.split(command) if isinstance(command, str) else list(command)
        test = (service.get("healthcheck") or {}).get("test")
        if isinstance(test, list) and test and test[0] == "CMD":
            yield f"{name} healthcheck", list(test[1:])
        elif isinstance(test, list) and test and test[0] == "CMD-SHELL":
            yield f"{name} healthcheck", shlex.split(test[1].replace("$$", "$"))
        elif isinstance(test, str):
            yield f"{name} healthcheck", shlex.split(test.replace("$$", "$"))


# -- the Compose specification ------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    result = subprocess.run(
        [check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_really_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    """Guards the guard: a misspelt key must fail, or the test above proves nothing."""
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    healthcheck:\n", "    helthcheck:\n", 1))
    result = subprocess.run(
        [check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "helthcheck" in result.stdout + result.stderr


# -- settings -----------------------------------------------------------------


def test_every_amworker_variable_is_a_known_setting(compose: dict[str, Any]) -> None:
    used = set(re.findall(r"\bAMWORKER_[A-Z0-9_]+", COMPOSE.read_text()))
    assert used, "compose.yaml sets no AMWORKER_ variable?"
    assert used <= KNOWN_VARIABLES, sorted(used - KNOWN_VARIABLES)


@pytest.mark.parametrize("name", ["init-db", "shim", "worker", "worker-heavy", "flower"])
def test_each_amworker_service_environment_builds_valid_settings(
    compose: dict[str, Any], name: str
) -> None:
    env = environment(services(compose)[name])
    # The config file is mounted from deploy/; read it from there.
    mounted = {"/etc/amworker/amworker.toml": str(ROOT / "deploy" / "amworker.toml")}
    env = {k: mounted.get(v, v) for k, v in env.items()}
    settings = Settings.from_env(env)
    assert settings.gearman_servers == ("gearmand:4730",)
    assert settings.broker_url.startswith("redis://redis:")
    assert settings.database_url.startswith("mysql://")
    assert settings.shared_directory == SHARED_MOUNT + "/"


def test_workers_consume_every_queue_the_config_routes_to(compose: dict[str, Any]) -> None:
    env = environment(services(compose)["worker"])
    env["AMWORKER_CONFIG_FILE"] = str(ROOT / "deploy" / "amworker.toml")
    wanted = set(Settings.from_env(env).queues())
    consumed: set[str] = set()
    for _, argv in commands(compose):
        if argv[:4] == ["celery", "-A", "worker", "worker"]:
            index = argv.index("-Q")
            consumed.update(argv[index + 1].split(","))
    assert wanted <= consumed, f"no worker consumes {sorted(wanted - consumed)}"
    assert Settings.from_env(env).options_for("normalize_v1.0").queue == "heavy"


# -- commands -----------------------------------------------------------------


def parse_amworker(argv: list[str]) -> None:
    try:
        _parser().parse_args(argv[1:])
    except SystemExit as exc:
        pytest.fail(f"amworker refuses {shlex.join(argv)} (exit {exc.code})")


def parse_celery(argv: list[str]) -> str:
    """Parse with Celery's own click commands, without running anything."""
    from celery import Celery
    from celery.bin.celery import celery

    try:
        ctx = celery.make_context("celery", list(argv[1:]))
        # Some option callbacks read the app's defaults; give them a blank app.
        ctx.obj = types.SimpleNamespace(app=Celery(set_as_current=False))
        with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 9.0 folds it in
            warnings.simplefilter("ignore", DeprecationWarning)
            name, command, rest = celery.resolve_command(ctx, [*ctx.protected_args, *ctx.args])
        assert name is not None and command is not None
        sub = command.make_context(name, list(rest), parent=ctx)
    except click.ClickException as exc:
        pytest.fail(f"celery refuses {shlex.join(argv)}: {exc.format_message()}")
    assert ctx.params.get("app") == "worker", f"{shlex.join(argv)} must use -A worker"
    assert name in CELERY_SUBCOMMANDS, f"unexpected celery subcommand {name!r}"
    if name == "flower":
        parse_flower(list(sub.params["tornado_argv"]))
    return name


def parse_flower(argv: list[str]) -> None:
    """Flower passes its options to tornado: each must be one Flower defines."""
    from flower.options import options

    for arg in argv:
        assert arg.startswith("--"), f"flower option {arg!r}"
        option = arg[2:].split("=", 1)[0].replace("_", "-")
        assert option in options._options, f"flower has no option --{option}"


def test_every_command_is_one_amworker_or_celery_accepts(compose: dict[str, Any]) -> None:
    seen = {"amworker": 0, "celery": 0}
    for where, argv in commands(compose):
        program = argv[0]
        if program == "amworker":
            parse_amworker(argv)
        elif program == "celery":
            parse_celery(argv)
        elif where.startswith(("gearmand", "redis", "mariadb", "flower healthcheck")):
            continue  # third-party images' own commands
        else:
            pytest.fail(f"{where}: unexpected command {shlex.join(argv)}")
        seen[program] += 1
    assert seen["amworker"] >= 3 and seen["celery"] >= 3, seen


def test_the_parsers_really_refuse_bad_commands() -> None:
    """Guards the guard, like the schema test above."""
    with pytest.raises(pytest.fail.Exception):
        parse_amworker(["amworker", "shimm"])
    with pytest.raises(pytest.fail.Exception):
        parse_celery(["celery", "-A", "worker", "worker", "--no-such-option"])
    with pytest.raises(pytest.fail.Exception):
        parse_celery(["celery", "-A", "worker", "frobnicate"])
    with pytest.raises(AssertionError):
        parse_flower(["--no-such-flower-option=1"])


def test_gearmand_image_runs_debians_gearmand(compose: dict[str, Any]) -> None:
    gearmand = services(compose)["gearmand"]
    assert "gearman-job-server" in gearmand["build"]["dockerfile_inline"]
    assert gearmand["command"][0] == "gearmand"


def test_redis_is_configured_as_a_broker(compose: dict[str, Any]) -> None:
    command = services(compose)["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


# -- shape --------------------------------------------------------------------


def test_worker_service_scales(compose: dict[str, Any]) -> None:
    worker = services(compose)["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker, "fixed host ports clash as soon as there are two replicas"
    assert "hostname" not in worker, "replicas need distinct Celery node names"
    command = worker["command"]
    assert command[command.index("--hostname") + 1].endswith("@%h")


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if service.get("restart") == "no":
            continue  # a one-shot job, awaited with service_completed_successfully
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
    for name in ("gearmand", "redis", "mariadb", "shim", "worker", "flower"):
        assert name in services(compose)


def test_shared_directory_is_mounted_at_the_same_path_everywhere(compose: dict[str, Any]) -> None:
    for name in AMWORKER_SERVICES:
        volumes = services(compose)[name]["volumes"]
        mounts = {str(v).split(":")[1] for v in volumes if str(v).startswith("shared:")}
        assert mounts == {SHARED_MOUNT}, f"{name} mounts the shared volume at {mounts}"
    assert "shared" in compose["volumes"]


def test_dockerfile_builds_amworker_with_mysql_support() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    # The tested set of dependencies, not whatever the index has today.
    assert 'pip install --constraint constraints.txt ".[mysql]"' in dockerfile
    for copied in re.findall(r"^COPY (.+) \./?\S*$", dockerfile, re.MULTILINE):
        for source in copied.split():
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"



def test_dockerignore_sends_only_what_the_image_needs() -> None:
    lines = [
        line for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*", "everything is excluded first"
    assert {"!pyproject.toml", "!README.md", "!constraints.txt", "!worker/"} <= set(lines)


# -- one build ----------------------------------------------------------------


def test_one_build_serves_every_amworker_service(compose: dict[str, Any]) -> None:
    """Five services with `build: .` built five times and left four untagged images."""
    builders = [name for name, service in services(compose).items()
                if service.get("image") == "amworker:latest" and "build" in service]
    assert builders == ["shim"]
    for name in IMAGE_SERVICES:
        service = services(compose)[name]
        assert service["image"] == "amworker:latest", name
        if name != "shim":
            assert "build" not in service, name
            assert service["pull_policy"] == "never", f"{name} would pull amworker:latest"


def test_the_build_takes_a_ca_bundle_secret_and_an_index(compose: dict[str, Any]) -> None:
    build = services(compose)["shim"]["build"]
    assert build["secrets"] == ["build-ca"]
    assert build["args"]["PIP_INDEX_URL"] == "${BUILD_PIP_INDEX_URL:-}"
    assert compose["secrets"]["build-ca"]["file"].startswith("${BUILD_CA_BUNDLE:-")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--mount=type=secret,id=build-ca" in dockerfile
    assert "PIP_CERT=/run/secrets/build-ca" in dockerfile


def test_gearmand_is_published_for_the_controller(compose: dict[str, Any]) -> None:
    assert services(compose)["gearmand"]["ports"] == ["${GEARMAND_PUBLISH:-127.0.0.1:4730}:4730"]


def test_worker_heavy_has_work_from_the_bundled_scripts(compose: dict[str, Any]) -> None:
    """The bundled modules file has no normalize_v1.0: a bundled function must use the queue."""
    from worker.scripts.registry import load_registry

    env = environment(services(compose)["worker-heavy"])
    env["AMWORKER_CONFIG_FILE"] = str(ROOT / "deploy" / "amworker.toml")
    settings = Settings.from_env(env)
    heavy = [f for f in load_registry(settings) if settings.options_for(f).queue == "heavy"]
    assert heavy == ["copyrecursive_v0.0"]


@pytest.mark.parametrize(
    "tag", ["debian:bookworm-slim", "python:3.11-slim", "redis:7-bookworm", "mariadb:11.4"]
)
def test_every_base_image_has_a_registry_free_stand_in(compose: dict[str, Any], tag: str) -> None:
    used = {str(s.get("image")) for s in services(compose).values()}
    used |= set(re.findall(r"^\s*FROM (\S+)", (ROOT / "Dockerfile").read_text()
                           + services(compose)["gearmand"]["build"]["dockerfile_inline"], re.MULTILINE))
    assert tag in used
    script = (ROOT / "scripts" / "build-base-images").read_text()
    if tag == "debian:bookworm-slim":
        assert "debootstrap --variant=minbase bookworm" in script
        return
    dockerfile = (ROOT / "docker" / tag.replace(":", "-") / "Dockerfile").read_text()
    assert f"stand-in for the official {tag} image" in dockerfile
    assert "What differs from the official image:" in dockerfile
    assert re.search(r"^FROM debian:bookworm-slim$", dockerfile, re.MULTILINE)


# -- beside an existing Archivematica -------------------------------------------


class _Tagged:
    """A value under Compose's !reset or !override tag."""

    def __init__(self, tag: str, value: Any) -> None:
        self.tag, self.value = tag, value


def _construct_tagged(loader: Any, node: Any) -> _Tagged:
    if node.id == "mapping":
        value: Any = loader.construct_mapping(node, deep=True)
    elif node.id == "sequence":
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return _Tagged(node.tag, value)


def load_override() -> dict[str, Any]:
    yaml = YAML(typ="safe")
    for tag in ("!reset", "!override"):
        yaml.constructor.add_constructor(tag, _construct_tagged)
    data = yaml.load(OVERRIDE.read_text())
    assert isinstance(data, dict)
    return data


def untag(value: Any) -> Any:
    """The file as Compose merges it: !reset entries dropped, !override values kept."""
    if isinstance(value, dict):
        return {k: untag(v.value if isinstance(v, _Tagged) else v) for k, v in value.items()
                if not (isinstance(v, _Tagged) and v.tag == "!reset")}
    if isinstance(value, list):
        return [untag(v) for v in value]
    return value


def test_override_is_valid_against_the_compose_specification(tmp_path: Path) -> None:
    plain = tmp_path / "compose.archivematica.json"
    plain.write_text(json.dumps(untag(load_override())))
    result = subprocess.run(
        [check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(plain)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_override_leaves_out_the_stacks_own_pipeline_services() -> None:
    override = load_override()
    for name in ("gearmand", "mariadb", "init-db"):
        reset = override["services"][name]
        assert isinstance(reset, _Tagged) and reset.tag == "!reset", name
    for name in ("shim", "worker", "worker-heavy", "flower"):
        service = override["services"][name]
        assert set(service["depends_on"].value) == {"redis"}, name
        assert service["networks"] == ["default", "archivematica"], name
    assert override["volumes"]["shared"]["external"] is True
    assert override["networks"]["archivematica"]["external"] is True


def test_override_points_at_the_pipeline() -> None:
    override = load_override()
    for name in ("shim", "worker", "worker-heavy", "flower"):
        env = override["services"][name]["environment"]
        assert env["AMWORKER_GEARMAN_SERVERS"].startswith("${ARCHIVEMATICA_GEARMAND:?"), name
        assert env["AMWORKER_DATABASE_URL"].startswith("${ARCHIVEMATICA_DATABASE_URL:?"), name
        # Passed through only when the shell sets it: a bare key, no value.
        assert env["AMWORKER_ARCHIVEMATICA_HOME"] is None, name
    shared = override["volumes"]["shared"]
    assert shared["name"].startswith("${ARCHIVEMATICA_SHARED_VOLUME:?")


def test_every_amworker_variable_in_the_override_is_a_known_setting() -> None:
    used = set(re.findall(r"\bAMWORKER_[A-Z0-9_]+", OVERRIDE.read_text()))
    assert used <= KNOWN_VARIABLES | PASSED_THROUGH, sorted(used - KNOWN_VARIABLES - PASSED_THROUGH)
