"""Raises out of call(): every job of the slice fails."""

from __future__ import annotations


def call(jobs):
    raise RuntimeError("boom from raises_v0.0")
