"""The typed errors amworker raises.

Three kinds of failure are kept apart (see docs/architecture):

* a script's non-zero exit is a *result*, never an exception;
* an infrastructure fault (worker lost, broker down, deadline passed) is
  reported per task as :class:`InfrastructureError` causes;
* a payload that cannot be read is *permanent*: :class:`DecodeError`.
"""

from __future__ import annotations


class AmworkerError(Exception):
    """Base class of every error amworker raises on purpose."""


class ConfigError(AmworkerError):
    """A setting is missing or malformed; the message names the variable."""


class DecodeError(AmworkerError):
    """A request payload cannot be read at all (permanent, never retried)."""


class ArgvError(AmworkerError):
    """One task's ``arguments`` string cannot be turned into an argv."""


class RegistryError(AmworkerError):
    """The modules file cannot be read or names no usable function."""
