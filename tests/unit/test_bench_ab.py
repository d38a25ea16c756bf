"""bench.ab's table: medians side by side, the ratio, and a side that measured nothing."""

from __future__ import annotations

from typing import Any

import pytest

from bench.ab import Side, report

pytestmark = pytest.mark.timeout(10)

#: The sides' stacks are not read by the table.
NO_STACK: Any = None


def test_each_measure_shows_both_medians_and_this_against_the_base() -> None:
    base = Side("base", NO_STACK, measured={"W3 two slices (ms)": [170.0, 180.0, 160.0],
                                   "W3 one slice (ms)": [340.0]})
    this = Side("this", NO_STACK, measured={"W3 two slices (ms)": [150.0, 140.0, 160.0],
                                   "W3 one slice (ms)": [330.0]})

    lines = report([base, this]).splitlines()

    assert "| W3 two slices (ms) | 170.0 | 150.0 | 0.882 |" in lines
    assert "| W3 speedup (×) | 2.000 | 2.200 | 1.100 |" in lines


def test_a_side_that_measured_nothing_reads_as_a_dash_and_its_errors_follow() -> None:
    base = Side("base", NO_STACK, measured={"W1 latency (ms)": [14.0, 12.0]})
    this = Side("this", NO_STACK, errors=["W1: 3 of 128 tasks without a result"])

    lines = report([base, this]).splitlines()

    assert "| W1 latency (ms) | 13.0 | — | — |" in lines
    assert lines[-1] == "this: W1: 3 of 128 tasks without a result"
