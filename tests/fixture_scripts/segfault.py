"""Dereferences a null pointer: the pool process dies of SIGSEGV."""

from __future__ import annotations

import ctypes


def call(jobs):
    ctypes.string_at(0)
