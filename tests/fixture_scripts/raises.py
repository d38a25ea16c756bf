"""Raises out of call(): every job of the slice fails."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.client.job import Job


def call(jobs: list[Job]) -> None:
    raise RuntimeError("boom from raises_v0.0")
