"""``amworker flower``: Flower on a safe address unless told otherwise.

Flower listens on every interface when started without ``--address``, and
has no login by default: anyone who can reach the port sees every slice's
arguments and can revoke or terminate tasks from its API. So this command
binds to ``127.0.0.1`` unless an address is given (``--address=…`` or
``FLOWER_ADDRESS``), and refuses an address off the loopback when no login
is configured (``--basic-auth``, ``--auth`` or their ``FLOWER_*``
variables). Everything else passes through to ``celery -A worker flower``.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Mapping, Sequence

from worker.errors import ConfigError

#: Where Flower listens when no address is given.
DEFAULT_ADDRESS = "127.0.0.1"

#: Flower options (and their FLOWER_* variables) that put a login in front.
AUTH_OPTIONS = ("basic_auth", "auth")


def _option(argv: Sequence[str], env: Mapping[str, str], name: str) -> str | None:
    """The value of Flower option ``name`` (``--name=v`` or ``--name v``, else FLOWER_NAME)."""
    for spelling in {f"--{name}", f"--{name.replace('_', '-')}"}:
        for index, word in enumerate(argv):
            if word.startswith(spelling + "="):
                return word.split("=", 1)[1]
            if word == spelling and index + 1 < len(argv):
                return argv[index + 1]
    return env.get(f"FLOWER_{name.upper()}")


def _loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def flower_argv(args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The ``celery -A worker flower`` command line for ``amworker flower ARGS``.

    Raises :class:`ConfigError` for an address off the loopback with no login.
    """
    argv = list(args)
    address = _option(argv, env, "address")
    if address is None:
        argv.append(f"--address={DEFAULT_ADDRESS}")
        address = DEFAULT_ADDRESS
    if not _loopback(address) and not any(_option(argv, env, name) for name in AUTH_OPTIONS):
        shown = address or "every interface"
        raise ConfigError(
            f"Flower on {shown} would be open to anyone who can reach it: give a login "
            "(--basic-auth=USER:PASSWORD or FLOWER_BASIC_AUTH, or --auth with OAuth), or "
            f"leave the address out to listen on {DEFAULT_ADDRESS} (docs/operations.md, Flower)")
    return [sys.executable, "-m", "celery", "-A", "worker", "flower", *argv]
