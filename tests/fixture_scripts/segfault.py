"""Dereferences a null pointer: the pool process dies of SIGSEGV."""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job


def call(jobs: list[Job]) -> None:
    ctypes.string_at(0)
