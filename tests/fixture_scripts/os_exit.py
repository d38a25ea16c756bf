"""Calls os._exit with the code given as first argument: the pool process ends at once."""

from __future__ import annotations

import os


def call(jobs):
    os._exit(int(jobs[0].args[1]))
