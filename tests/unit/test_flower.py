"""``amworker flower``'s command line: loopback by default, no public Flower without a login."""

from __future__ import annotations

import sys

import pytest

from worker.cli.flower import DEFAULT_ADDRESS, flower_argv
from worker.errors import ConfigError

CELERY = [sys.executable, "-m", "celery", "-A", "worker", "flower"]


def test_no_address_binds_the_loopback() -> None:
    assert flower_argv(["--port=5555"], {}) == [*CELERY, "--port=5555", f"--address={DEFAULT_ADDRESS}"]
    assert DEFAULT_ADDRESS == "127.0.0.1"


@pytest.mark.parametrize("args, env", [
    (["--address=127.0.0.2"], {}),
    (["--address", "::1"], {}),
    (["--address=localhost"], {}),
    ([], {"FLOWER_ADDRESS": "127.0.0.1"}),
])
def test_a_loopback_address_needs_no_login(args: list[str], env: dict[str, str]) -> None:
    argv = flower_argv(args, env)
    assert argv[len(CELERY):] == args, "an address given is passed through untouched"


@pytest.mark.parametrize("args, env", [
    (["--address=0.0.0.0"], {}),
    (["--address", "10.0.0.5", "--port=5555"], {}),
    (["--address="], {}),
    ([], {"FLOWER_ADDRESS": "0.0.0.0"}),
    (["--address=0.0.0.0", "--basic-auth="], {}),
])
def test_a_public_address_without_a_login_is_refused(args: list[str], env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="open to anyone"):
        flower_argv(args, env)


@pytest.mark.parametrize("args, env", [
    (["--address=0.0.0.0", "--basic-auth=ops:secret"], {}),
    (["--address=0.0.0.0", "--basic_auth=ops:secret"], {}),
    (["--address=0.0.0.0"], {"FLOWER_BASIC_AUTH": "ops:secret"}),
    (["--address=0.0.0.0", "--auth=.*@example\\.org"], {}),
    ([], {"FLOWER_ADDRESS": "0.0.0.0", "FLOWER_AUTH": ".*@example\\.org"}),
])
def test_a_public_address_with_a_login_is_allowed(args: list[str], env: dict[str, str]) -> None:
    assert flower_argv(args, env)[len(CELERY):] == args
