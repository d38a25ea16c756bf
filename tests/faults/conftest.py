"""Fixtures of the fault tests (helpers live in tests/faults/helpers.py)."""

from tests.faults.helpers import faststack  # noqa: F401 - a fixture, used by name
